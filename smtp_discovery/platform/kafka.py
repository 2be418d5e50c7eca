"""Kafka clients built from configuration, and the idempotent creation of the registry's topics."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAuthorizationFailedError, for_code

from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.errors import ConfigError, InfrastructureError
from smtp_discovery.schemas.topics import REGISTRY, TopicSpec


def client_options(config: RuntimeConfig, bootstrap: str | None = None) -> dict[str, Any]:
    """Connection options shared by every aiokafka client (and Faust's broker settings)."""
    servers = bootstrap or config.kafka_bootstrap
    if not servers:
        raise ConfigError(
            "no Kafka bootstrap servers: set KAFKA_BOOTSTRAP or start the embedded broker"
        )
    options: dict[str, Any] = {
        "bootstrap_servers": servers,
        "security_protocol": config.kafka_security_protocol,
    }
    if config.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(config.kafka_ssl_cafile) if config.kafka_ssl_cafile else None
        )
    if config.kafka_security_protocol.startswith("SASL"):
        if not (config.kafka_sasl_mechanism and config.kafka_sasl_username):
            raise ConfigError(
                "SASL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        options.update(
            sasl_mechanism=config.kafka_sasl_mechanism,
            sasl_plain_username=config.kafka_sasl_username,
            sasl_plain_password=config.kafka_sasl_password or "",
        )
    return options


def idempotent_producer(options: dict[str, Any], **extra: Any) -> AIOKafkaProducer:
    """acks=all with idempotence: a retried send is written once, in order, per partition."""
    return AIOKafkaProducer(**options, acks="all", enable_idempotence=True, **extra)


def transactional_producer(
    options: dict[str, Any], transactional_id: str, **extra: Any
) -> AIOKafkaProducer:
    return AIOKafkaProducer(**options, acks="all", transactional_id=transactional_id, **extra)


@dataclass(frozen=True, slots=True)
class TopicOutcome:
    name: str
    action: str  # "created", "exists" or "mismatch"
    detail: str = ""


def plan_topic(spec: TopicSpec, partitions: int, replication: int) -> NewTopic:
    return NewTopic(
        name=spec.name,
        num_partitions=spec.partition_count(partitions),
        replication_factor=replication,
        topic_configs=spec.configs(replication),
    )


async def ensure_topics(
    options: dict[str, Any],
    *,
    partitions: int,
    replication: int | None = None,
    specs: Sequence[TopicSpec] = REGISTRY,
) -> list[TopicOutcome]:
    """Create every registry topic that is missing; report existing ones that do not match.

    Safe to run any number of times, from any number of processes. An existing topic with a
    different partition count or cleanup policy is reported, never altered: changing partitions
    would move keys between partitions and break co-partitioning, so it takes an operator.
    """
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        rf = replication or min(3, brokers)
        if rf > brokers:
            raise InfrastructureError(
                f"replication factor {rf} needs at least {rf} brokers; the cluster has {brokers}"
            )
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        outcomes: list[TopicOutcome] = []
        if missing:
            response = await admin.create_topics([plan_topic(s, partitions, rf) for s in missing])
            for name, code, message in _creation_errors(response):
                if code == 36:  # TOPIC_ALREADY_EXISTS: another process won the race
                    existing.add(name)
                elif code == 29:  # TOPIC_AUTHORIZATION_FAILED: a role under least ACLs
                    raise InfrastructureError(
                        f"topic {name} is missing and this principal may not create it: run "
                        "`smtp-discovery topics ensure` as the setup role (docs/operations.md)"
                    )
                elif code != 0:
                    raise InfrastructureError(
                        f"creating topic {name} failed: error {code} {message}"
                    )
            outcomes += [TopicOutcome(s.name, "created") for s in missing if s.name not in existing]
        present = [spec for spec in specs if spec.name in existing]
        outcomes += await _check_existing(admin, present, partitions)
        order = [spec.name for spec in specs]
        return sorted(outcomes, key=lambda o: order.index(o.name))
    finally:
        await admin.close()


async def ensure_visible(options: dict[str, Any], topics: Sequence[NewTopic]) -> None:
    """Create the topics that are missing, and return once metadata shows all their partitions.

    A broker lists a topic some time after the controller created it; a client that fetches
    metadata in between sees no such topic and may not ask again for minutes.
    """
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            for name, code, message in _creation_errors(await admin.create_topics(missing)):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS, another process won the race
                    raise InfrastructureError(
                        f"creating topic {name} failed: error {code} {message}"
                    )
        described = await _describe_settled(admin, [t.name for t in topics])
        for t in topics:
            have = len(described.get(t.name, {}).get("partitions", ()))
            if described.get(t.name, {}).get("error_code") != 0 or have != t.num_partitions:
                raise InfrastructureError(
                    f"topic {t.name} is not in the cluster's metadata with {t.num_partitions} "
                    f"partitions (it has {have})"
                )
    finally:
        await admin.close()


def _creation_errors(response: Any) -> list[tuple[str, int, str]]:
    errors = []
    for item in response.topic_errors:
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else ""
        errors.append((name, code, message or ""))
    return errors


async def _check_existing(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], partitions: int
) -> list[TopicOutcome]:
    if not specs:
        return []
    described = await _describe_settled(admin, [s.name for s in specs])
    policies = {
        name: configs.get("cleanup.policy")
        for name, configs in (await topic_configs(admin, [s.name for s in specs])).items()
    }
    outcomes = []
    for spec in specs:
        problems = []
        topic = described.get(spec.name, {})
        have = len(topic.get("partitions", ()))
        want = spec.partition_count(partitions)
        refused = topic.get("error_code", 0)
        if refused:
            problems.append(describe_refusal(refused))
        elif have != want:
            problems.append(f"has {have} partitions, the registry wants {want}")
        policy = policies.get(spec.name)
        if policy is not None and policy != str(spec.cleanup):
            problems.append(f"cleanup.policy is {policy}, the registry wants {spec.cleanup}")
        if problems:
            outcomes.append(TopicOutcome(spec.name, "mismatch", "; ".join(problems)))
        else:
            outcomes.append(TopicOutcome(spec.name, "exists"))
    return outcomes


async def topic_configs(
    admin: AIOKafkaAdminClient, names: list[str], settle_s: float = 15.0
) -> dict[str, dict[str, str]]:
    """Current configuration of each named topic; topics not described are absent.

    The broker answering may not know a topic created a moment ago (metadata propagates
    across a cluster), so missing names are asked again until ``settle_s`` has passed."""
    out: dict[str, dict[str, str]] = {}
    deadline = asyncio.get_running_loop().time() + settle_s
    while True:
        missing = [name for name in names if name not in out]
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in missing]
        )
        for response in responses:
            for error_code, _message, _type, name, entries in response.resources:
                if error_code == 0:
                    out[name] = {entry[0]: entry[1] for entry in entries}
        if len(out) == len(names) or asyncio.get_running_loop().time() >= deadline:
            return out
        await asyncio.sleep(0.2)


_NOT_TRANSIENT = frozenset({TopicAuthorizationFailedError.errno})
"""Errors describing a topic that waiting does not end."""


def describe_refusal(code: int) -> str:
    """Why a topic could not be described, in words an operator acts on: without ``Describe``
    the broker answers as if the topic had no partitions, which hid a missing grant."""
    name = for_code(code).__name__
    if code == TopicAuthorizationFailedError.errno:
        return f"cannot be described ({name}): this principal needs Describe on the topic"
    return f"cannot be described ({name}, error {code})"


async def _describe_settled(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float = 15.0
) -> dict[str, dict[str, Any]]:
    """describe_topics, retried while a just-created topic's metadata is still propagating."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
        settled = all(
            name in described
            and described[name]["error_code"] == 0
            and all(p["error_code"] == 0 for p in described[name]["partitions"])
            for name in names
        )
        refused = any(described.get(name, {}).get("error_code") in _NOT_TRANSIENT for name in names)
        if settled or refused or asyncio.get_running_loop().time() > deadline:
            return described
        await asyncio.sleep(0.1)
