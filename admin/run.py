"""``smtp-discovery admin``: the admin API under uvicorn, in the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import load_key
from smtp_discovery.jobs.render import Presentation
from smtp_discovery.platform.clickhouse import connect
from smtp_discovery.platform.config import RuntimeConfig, split_host_port
from smtp_discovery.platform.errors import ConfigError
from smtp_discovery.platform.kafka import client_options
from smtp_discovery.platform.ops import OpsServer
from smtp_discovery.platform.stopping import role_process
from smtp_discovery.schemas.calendar import Schedule


async def serve_admin(
    config: RuntimeConfig,
    kafka_options: dict[str, Any],
    clickhouse: Any,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    ops: bool = False,
) -> None:
    """Serve until ``stop`` is set; ``ready`` is set once the socket listens (the embedded mode
    shares its ClickHouse client)."""
    ctx = AdminContext(
        kafka_options,
        config.topics,
        clickhouse,
        config.analytics_layout,
        schedule=Schedule.parse(config.report_time, config.report_timezone),
        presentation=Presentation.of(config),
        token_key=load_key(config.token_key_path),
        sink_group=config.sink_group,
        streams_group=config.streams_app_id,
    )
    await ctx.start()
    host, port = split_host_port(config.admin_listen)
    endpoint = OpsServer(ctx.metrics(), ready=lambda: server.started)
    uv_config = uvicorn.Config(
        create_app(ctx, docs=config.admin_docs), host=host, port=port, log_level="warning",
        access_log=False, lifespan="off",
    )  # fmt: skip
    server = uvicorn.Server(uv_config)
    # The process owns its signals (platform.stopping): uvicorn must neither take SIGINT
    # and SIGTERM from it while serving nor raise them again when it ends.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    try:
        # uvicorn offers a ``started`` flag, not an event: poll it (or its failing to bind).
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if serving.done():
            serving.result()
            raise OSError(f"the admin API cannot listen on {config.admin_listen}")
        if ready is not None:
            ready.set()
        if ops:
            await endpoint.start(config.ops_listen)
        await asyncio.wait({serving, asyncio.create_task(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        server.should_exit = True
        await serving
    finally:
        await endpoint.stop()
        await ctx.stop()


async def run_admin(config: RuntimeConfig) -> None:
    """``smtp-discovery admin`` on its own: Kafka from KAFKA_BOOTSTRAP, ClickHouse from its URL."""
    if not config.kafka_bootstrap:
        raise ConfigError("the admin API needs KAFKA_BOOTSTRAP (`smtp-discovery up` runs one)")
    async with role_process("smtp-discovery admin", config.stop_timeout_s) as stopper:
        # serve_admin serves the ops endpoint itself, once the API listens, and closes it.
        await serve_admin(
            config,
            client_options(config),
            connect(config.effective_clickhouse_url),
            stopper.event,
            ops=True,
        )
