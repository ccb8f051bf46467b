"""Small applications started by the CLI tests through ``listeners run`` / ``listeners list``."""
