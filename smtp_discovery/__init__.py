"""Composition of smtp-discovery: configuration, the command line and the embedded mode.

The role packages (ingest, streams, sinks, jobs, admin) know nothing of each other; this package
wires them to configuration and to the infrastructure (Kafka, ClickHouse) they run on.
"""

__version__ = "0.1.0"
