"""Kafka's default partitioner (murmur2 of the key), as every producer in the system uses it.

The worker needs it twice: to send a snapshot (keyed per address) to the partition of its route
key, and to tell which records in a local table belong to the partitions it actively owns.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
