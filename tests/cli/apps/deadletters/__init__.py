"""An app whose listeners only name dead-letter destinations, for ``listeners dlt`` (never run).

Tests point it at the run's brokers and at unique topics and queues through environment variables
(``LISTENERS__LISTENER__<ID>__TOPICS`` / ``__QUEUE``).
"""
