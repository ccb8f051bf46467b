"""The ``listeners`` command line: ``run`` and ``list``."""
