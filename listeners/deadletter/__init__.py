"""Dead-letter routing and diagnostic headers."""
