"""OpenTelemetry tracing of sent and handled messages, with W3C trace context in message headers."""
