"""Kafka transport adjustments for the worker: security settings, the consumer guard, the short
fetch wait."""
