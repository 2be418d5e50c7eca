"""What each role may do on Kafka: the least ACLs it needs, in one table.

A provider's Kafka runs each role under a principal of its own. With these grants and nothing
else, an ingest node cannot write commands or tokens, a sink cannot write state, and nothing but
the admin role can write the tenants or the tokens topic. ``smtp-discovery topics acls`` prints
them as ``kafka-acls.sh`` commands, and docs/operations.md shows them as a table
(``render_table``; a test keeps the two in step).

Reading a topic or group needs READ (DESCRIBE is implied); an idempotent producer needs WRITE on
its topics (Kafka 3.0 and later need no cluster-wide IDEMPOTENT_WRITE for it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.tenant_writes import writer_id
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    ADMIN_TOKENS,
    COMMAND_RESULTS,
    COMMANDS,
    DEAD_LETTER,
    MAIL,
    MAIL_SETTLED,
    REGISTRY,
    STATE_CHANGES,
    TENANTS,
)

Resource = Literal["topic", "group", "transactional-id", "cluster"]


@dataclass(frozen=True, slots=True)
class Grant:
    resource: Resource
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False
    """The name is a prefix: every resource whose name starts with it."""
    why: str = ""


ROLES = ("ingest", "worker", "sink", "admin", "setup")
"""``setup`` is the one-shot ``topics ensure`` (and ``migrate``, which needs no Kafka)."""


def grants(role: str, config: RuntimeConfig) -> list[Grant]:
    """The ACLs ``role`` needs on the topics and groups ``config`` names."""
    t = config.topics

    def reads(*bases: str, why: str) -> list[Grant]:
        return [Grant("topic", t(b), ("Read",), why=why) for b in bases]

    def writes(*bases: str, why: str) -> list[Grant]:
        return [Grant("topic", t(b), ("Write",), why=why) for b in bases]

    if role == "ingest":
        return [
            *reads(ADDRESS_STATE, TENANTS, why="its views of addresses and tenants"),
            *writes(MAIL, MAIL_SETTLED, why="the mail events it makes"),
        ]
    if role == "worker":
        app = config.streams_app_id
        own = (MAIL, COMMANDS, TENANTS, COMMAND_RESULTS, ADDRESS_STATE, STATE_CHANGES, DEAD_LETTER)
        return [
            *reads(MAIL, COMMANDS, TENANTS, why="its input, and the tenants' settings"),
            *writes(COMMANDS, COMMAND_RESULTS, ADDRESS_STATE, STATE_CHANGES, DEAD_LETTER,
                    why="its own commands (ticks, alias links), results, state, history"),
            *[Grant("topic", t(b), ("DescribeConfigs",),
                    why="checks at start that its topics are laid out as the registry says")
              for b in own],
            Grant("group", app, ("Read",), why="the workers' consumer group"),
            Grant("topic", f"{app}-", ("Create", "Read", "Write", "DescribeConfigs"),
                  prefixed=True, why="Faust's table changelogs and leader topic"),
        ]  # fmt: skip
    if role == "sink":
        return [
            *reads(STATE_CHANGES, ADDRESS_STATE, MAIL, MAIL_SETTLED, TENANTS,
                   why="what it stores in ClickHouse"),
            *writes(DEAD_LETTER, why="records it cannot store"),
            Grant("group", config.sink_group, ("Read",), why="the sinks' consumer group"),
        ]  # fmt: skip
    if role == "admin":
        return [
            *reads(TENANTS, ADMIN_TOKENS, COMMAND_RESULTS,
                   why="its views of tenants, tokens and command results"),
            *writes(TENANTS, COMMANDS, ADMIN_TOKENS, why="what operators and admins change"),
            Grant("transactional-id", writer_id(t(TENANTS)), ("Write", "Describe"),
                  why="one tenants writer at a time (fencing)"),
            # An erasure or offboarding waits until the workers and the sinks have processed
            # what was written before it: their groups' offsets against their topics' ends.
            *[Grant("topic", t(b), ("Describe",),
                    why="the end offsets an erasure waits for the workers and sinks to reach")
              for b in (MAIL, MAIL_SETTLED, COMMANDS, ADDRESS_STATE, STATE_CHANGES)],
            Grant("group", config.streams_app_id, ("Describe",),
                  why="how far the workers are (erasure, offboarding)"),
            Grant("group", config.sink_group, ("Describe",),
                  why="how far the sinks are (erasure, offboarding)"),
        ]  # fmt: skip
    if role == "setup":
        return [
            Grant("cluster", "kafka-cluster", ("Describe",), why="how many brokers there are"),
            *[Grant("topic", t(spec.name), ("Create", "Describe", "DescribeConfigs"),
                    why="creates missing topics, checks existing ones (partitions, settings)")
              for spec in REGISTRY],
        ]  # fmt: skip
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def topics_of(role: str, config: RuntimeConfig) -> set[str]:
    """The registry topics ``role`` reads or writes (by their names under ``config``'s prefix):
    those it may check, and create where it is let, at start."""
    return {
        g.name
        for g in grants(role, config)
        if g.resource == "topic" and not g.prefixed and {"Read", "Write"} & set(g.operations)
    }


def acl_arguments(config: RuntimeConfig, principals: dict[str, str]) -> list[list[str]]:
    """Kafka's ACL command arguments (after ``--bootstrap-server`` and ``--command-config``)
    granting each role's principal (``User:name``) its ACLs: one command per principal,
    resource type and operations, naming every resource they cover."""
    groups: dict[tuple[str, Resource, tuple[str, ...], bool], list[str]] = {}
    for role in ROLES:
        for grant in grants(role, config):
            key = (principals[role], grant.resource, grant.operations, grant.prefixed)
            groups.setdefault(key, []).append(grant.name)
    commands = []
    for (principal, resource, operations, prefixed), names in groups.items():
        # kafka-acls.sh names its options after the resource types; --cluster takes no name.
        targets = ["--cluster"] if resource == "cluster" else [
            part for name in dict.fromkeys(names) for part in (f"--{resource}", name)]  # fmt: skip
        commands.append([
            "--add", "--allow-principal", principal,
            *[part for op in operations for part in ("--operation", op)], *targets,
            *(["--resource-pattern-type", "prefixed"] if prefixed else []),
        ])  # fmt: skip
    return commands


def acl_commands(config: RuntimeConfig, principals: dict[str, str]) -> list[str]:
    """:func:`acl_arguments` as ``kafka-acls.sh`` command lines for a shell."""
    head = (
        'kafka-acls.sh --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$KAFKA_ADMIN_CONFIG"'
    )
    return [
        " ".join([head, *(shlex.quote(arg) for arg in args)])
        for args in acl_arguments(config, principals)
    ]


def render_table(config: RuntimeConfig) -> str:
    """The grants as a Markdown table, for the docs."""
    rows = ["| Role | Resource | Name | Operations | Why |", "|---|---|---|---|---|"]
    for role in ROLES:
        for g in grants(role, config):
            name = f"`{g.name}`" + (" (prefix)" if g.prefixed else "")
            rows.append(f"| {role} | {g.resource} | {name} | {', '.join(g.operations)} | {g.why} |")
    return "\n".join(rows)
