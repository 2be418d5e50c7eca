"""The platform every role stands on: configuration, Kafka clients and topic creation, the
ClickHouse client and DDL helpers, views of compacted topics, the ops endpoint, logging, errors
and stopping. It imports only the contracts (``smtp_discovery.schemas``), never a role."""
