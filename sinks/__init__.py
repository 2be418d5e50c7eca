"""Kafka to ClickHouse: state changes, snapshots and mail events, in idempotent batches."""
