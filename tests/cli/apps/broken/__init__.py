"""An app module that fails at import."""
