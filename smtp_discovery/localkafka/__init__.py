"""A real Apache Kafka (KRaft) on this machine, for the embedded mode and the tests.

The broker runs from the jars published on Maven Central, resolved once into a cache; it is the
same broker a production cluster runs, not a mock, so idempotent and transactional producers,
compaction and consumer groups behave as they will in production.
"""

from smtp_discovery.localkafka.cluster import LocalKafka
from smtp_discovery.localkafka.jars import resolve_kafka_classpath

__all__ = ["LocalKafka", "resolve_kafka_classpath"]
