"""The analytics schema as versioned migrations, rendered for one server or for a cluster.

Each migration is a list of statements built from a few shapes (a table, a materialized view, a
raw statement), so the same list produces plain ``MergeTree`` tables on one node and, with a
cluster name, ``Replicated*MergeTree`` tables ``ON CLUSTER`` behind ``Distributed`` tables
sharded by tenant (a tenant's rows stay on one shard, so per-tenant queries and rollups are
local). Every migration is safe to run again from its first statement (``IF NOT EXISTS``,
``IF EXISTS``, a backfill that replaces its own rows), so a migration interrupted halfway is
simply run again. An applied migration's text never changes: a later migration alters what it
made (migration 2 drops ``address_state``'s ``first_seen``/``last_seen``, which migration 1
still creates).

Tables the sink inserts into keep a deduplication window, so a retried insert carrying the same
deduplication token is written once, including into the rollups its materialized views feed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from smtp_discovery.platform.clickhouse import Layout, quote_ident

DEDUP_WINDOW = 10_000
"""Recent insert tokens remembered per table (non-replicated tables forget them otherwise)."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    engine: str
    """Engine family without ``Replicated``: MergeTree, ReplacingMergeTree, SummingMergeTree."""
    order_by: str
    engine_args: str = ""
    partition_by: str | None = None
    ttl: str | None = None
    dedup: bool = True
    sharding_key: str | None = "cityHash64(tenant_id)"
    """None: no Distributed table; every replica keeps the whole table (bookkeeping)."""

    def render(self, layout: Layout) -> Iterator[str]:
        columns = ",\n    ".join(self.columns)
        if layout.cluster:
            path = f"'/clickhouse/tables/{{shard}}/{layout.database}/{self.name}_local'"
            args = ", ".join(a for a in (path, "'{replica}'", self.engine_args) if a)
            engine = f"Replicated{self.engine}({args})"
        else:
            engine = f"{self.engine}({self.engine_args})"
        clauses = [f"ENGINE = {engine}"]
        if self.partition_by:
            clauses.append(f"PARTITION BY {self.partition_by}")
        clauses.append(f"ORDER BY {self.order_by}")
        if self.ttl:
            clauses.append(f"TTL {self.ttl.format(ttl_days=layout.mail_events_ttl_days)}")
        if self.dedup and not layout.cluster:
            clauses.append(f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}")
        yield (
            f"CREATE TABLE IF NOT EXISTS {layout.local(self.name)}{layout.on_cluster} (\n"
            f"    {columns}\n) " + "\n".join(clauses)
        )
        if layout.cluster and self.sharding_key:
            yield (
                f"CREATE TABLE IF NOT EXISTS {layout.name(self.name)}{layout.on_cluster} "
                f"AS {layout.local(self.name)} ENGINE = Distributed("
                f"{quote_ident(layout.cluster)}, {layout.database}, {self.name}_local, "
                f"{self.sharding_key})"
            )


@dataclass(frozen=True, slots=True)
class View:
    """A materialized view from one local table into another (per shard on a cluster)."""

    name: str
    source: str
    target: str
    select: str
    """SELECT ... FROM {source} ...; ``{source}`` is filled in."""

    def render(self, layout: Layout) -> Iterator[str]:
        select = self.select.format(source=layout.local(self.source))
        yield (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {layout.database}.{self.name}"
            f"{layout.on_cluster} TO {layout.local(self.target)} AS\n{select}"
        )


@dataclass(frozen=True, slots=True)
class Raw:
    sql: str
    """With ``{database}``, ``{on_cluster}``, ``{ttl_days}`` and ``{local:<table>}`` slots."""

    def render(self, layout: Layout) -> Iterator[str]:
        text = self.sql
        while "{local:" in text:
            start = text.index("{local:")
            end = text.index("}", start)
            text = text[:start] + layout.local(text[start + 7 : end]) + text[end + 1 :]
        yield text.format(
            database=layout.database,
            on_cluster=layout.on_cluster,
            ttl_days=layout.mail_events_ttl_days,
        )


@dataclass(frozen=True, slots=True)
class Alter:
    """``ALTER TABLE`` of a table made earlier: on a cluster, the Distributed table first (so
    nothing inserted through it carries what the local tables no longer have), then the local
    ones."""

    table: Table
    actions: str

    def render(self, layout: Layout) -> Iterator[str]:
        if layout.cluster and self.table.sharding_key:
            yield f"ALTER TABLE {layout.name(self.table.name)}{layout.on_cluster} {self.actions}"
        yield f"ALTER TABLE {layout.local(self.table.name)}{layout.on_cluster} {self.actions}"


Statement = Table | View | Raw | Alter


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[Statement, ...] = field(default_factory=tuple)

    def render(self, layout: Layout) -> list[str]:
        return [sql for statement in self.statements for sql in statement.render(layout)]


KAFKA_POSITION = (
    "kafka_partition UInt16",
    "kafka_offset UInt64",
    "ingested_at DateTime64(3, 'UTC')",
)

ADDRESS_STATE = Table(
    "address_state",
    (
        "tenant_id LowCardinality(String)",
        "record_key String",
        "address String",
        "status LowCardinality(String)",
        "role LowCardinality(String)",
        "primary String",
        "first_name String",
        "surname String",
        "status_since DateTime64(3, 'UTC')",
        "status_reason LowCardinality(String)",
        "discovered_at Nullable(DateTime64(3, 'UTC'))",
        "discovered_reason LowCardinality(String)",
        "first_seen Nullable(DateTime64(3, 'UTC'))",
        "last_seen Nullable(DateTime64(3, 'UTC'))",
        "aliases Array(String)",
        "record_version UInt64",
        "is_deleted UInt8",
        *KAFKA_POSITION,
    ),
    engine="ReplacingMergeTree",
    # The Kafka offset orders the versions of one record (a record key always lands on the same
    # partition), and it exists for tombstones too, which carry no record version.
    engine_args="kafka_offset, is_deleted",
    order_by="(tenant_id, record_key)",
)

ADDRESS_STATE_DROPPED = ("first_seen", "last_seen")
"""Migration 2 drops them: first and last seen come from the mail events (``address_activity``)."""

ADDRESS_STATE_V2 = replace(
    ADDRESS_STATE,
    columns=tuple(
        c for c in ADDRESS_STATE.columns if c.split(" ", 1)[0] not in ADDRESS_STATE_DROPPED
    ),
)
"""``address_state`` as the migrations leave it: the columns the sink inserts."""

STATE_CHANGES = Table(
    "state_changes",
    (
        "event_id String",
        "tenant_id LowCardinality(String)",
        "address String",
        "from_status LowCardinality(String)",
        "to_status LowCardinality(String)",
        "reason LowCardinality(String)",
        "actor String",
        "role LowCardinality(String)",
        "primary String",
        "record_version UInt64",
        "cause_event_ids Array(String)",
        "event_time DateTime64(3, 'UTC')",
        *KAFKA_POSITION,
    ),
    engine="MergeTree",
    partition_by="toYYYYMM(event_time)",
    order_by="(tenant_id, event_time, address)",
)

MAIL_EVENTS = Table(
    "mail_events",
    (
        "event_id String",
        "type LowCardinality(String)",
        "tenant_id LowCardinality(String)",
        "address String",
        "event_time DateTime64(3, 'UTC')",
        "node_id LowCardinality(String)",
        "destination String",
        "reply_code UInt16",
        "reason LowCardinality(String)",
        "verdict LowCardinality(String)",
        "catch_all UInt8",
        "client_ip String",
        "size UInt64",
        "recipient_count UInt32",
        "latency_ms Float32",
        *KAFKA_POSITION,
    ),
    engine="MergeTree",
    partition_by="toYYYYMM(event_time)",
    order_by="(tenant_id, event_time, type)",
    ttl="toDateTime(event_time) + INTERVAL {ttl_days} DAY",
)

TENANT_DAILY = Table(
    "tenant_daily",
    (
        "tenant_id LowCardinality(String)",
        "day Date",
        "messages UInt64",
        "clean_messages UInt64",
        "outbound_messages UInt64",
        "verifications UInt64",
        "rejections UInt64",
        "tempfails UInt64",
        "new_pending UInt64",
        "new_discovered UInt64",
        "new_users UInt64",
        "new_aliases UInt64",
        "new_invalid UInt64",
    ),
    engine="SummingMergeTree",
    order_by="(tenant_id, day)",
)

MAIL_COUNTS = """    countIf(type = 'recipient_delivered') AS messages,
    countIf(type = 'recipient_delivered' AND verdict = 'clean') AS clean_messages,
    countIf(type = 'outbound_sent') AS outbound_messages,
    countIf(type = 'callout_verified') AS verifications,
    countIf(type = 'callout_rejected') AS rejections,
    countIf(type = 'callout_tempfailed') AS tempfails
"""
"""What the mail events count as messages, clean messages and so on: one definition for the
daily rollup and the per-address one (the text renders exactly as migration 1 applied it)."""

MAIL_DAILY = View(
    "tenant_daily_from_mail",
    "mail_events",
    "tenant_daily",
    f"""SELECT
    tenant_id,
    toDate(event_time) AS day,
{MAIL_COUNTS}FROM {{source}}
GROUP BY tenant_id, day""",
)

CHANGES_DAILY = View(
    "tenant_daily_from_changes",
    "state_changes",
    "tenant_daily",
    """SELECT
    tenant_id,
    toDate(event_time) AS day,
    countIf(to_status = 'pending') AS new_pending,
    countIf(to_status = 'discovered') AS new_discovered,
    countIf(to_status = 'user') AS new_users,
    countIf(to_status = 'alias') AS new_aliases,
    countIf(to_status = 'invalid') AS new_invalid
FROM {source}
GROUP BY tenant_id, day""",
)

ACTIVITY_EVENT_TYPES = (
    "callout_verified",
    "callout_rejected",
    "callout_tempfailed",
    "recipient_delivered",
    "outbound_sent",
)
"""The mail events about an address's mailbox. Not ``catch_all_checked``: its address is a
random local part asked of a destination, a fact about the tenant's server."""

ADDRESS_ACTIVITY = Table(
    "address_activity",
    (
        "tenant_id LowCardinality(String)",
        "address_key String",
        "first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC'))",
        "last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC'))",
        "messages SimpleAggregateFunction(sum, UInt64)",
        "clean_messages SimpleAggregateFunction(sum, UInt64)",
        "outbound_messages SimpleAggregateFunction(sum, UInt64)",
        "verifications SimpleAggregateFunction(sum, UInt64)",
        "rejections SimpleAggregateFunction(sum, UInt64)",
        "tempfails SimpleAggregateFunction(sum, UInt64)",
        "backfilled UInt8",
    ),
    engine="AggregatingMergeTree",
    # 0: rows the view writes as events arrive; 1: what migration 2 counted from the events
    # stored before it (a partition of its own, so that a re-run replaces it whole).
    partition_by="backfilled",
    order_by="(tenant_id, address_key)",
)
"""Per address (``lower(address)``, what the Discovered list joins on): first and last seen, and
counts of its mail events. Rows of one key merge in the background; read with
``min``/``max``/``sum`` ... ``GROUP BY tenant_id, address_key``."""

_ACTIVITY_SUMS = ("messages", "clean_messages", "outbound_messages", "verifications",
                  "rejections", "tempfails")  # fmt: skip

_ACTIVITY_TYPES_SQL = ", ".join(f"'{t}'" for t in ACTIVITY_EVENT_TYPES)

_ACTIVITY_FROM_EVENTS = f"""SELECT
    tenant_id,
    lower(address) AS address_key,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen,
{MAIL_COUNTS}FROM {{source}}
WHERE type IN ({_ACTIVITY_TYPES_SQL})
GROUP BY tenant_id, address_key"""

MAIL_ACTIVITY = View("address_activity_from_mail", "mail_events", "address_activity",
                     _ACTIVITY_FROM_EVENTS)  # fmt: skip

_NOT_YET_COUNTED = ",\n    ".join(f"e.{c} - least(e.{c}, v.{c})" for c in _ACTIVITY_SUMS)
_COUNTED = ",\n    ".join(f"sum({c}) AS {c}" for c in _ACTIVITY_SUMS)

ACTIVITY_BACKFILL = (
    Raw("ALTER TABLE {local:address_activity}{on_cluster} DROP PARTITION 1"),
    Raw(
        "INSERT INTO {database}.address_activity (tenant_id, address_key, first_seen, last_seen, "
        f"{', '.join(_ACTIVITY_SUMS)}, backfilled)\n"
        "SELECT\n    e.tenant_id,\n    e.address_key,\n    e.first_seen,\n    e.last_seen,\n"
        f"    {_NOT_YET_COUNTED},\n    1\n"
        f"FROM ({_ACTIVITY_FROM_EVENTS.replace('{source}', '{database}.mail_events')}) AS e\n"
        f"LEFT JOIN (SELECT\n    tenant_id,\n    address_key,\n    {_COUNTED}\n"
        "FROM {database}.address_activity\nWHERE backfilled = 0\n"
        "GROUP BY tenant_id, address_key) AS v\n"
        "ON v.tenant_id = e.tenant_id AND v.address_key = e.address_key\n"
        "SETTINGS insert_deduplicate = 0, insert_distributed_sync = 1, join_use_nulls = 0"
    ),
)
"""The events stored before the view existed, counted into ``address_activity`` once.

``migrate`` runs before the sink consumes, but an upgrade may leave older sinks inserting while
it runs, and a migration interrupted after its backfill is run again from the start. So the
backfill owns partition ``backfilled = 1`` and replaces it on every run: the partition is
dropped, then refilled with, per address, every stored event minus what the view has already
counted (partition 0). Run once or five times, with the view counting meanwhile or not, each
event is counted once: by the view if it arrived after the view existed, else by the backfill.
(Only an event a still-running sink inserts in the instant between the backfill's reads of the
two tables can count twice; with the sinks stopped, or on a fresh install, none.) First and
last seen are taken over every stored event (a minimum counted twice is the same
minimum). ``insert_deduplicate = 0``: the rollup keeps a deduplication window for the view's
inserts, and a re-run writes the very same block again, which must never be taken for a repeat
(dropping a partition forgets its blocks' hashes today; the setting does not rely on it). On a
cluster the insert goes through the Distributed tables (sharded by tenant like the events) and
waits for every shard (``insert_distributed_sync``).
"""

TENANTS = Table(
    "tenants",
    (
        "tenant_id LowCardinality(String)",
        "name String",
        "domains Array(String)",
        "tech_contact String",
        "admin_contact String",
        "settings String",
        "is_deleted UInt8",
        *KAFKA_POSITION,
    ),
    engine="ReplacingMergeTree",
    engine_args="kafka_offset, is_deleted",
    order_by="tenant_id",
)

REPORT_LOG = Table(
    "report_log",
    (
        "tenant_id LowCardinality(String)",
        "report LowCardinality(String)",
        "week String",
        "state LowCardinality(String)",
        "message_id String",
        "recipients Array(String)",
        "rows UInt32",
        "at DateTime64(3, 'UTC')",
    ),
    engine="ReplacingMergeTree",
    engine_args="at",
    order_by="(tenant_id, report, week)",
    dedup=False,
)

SINK_PROGRESS = Table(
    "sink_progress",
    (
        "consumer_group String",
        "topic String",
        "partition UInt16",
        "start_offset UInt64",
        "end_offset UInt64",
        "token String",
        "at DateTime64(3, 'UTC')",
    ),
    engine="ReplacingMergeTree",
    engine_args="end_offset",
    order_by="(consumer_group, topic, partition)",
    dedup=False,
    sharding_key="cityHash64(consumer_group, topic, partition)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "discovery history",
        (
            ADDRESS_STATE,
            STATE_CHANGES,
            MAIL_EVENTS,
            TENANT_DAILY,
            MAIL_DAILY,
            CHANGES_DAILY,
            TENANTS,
            REPORT_LOG,
            SINK_PROGRESS,
        ),
    ),
    Migration(
        2,
        "address activity from the mail events",
        (
            ADDRESS_ACTIVITY,
            MAIL_ACTIVITY,
            *ACTIVITY_BACKFILL,
            Alter(
                ADDRESS_STATE,
                ", ".join(f"DROP COLUMN IF EXISTS {c}" for c in ADDRESS_STATE_DROPPED),
            ),
        ),
    ),
)

MIGRATIONS_TABLE = Table(
    "schema_migrations",
    ("version UInt32", "name String", "applied_at DateTime64(3, 'UTC')"),
    engine="MergeTree",
    order_by="version",
    dedup=False,
    sharding_key=None,
)


def ttl_statement(layout: Layout) -> str:
    """Run on every migrate: the mail events' TTL follows DISCOVERY_MAIL_EVENTS_TTL_DAYS."""
    return (
        f"ALTER TABLE {layout.local('mail_events')}{layout.on_cluster} MODIFY TTL "
        f"toDateTime(event_time) + INTERVAL {layout.mail_events_ttl_days} DAY"
    )
