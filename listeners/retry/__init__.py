"""Retry policy: back-off, exception classification and the error-handling interceptor."""
