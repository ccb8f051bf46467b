"""``python -m listeners``."""

from listeners.cli.main import main

main()
