"""The orders sample: Kafka orders -> billing -> RabbitMQ payment requests -> notifications."""
