"""An app whose handlers block until the test releases them: for drain and signal tests.

``CLI_TEST_PUBLISH`` names the topics (comma-separated) the app publishes one job to at startup.
Profiles: ``short-drain`` (shutdown_timeout 300ms), ``long-drain`` (60s).
"""
