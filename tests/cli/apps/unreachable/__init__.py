"""An app whose Kafka broker cannot be reached (``localhost:9``): startup must fail cleanly."""
