"""OpenTelemetry metrics of handled and sent messages, listener counters, consumer lag and time lag.

Nothing here runs unless ``listeners.metrics.enabled`` is true: the starter then builds a
MeterProvider (:mod:`listeners.metrics.setup`), puts a :class:`~listeners.metrics.messages.ProcessMetrics`
step in every listener's pipeline, counts what the publishers send, and registers observable
instruments (:mod:`listeners.metrics.observed`) that read the listeners' own counters only when
metrics are collected.
"""
