"""The optional HTTP endpoints: ``/health/live``, ``/health/ready`` and ``/metrics``.

A small asyncio server (no web framework): :mod:`listeners.server.http` speaks just enough HTTP/1.1
for probes and scrapers, :mod:`listeners.server.health` decides readiness from the listeners, and
:mod:`listeners.server.endpoints` routes the paths.
"""
