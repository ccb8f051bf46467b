"""The RabbitMQ transport on aio-pika.

Importing this package loads no client; ``listeners.rabbit.transport`` does (the registry imports it
only when a listener or publisher needs RabbitMQ on a real broker).
"""
