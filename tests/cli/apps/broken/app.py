"""Importing this module raises, as an app with a bug at module level would."""

from __future__ import annotations

raise RuntimeError("broken on purpose at import")
