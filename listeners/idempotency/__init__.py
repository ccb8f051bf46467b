"""Unique-key idempotency: claim a business key, handle the message, mark the key done."""
