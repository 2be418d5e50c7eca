"""``smtp-discovery status``: the whole system on one screen, and an exit code for scripts.

What it shows, and where each figure comes from:

- **roles**: ready or not, and where each listens. A role's own ``/readyz`` on its ops endpoint
  (``platform.ops``) says whether it is ready. Under `up`, ``endpoints.json`` lists the ops
  endpoints of its children (the ingest node's is DISCOVERY_OPS_LISTEN; without one, the node
  is ready when it greets on its SMTP port); the sink, the admin API and the jobs run inside
  `up`'s own process, which is alive when its admin API answers (``/v1/tenants``, which reads
  no ClickHouse), and the sink is ready while its consumer group has a member. In a cluster
  the operator names the ops endpoints (``--ops ROLE=URL``); a role not named is shown as not
  checked.
- **Kafka**: reachable when its admin client starts and describes the cluster.
- **ClickHouse**: under `up` (whose chDB no other process may open) reachable when the admin
  API's ``/v1/overview`` reads it; in a cluster, a query of its own.
- **lag**: records written to a group's input topics that the group has not committed yet
  (end offsets minus committed offsets), for the streams workers and the sinks.
- **spool**: the bytes of events the ingest nodes hold for Kafka (their ``/metrics``).
- **tenants and addresses by status**: under `up`, its admin API (the tenants list's ``total``,
  and ``/v1/overview``); in a cluster, ClickHouse.

Exit status 0 when every role checked is ready and Kafka and ClickHouse are reachable, else 1
(and the screen says what is not). Lag and spool are figures, not verdicts: alert on them where
the metrics go. Gathering does the I/O; ``Facts`` -> ``render``/``exit_code`` is pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from smtp_discovery.platform.clickhouse import connect, redact_url
from smtp_discovery.platform.config import RuntimeConfig, split_host_port
from smtp_discovery.platform.errors import ConfigError, OperatorError
from smtp_discovery.platform.kafka import client_options
from smtp_discovery.platform.running import RunningSystem, on_up, up_endpoints
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.tenant import PROVIDER_DEFAULTS_KEY
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    COMMANDS,
    MAIL,
    MAIL_SETTLED,
    STATE_CHANGES,
)
from smtp_discovery.sinks import queries

T = TypeVar("T")

ROLES = ("ingest", "worker", "sink", "admin", "jobs")
LABELS = {"ingest": "ingest", "worker": "worker", "sink": "sink", "admin": "admin API",
          "jobs": "jobs"}  # fmt: skip
NAMES = {"ingest": "the ingest node", "worker": "the streams worker", "sink": "the sink",
         "admin": "the admin API", "jobs": "the report jobs"}  # fmt: skip

READY, NOT_READY, OFF, NOT_CHECKED = "ready", "not ready", "off", "not checked"
"""A role instance's states; only NOT_READY fails the exit status."""

WORKER_TOPICS = (MAIL, COMMANDS)
"""What the streams workers consume (``streams.app``)."""
SINK_TOPICS = (ADDRESS_STATE, STATE_CHANGES, MAIL, MAIL_SETTLED)
"""What the sinks consume, but the tenants topic: it is written in transactions, and its end
offset is a marker no consumer commits past (as ``admin.erasure`` waits for the sinks)."""

SPOOL_GAUGE = "smtp_discovery_ingest_spool_depth_bytes"
PROBE_TIMEOUT_S = 5.0
"""One HTTP or SMTP probe, and one Kafka request."""
GATHER_TIMEOUT_S = 30.0
"""Kafka and ClickHouse each, all their requests together (counting millions of addresses
with FINAL takes seconds)."""


# ---- the facts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a role: where it listens, its state and why."""

    role: str
    state: str
    where: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Reach:
    reachable: bool
    where: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Lag:
    role: str
    group: str
    topics: tuple[str, ...]
    records: int | None
    """None: unknown (``detail`` says why)."""
    members: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Facts:
    system: str
    """What was asked: `up` on a data directory, or a cluster."""
    problem: str = ""
    """A sentence when there was nothing to ask (no `up` running, no cluster configured)."""
    roles: tuple[Instance, ...] = ()
    kafka: Reach | None = None
    clickhouse: Reach | None = None
    lags: tuple[Lag, ...] = ()
    spool_bytes: float | None = None
    spool_detail: str = ""
    tenants: int | None = None
    addresses: dict[str, int] | None = None
    counts_detail: str = ""


# ---- the verdict and the screen (pure) ---------------------------------------------------------


def not_ready(facts: Facts) -> list[str]:
    """One sentence per thing that is not ready; none when all is."""
    found = [facts.problem] if facts.problem else []
    for instance in facts.roles:
        if instance.state == NOT_READY:
            where = f" ({instance.where})" if instance.where else ""
            found.append(f"{NAMES[instance.role]}{where} is not ready: {instance.detail}")
    for name, reach in (("Kafka", facts.kafka), ("ClickHouse", facts.clickhouse)):
        if reach is not None and not reach.reachable:
            found.append(f"{name} at {reach.where} is unreachable: {reach.detail}")
    return found


def exit_code(facts: Facts) -> int:
    return 1 if not_ready(facts) else 0


def render(facts: Facts) -> str:
    """The screen: roles, Kafka and ClickHouse, lag, spool, counts, then the verdict."""
    lines = [f"smtp-discovery status: {facts.system}"]
    if facts.roles:
        lines.append("")
        for instance in facts.roles:
            text = ", ".join(part for part in (instance.where, instance.detail) if part)
            lines.append(f"{LABELS[instance.role]:12}{instance.state:12}{text}".rstrip())
    if facts.kafka or facts.clickhouse:
        lines.append("")
    for name, reach in (("kafka", facts.kafka), ("clickhouse", facts.clickhouse)):
        if reach is not None:
            state = "reachable" if reach.reachable else "UNREACHABLE"
            text = f"{reach.where} ({reach.detail})" if reach.detail else reach.where
            lines.append(f"{name:12}{state:12}{text}")
    if facts.lags or facts.kafka:
        lines.append("")
    for lag in facts.lags:
        figure = "unknown" if lag.records is None else f"{lag.records} records"
        members = "" if lag.members is None else f", {_plural(lag.members, 'member')}"
        why = f"; {lag.detail}" if lag.detail else ""
        lines.append(f"{'lag':12}{LABELS[lag.role]:12}{figure} "
                     f"(group {lag.group}{members}{why})")  # fmt: skip
    if not facts.problem:
        why = f" ({facts.spool_detail})" if facts.spool_detail else ""
        spool = "unknown"
        if facts.spool_bytes is not None:
            spool = f"{facts.spool_bytes:g} bytes waiting in the ingest spool for Kafka"
        lines.append(f"{'spool':12}{spool}{why}")
        lines.append(f"{'tenants':12}{'unknown' if facts.tenants is None else facts.tenants}")
        lines.append(f"{'addresses':12}{_addresses(facts.addresses)}")
        if facts.counts_detail:
            lines.append(f"{'':12}({facts.counts_detail})")
    lines.append("")
    problems = not_ready(facts)
    if not problems:
        lines.append("all ready")
    else:
        lines.append("NOT READY:")
        lines += [f"- {problem}" for problem in problems]
    return "\n".join(lines) + "\n"


def as_json(facts: Facts) -> dict[str, Any]:
    """The same facts for machines, with the verdict."""
    out = asdict(facts)
    out["lags"] = [{**asdict(lag), "topics": list(lag.topics)} for lag in facts.lags]
    out["ready"] = exit_code(facts) == 0
    out["not_ready"] = not_ready(facts)
    return out


def _addresses(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "unknown"
    known = [status.value for status in AddressStatus]
    order = known + sorted(set(counts) - set(known))
    parts = ", ".join(f"{status} {counts.get(status, 0)}" for status in order)
    return f"{sum(counts.values())}: {parts}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# ---- the operator's ops endpoints ---------------------------------------------------------------


def parse_ops(items: Sequence[str]) -> dict[str, list[str]]:
    """``--ops ROLE=URL[,URL...]`` (repeatable) -> role -> base URLs; ``host:port`` is enough."""
    ops: dict[str, list[str]] = {}
    for item in items:
        role, sep, urls = item.partition("=")
        role = role.strip()
        if not sep or role not in ROLES or not urls.strip():
            raise ConfigError(f"--ops {item!r} is not ROLE=URL with a role of {', '.join(ROLES)}")
        for url in urls.split(","):
            if url.strip():
                ops.setdefault(role, []).append(_base_url(url.strip()))
    return ops


def _base_url(address: str) -> str:
    """``http://host:port`` of ``host:port`` or of a URL; a wildcard host becomes loopback (an
    endpoint listening on every address is asked on this machine's)."""
    url = address if "://" in address else f"http://{address}"
    scheme, _, rest = url.partition("://")
    hostport = rest.split("/", 1)[0]
    with contextlib.suppress(ValueError):
        host, port = split_host_port(hostport)
        if host in ("0.0.0.0", ""):
            hostport = f"127.0.0.1:{port}"
        elif host == "::":
            hostport = f"[::1]:{port}"
        elif ":" in host:
            hostport = f"[{host}]:{port}"
    return f"{scheme}://{hostport}"


# ---- gathering -----------------------------------------------------------------------------------


async def gather(config: RuntimeConfig, ops: dict[str, list[str]] | None = None) -> Facts:
    """The facts: of the cluster KAFKA_BOOTSTRAP names, else of the `up` on the data
    directory. Never raises for a part that does not answer: that is a fact too."""
    ops = ops or {}
    if config.kafka_bootstrap:
        return await _cluster(config, ops)
    endpoints = up_endpoints(config.data_dir)
    if endpoints is None:
        return Facts(
            system=f"`up` on {config.data_dir}",
            problem=f"no `smtp-discovery up` is running on {config.data_dir}: start one (same "
            "DISCOVERY_DATA_DIR), or, for a cluster, set KAFKA_BOOTSTRAP (and CLICKHOUSE_URL) "
            "and name the roles' ops endpoints with --ops ROLE=URL",
        )
    return await _up(config, endpoints, ops)


async def _up(config: RuntimeConfig, endpoints: dict[str, Any], ops: dict[str, list[str]]) -> Facts:
    on_kafka = on_up(config, endpoints)
    api = RunningSystem(config.data_dir)
    listed = {role: [_base_url(a)] for role, a in endpoints.get("ops", {}).items()}
    named = {**listed, **ops}
    # Without an ops endpoint the ingest node is ready when it greets (it listens once ready).
    greeting = _smtp_greets if "ingest" not in named else lambda _address: (True, "")
    kafka, listed_tenants, answer, probed, (greets, smtp_why) = await asyncio.gather(
        _kafka(on_kafka),
        asyncio.to_thread(_call, api, "/v1/tenants?per_page=1", PROBE_TIMEOUT_S),
        asyncio.to_thread(_call, api, "/v1/overview", GATHER_TIMEOUT_S),
        _probe_all(named),
        asyncio.to_thread(greeting, endpoints["smtp"]),
    )
    reach, lags = kafka
    alive = listed_tenants[0] is not None
    in_up = "in `up`'s process"
    smtp = f"smtp {endpoints['smtp']}"
    roles: list[Instance] = []
    if "ingest" in named:
        roles += [Instance("ingest", p.state, f"{smtp}, ops {p.where}", p.detail)
                  for p in probed["ingest"]]  # fmt: skip
    else:
        roles.append(Instance("ingest", READY if greets else NOT_READY, smtp,
                              "it greets (no ops endpoint: DISCOVERY_OPS_LISTEN=off)"
                              if greets else smtp_why))  # fmt: skip
    roles += _instances("worker", probed, "`up` lists no ops endpoint for it (an older `up`)")
    if "sink" in named:
        roles += _instances("sink", probed, "")
    else:
        sink_lag = next(lag for lag in lags if lag.role == "sink")
        if not alive:
            state, why = NOT_READY, "`up`'s admin API, in the same process, does not answer"
        elif sink_lag.members:
            state, why = READY, f"group {sink_lag.group}: {_plural(sink_lag.members, 'member')}"
        elif sink_lag.members == 0:
            state, why = NOT_READY, f"its consumer group {sink_lag.group} has no member"
        else:
            state, why = NOT_READY, f"its consumer group cannot be read: {sink_lag.detail}"
        roles.append(Instance("sink", state, in_up, why))
    admin_where = f"http://{endpoints['admin']}"
    if "admin" in named:
        roles += _instances("admin", probed, "")
    else:
        roles.append(Instance("admin", READY if alive else NOT_READY, admin_where,
                              "" if alive else listed_tenants[1]))  # fmt: skip
    if "jobs" in named:
        roles += _instances("jobs", probed, "")
    elif not endpoints.get("jobs"):
        roles.append(Instance("jobs", OFF, "", "DISCOVERY_REPORT_SMARTHOST was not set for `up`"))
    else:
        roles.append(Instance("jobs", READY if alive else NOT_READY, in_up,
                              "" if alive else "`up`'s admin API does not answer"))  # fmt: skip
    clickhouse_where = endpoints.get("clickhouse", "`up`'s chDB")
    status, body = answer
    if status == 200 and isinstance(body, dict):
        clickhouse = Reach(True, clickhouse_where, "read through the admin API")
        addresses, counts_detail = body["addresses"], ""
    else:
        why = answer[1] if status is None else f"the admin API answered {status}: {_error(body)}"
        clickhouse = Reach(False, clickhouse_where, why)
        addresses, counts_detail = None, why
    tenants_status, tenants_body = listed_tenants
    tenants = tenants_body["total"] if tenants_status == 200 else None
    spool, spool_detail = _spool(probed.get("ingest"))
    return Facts(
        system=f"`up` on {config.data_dir}",
        roles=tuple(roles),
        kafka=reach,
        clickhouse=clickhouse,
        lags=lags,
        spool_bytes=spool,
        spool_detail=spool_detail,
        tenants=tenants,
        addresses=addresses,
        counts_detail=counts_detail,
    )


async def _cluster(config: RuntimeConfig, ops: dict[str, list[str]]) -> Facts:
    kafka, probed, clickhouse = await asyncio.gather(
        _kafka(config), _probe_all(ops), _clickhouse(config)
    )
    reach, lags = kafka
    roles: list[Instance] = []
    for role in ROLES:
        if role in ops:
            roles += _instances(role, probed, "")
        else:
            roles.append(
                Instance(role, NOT_CHECKED, "", f"name its ops endpoint: --ops {role}=URL")
            )
    ch_reach, tenants, addresses = clickhouse
    spool, spool_detail = _spool(probed.get("ingest"))
    return Facts(
        system=f"the cluster at {config.kafka_bootstrap}",
        roles=tuple(roles),
        kafka=reach,
        clickhouse=ch_reach,
        lags=lags,
        spool_bytes=spool,
        spool_detail=spool_detail,
        tenants=tenants,
        addresses=addresses,
        counts_detail="" if ch_reach.reachable else "ClickHouse is unreachable",
    )


def _instances(role: str, probed: dict[str, list[Probed]], missing: str) -> list[Instance]:
    found = probed.get(role)
    if not found:
        return [Instance(role, NOT_READY, "", missing)]
    return [Instance(role, p.state, f"ops {p.where}", p.detail) for p in found]


def _error(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body["error"]))
    return str(body)[:200]


def _call(api: RunningSystem, path: str, timeout: float) -> tuple[int | None, Any]:
    """(status, body) of an operator call to `up`'s API, or (None, why it did not answer)."""
    try:
        return api.call("GET", path, timeout=timeout)
    except OperatorError as exc:
        return None, exc.message
    except (OSError, ValueError) as exc:
        return None, f"the admin API at {api.base} did not answer: {exc}"


# ---- ops endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probed:
    """What one ops endpoint answered."""

    state: str
    where: str
    detail: str = ""
    spool_bytes: float | None = None
    """An ingest node's spool, from its /metrics."""


async def _probe_all(named: dict[str, list[str]]) -> dict[str, list[Probed]]:
    pairs = [(role, url) for role, urls in named.items() for url in urls]
    results = await asyncio.gather(*(asyncio.to_thread(_probe, role, url) for role, url in pairs))
    out: dict[str, list[Probed]] = {}
    for (role, _url), result in zip(pairs, results, strict=True):
        out.setdefault(role, []).append(result)
    return out


def _probe(role: str, url: str) -> Probed:
    """Ask ``url``'s /readyz (and an ingest node's /metrics for its spool)."""
    where = url.removeprefix("http://")
    status, text = _get(f"{url}/readyz")
    if status is None:
        return Probed(NOT_READY, where, f"its ops endpoint does not answer ({text})")
    if status != 200:
        return Probed(NOT_READY, where, f"/readyz answered {status} {text.strip()}".rstrip())
    if role != "ingest":
        return Probed(READY, where)
    status, text = _get(f"{url}/metrics")
    return Probed(READY, where, spool_bytes=_gauge(text, SPOOL_GAUGE) if status == 200 else None)


def _get(url: str) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, str(reason) or type(exc).__name__


def _gauge(metrics: str, name: str) -> float | None:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def _spool(probed: list[Probed] | None) -> tuple[float | None, str]:
    """The ingest nodes' spool, summed, from what their /metrics said."""
    if probed is None:
        return None, "no ingest ops endpoint to read it from"
    figures = [p.spool_bytes for p in probed if p.spool_bytes is not None]
    if not figures:
        return None, "no ingest node answered /metrics"
    missing = len(probed) - len(figures)
    return sum(figures), f"{missing} of the ingest nodes did not answer" if missing else ""


def _smtp_greets(address: str) -> tuple[bool, str]:
    """True when a 220 greeting comes on ``address`` (the ingest node listens once ready)."""
    host, port = split_host_port(address)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as conn:
            greeting = conn.recv(512)
            with contextlib.suppress(OSError):
                conn.sendall(b"QUIT\r\n")
    except OSError as exc:
        return False, f"it does not answer SMTP on {address} ({exc.strerror or exc})"
    if greeting.startswith(b"220"):
        return True, ""
    return False, f"it answered SMTP on {address} with {greeting[:60]!r}"


# ---- Kafka ---------------------------------------------------------------------------------------


async def _kafka(config: RuntimeConfig) -> tuple[Reach, tuple[Lag, ...]]:
    """Kafka's reachability and the lag of the workers' and the sinks' groups."""
    where = config.kafka_bootstrap or ""
    groups = (("worker", config.streams_app_id, WORKER_TOPICS),
              ("sink", config.sink_group, SINK_TOPICS))  # fmt: skip
    try:
        options = client_options(config)
    except OperatorError as exc:
        unknown = tuple(Lag(r, g, tuple(config.topics(t) for t in ts), None, detail=exc.message)
                        for r, g, ts in groups)  # fmt: skip
        return Reach(False, where, exc.message), unknown
    try:
        return await asyncio.wait_for(_kafka_facts(options, config, groups), GATHER_TIMEOUT_S)
    except Exception as exc:  # unreachable, refused, timed out: all a fact to show
        why = _why(exc)
        unknown = tuple(Lag(r, g, tuple(config.topics(t) for t in ts), None,
                            detail="Kafka is unreachable") for r, g, ts in groups)  # fmt: skip
        return Reach(False, where, why), unknown


async def _kafka_facts(
    options: dict[str, Any],
    config: RuntimeConfig,
    groups: tuple[tuple[str, str, tuple[str, ...]], ...],
) -> tuple[Reach, tuple[Lag, ...]]:
    timeout_ms = int(PROBE_TIMEOUT_S * 1000)
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=timeout_ms)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        reach = Reach(True, str(options["bootstrap_servers"]), _plural(brokers, "broker"))
        await consumer.start()
        lags = [await _lag(admin, consumer, config, *group) for group in groups]
        return reach, tuple(lags)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await admin.close()


async def _lag(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    config: RuntimeConfig,
    role: str,
    group: str,
    bases: tuple[str, ...],
) -> Lag:
    topics = tuple(config.topics(base) for base in bases)
    try:
        described = await admin.describe_topics(list(topics))
        partitions = [TopicPartition(t["topic"], p["partition"]) for t in described
                      if not t.get("error_code") for p in t["partitions"]]  # fmt: skip
        ends = await consumer.end_offsets(partitions) if partitions else {}
        starts = await consumer.beginning_offsets(partitions) if partitions else {}
        committed = await admin.list_consumer_group_offsets(group)
        members = await _members(admin, group)
    except Exception as exc:
        return Lag(role, group, topics, None, detail=_why(exc))
    return Lag(role, group, topics, lag_of(ends, starts, committed), members)


def lag_of(ends: dict[Any, int], starts: dict[Any, int], committed: dict[Any, Any]) -> int:
    """Records between each partition's committed offset (its first offset if the group has
    none there) and its end, summed."""
    total = 0
    for tp, end in ends.items():
        mark = committed.get(tp)
        offset = getattr(mark, "offset", -1) if mark is not None else -1
        total += max(0, end - max(offset, starts.get(tp, 0)))
    return total


async def _members(admin: AIOKafkaAdminClient, group: str) -> int | None:
    for response in await admin.describe_consumer_groups([group]):
        for described in response.groups:
            error, group_id, state, members = described[0], described[1], described[2], described[5]
            if group_id == group and not error:
                return len(members) if state not in ("Dead", "Empty") else 0
    return None


def _why(exc: BaseException, limit: int = 240) -> str:
    """One short sentence of an exception (a ClickHouse error can fill a screen)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {GATHER_TIMEOUT_S:g} s"
    text = exc.message if isinstance(exc, OperatorError) else str(exc)
    name = type(exc).__name__
    text = text if text.startswith(name) or isinstance(exc, OperatorError) else f"{name}: {text}"
    text = " ".join(text.split()).rstrip(": ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- ClickHouse (a cluster's) --------------------------------------------------------------------


async def _clickhouse(config: RuntimeConfig) -> tuple[Reach, int | None, dict[str, int] | None]:
    """A cluster's ClickHouse: reachable, its tenants and addresses by status."""
    url = config.effective_clickhouse_url
    layout = config.analytics_layout

    def ask() -> tuple[str, int, dict[str, int]]:
        client = connect(url)
        version = client.query("SELECT version()").result_rows[0][0]
        tenants = sum(1 for row in queries.tenant_rows(client, layout)
                      if row.tenant_id != PROVIDER_DEFAULTS_KEY)  # fmt: skip
        return str(version), tenants, queries.addresses_by_status(client, layout)

    try:
        version, tenants, addresses = await _off_loop(ask, GATHER_TIMEOUT_S)
    except Exception as exc:
        return Reach(False, redact_url(url), _why(exc)), None, None
    return Reach(True, redact_url(url), f"ClickHouse {version}"), tenants, addresses


async def _off_loop(call: Callable[[], T], timeout: float) -> T:
    """``call()`` in a daemon thread, waited for at most ``timeout``: a ClickHouse that never
    answers must not keep the command from exiting (``asyncio.to_thread``'s pool would)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="status-clickhouse", daemon=True).start()
    return await asyncio.wait_for(future, timeout)


# ---- the command ---------------------------------------------------------------------------------


def status_command(config: RuntimeConfig, ops: Sequence[str], as_machine: bool) -> int:
    """Print the screen (or JSON) and return the exit status."""
    facts = asyncio.run(gather(config, parse_ops(ops)))
    if as_machine:
        print(json.dumps(as_json(facts), indent=2, default=str))
    else:
        print(render(facts), end="")
    return exit_code(facts)
