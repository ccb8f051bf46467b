"""The Kafka transport on aiokafka.

Importing this package loads no client; ``listeners.kafka.transport`` does (the registry imports it
only when a listener or publisher needs Kafka on a real broker).
"""
