"""``smtp-discovery migrate`` and ``smtp-discovery sink``."""

from __future__ import annotations

import asyncio
from typing import Any

from smtp_discovery.platform.clickhouse import connect
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.errors import ConfigError
from smtp_discovery.platform.interpreter import tune
from smtp_discovery.platform.kafka import client_options
from smtp_discovery.platform.ops import OpsServer
from smtp_discovery.platform.stopping import role_process
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.sink import Sink, SinkSettings


def run_migrate(config: RuntimeConfig) -> list[int]:
    return migrate(connect(config.effective_clickhouse_url), config.analytics_layout)


def sink_settings(config: RuntimeConfig) -> SinkSettings:
    return SinkSettings(
        group=config.sink_group,
        batch_rows=config.sink_batch_rows,
        batch_seconds=config.sink_batch_s,
    )


async def run_sink(
    config: RuntimeConfig,
    *,
    bootstrap: str | None = None,
    client: Any = None,
    stop: asyncio.Event | None = None,
) -> None:
    servers = bootstrap or config.kafka_bootstrap
    if not servers:
        raise ConfigError(
            "the sink needs Kafka: set KAFKA_BOOTSTRAP (`smtp-discovery up` runs one in-process)"
        )
    tune()
    async with role_process("smtp-discovery sink", config.stop_timeout_s) as stopper:
        client = client or connect(config.effective_clickhouse_url)
        await asyncio.to_thread(migrate, client, config.analytics_layout)
        sink = Sink(
            client_options(config, servers),
            client,
            config.analytics_layout,
            config.topics,
            sink_settings(config),
        )
        ops = OpsServer(sink.metrics(), ready=sink.ready.is_set)
        await stopper.serve_ops(ops, config.ops_listen)
        await sink.run(stop or stopper.event)
