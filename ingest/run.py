"""``smtp-discovery ingest``: one ingest node until SIGTERM, then a clean shutdown that flushes
the spool. ``smtp-discovery policy``: the same for the Postfix policy service."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError

from smtp_discovery.ingest.node import IngestNode
from smtp_discovery.ingest.policy_service import PolicyService
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.errors import ConfigError, InfrastructureError
from smtp_discovery.platform.kafka import client_options
from smtp_discovery.platform.stopping import role_process


async def run_ingest(
    config: RuntimeConfig,
    *,
    bootstrap: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    servers = bootstrap or config.kafka_bootstrap
    if not servers:
        raise ConfigError(
            "the ingest node needs Kafka: set KAFKA_BOOTSTRAP (or run `smtp-discovery up`, "
            "which starts an embedded broker and an ingest node)"
        )
    async with role_process("smtp-discovery ingest", config.stop_timeout_s) as stopper:
        node = IngestNode(config, client_options(config, servers))
        try:
            await node.start()
        except OSError as exc:
            await node.stop()
            raise InfrastructureError(
                f"cannot listen on {config.ingest_listen}: {exc.strerror or exc}"
            ) from None
        except (RuntimeError, KafkaError) as exc:  # a missing topic, an unreachable cluster
            await node.stop()
            raise InfrastructureError(f"the ingest node could not start: {exc}") from None
        stopper.on_stop(node.stop)  # no new mail, the spool flushed, the ops endpoint last
        await (stop or stopper.event).wait()


async def run_policy(
    config: RuntimeConfig,
    *,
    bootstrap: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """The policy service until SIGTERM. It logs in to Kafka as the ingest role does (the same
    topics read and written, so the same ACLs)."""
    servers = bootstrap or config.kafka_bootstrap
    if not servers:
        raise ConfigError("the policy service needs Kafka: set KAFKA_BOOTSTRAP")
    async with role_process("smtp-discovery policy", config.stop_timeout_s) as stopper:
        service = PolicyService(config, client_options(config, servers))
        try:
            await service.start()
        except OSError as exc:
            await service.stop()
            raise InfrastructureError(
                f"cannot listen on {config.policy_listen} or {config.policy_socketmap_listen}: "
                f"{exc.strerror or exc}"
            ) from None
        except (RuntimeError, KafkaError) as exc:
            await service.stop()
            raise InfrastructureError(f"the policy service could not start: {exc}") from None
        stopper.on_stop(service.stop)
        await (stop or stopper.event).wait()
