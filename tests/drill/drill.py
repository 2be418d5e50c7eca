"""The cluster drill: the same simulated weeks of mail through docker-compose.yml's roles, once
undisturbed and once with a broker, a streams worker, the sink and an ingest node killed in turn
while the mail flows; what each run left behind, to compare; and how long each kill took to
recover from.

The traffic (:func:`scenario`) is a fixed list of steps, the same in both runs: SMTP messages
through the two ingest nodes (alternately, the other one when a node does not answer, as an MTA
falls back to its next MX), admin actions through the API, barriers (wait until the worker has
published a state the next step depends on), and moves of the simulated clock. Steps are sent
one at a time, so both runs put the same events on each partition in the same order. The drill
fires each kill when the traffic reaches its point, without pausing the traffic, and the next
kill only once the system has recovered from the previous one.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.localkafka.node import free_port, port_is_free
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.views import CompactedTopicFollower
from smtp_discovery.schemas.codec import decode
from smtp_discovery.schemas.mail import CalloutVerified
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    COMMANDS,
    MAIL,
    MAIL_SETTLED,
    STATE_CHANGES,
)
from smtp_discovery.schemas.topics import topic as spec_of
from smtp_discovery.status import _members as members
from smtp_discovery.streams.partitioning import partition_for
from tests.drill.deployment import PASSWORD_VARIABLES, Deployment, cluster_logins, grant
from tests.ingest.postfix import PostfixServer

BODY = b"From: news@partner.example\r\nSubject: drill\r\n\r\nOne message.\r\n"
PARTNER = "news@partner.example"
OUTBOUND_IP = "127.0.0.2"
WEEK = timedelta(weeks=1)
KILLS = ("broker", "worker", "sink", "ingest")
"""In the order the drill fires them."""

TENANTS = {
    # tenant: (domains, the addresses its mail server (Postfix) has)
    "acme": (
        ("a.example", "b.example"),
        (
            "alice@a.example",
            "bob@a.example",
            "dave@a.example",
            "alice@b.example",
            "carol@b.example",
        ),
    ),
    "beta": (("g.example",), ("erin@g.example", "frank@g.example", "gina@g.example")),
    "gamma": (("c.example",), ("hank@c.example", "ivy@c.example")),
}
POSTFIX_TENANTS = ("acme", "beta")
"""The tenants whose mail server is the real Postfix; gamma's is a second Postfix instance's
domain list on the same server (one Postfix plays every tenant's server; the issue asks for two
at least)."""


# --- the traffic ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    sender: str
    rcpt: str
    outbound: bool = False


@dataclass(frozen=True)
class AdminAction:
    tenant: str
    action: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Barrier:
    """Wait until the worker has published ``status`` for ``address`` (the next steps'
    outcome depends on it, so both runs must have it before they go on)."""

    tenant: str
    address: str
    status: str


@dataclass(frozen=True)
class Week:
    """The simulated clock moves to week ``n`` (ingest nodes and the admin API)."""

    n: int


@dataclass(frozen=True)
class KillPoint:
    kill: str


Step = Mail | AdminAction | Barrier | Week | KillPoint


def pool(steady: int) -> dict[str, list[str]]:
    """The addresses the steady traffic goes to, per tenant: discovered in week 0, some made
    users by an admin in week 1, the others left to expire in week 5."""
    return {
        "acme": [f"s{i}@a.example" for i in range(steady)],
        "beta": [f"t{i}@g.example" for i in range(steady)],
        "gamma": [f"u{i}@c.example" for i in range(max(1, steady // 2))],
    }


def ticks(partitions: int) -> list[str]:
    """One new address of beta's on each partition of the mail topic: week 5's mail to them
    moves every partition's event time past the expiries. (Mail to the expiring addresses
    themselves would race their expiry: once one of them expired, the next message to another
    on its partition is refused or not, depending on how soon the ingest nodes hear of it.)"""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        address = f"w{n}@g.example"
        event = CalloutVerified(
            tenant_id="beta",
            event_time=datetime.now(UTC),
            address=address,
            destination="mx:25",
            reply_code=250,
        )
        found.setdefault(partition_for(event.kafka_key(), partitions), address)
        n += 1
    return [found[p] for p in range(partitions)]


def mailboxes(steady: int, partitions: int) -> dict[str, tuple[str, ...]]:
    boxes = {t: (*boxes, *pool(steady)[t]) for t, (_, boxes) in TENANTS.items()}
    boxes["beta"] = (*boxes["beta"], *ticks(partitions))
    return boxes


def scenario(steady: int, rounds: int, partitions: int) -> list[Step]:
    """Six simulated weeks; ``rounds`` messages to every steady address in weeks 1 and 2, with
    the kill points spread over them."""
    addresses = pool(steady)
    steps: list[Step] = [Week(0)]
    # Week 0: discoveries (three clean messages each), one-offs that stay pending, rejections.
    found = [
        "bob@a.example",
        "carol@b.example",
        "dave@a.example",
        "erin@g.example",
        "frank@g.example",
        "hank@c.example",
        *[a for t in addresses.values() for a in t],
    ]
    for _ in range(3):
        steps += [Mail(PARTNER, rcpt) for rcpt in found]
    steps += [Mail(PARTNER, "gina@g.example"), Mail(PARTNER, "ivy@c.example")]
    steps += [Mail(PARTNER, "nobody@a.example"), Mail(PARTNER, "ghost@g.example")]
    # Outbound: alice becomes a user; then her address in acme's other domain is her alias.
    # (To her own tenant's domain: internal mail goes back to the tenant's server, Postfix; mail
    # to the outside would need compose's smarthost.)
    steps += [
        Mail("alice@a.example", "bob@a.example", outbound=True),
        Barrier("acme", "alice@a.example", "user"),
        Mail(PARTNER, "alice@b.example"),
        Barrier("acme", "alice@b.example", "alias"),
    ]
    for address in found:
        tenant = next(t for t, (domains, _) in TENANTS.items() if address.split("@")[1] in domains)
        steps.append(Barrier(tenant, address, "discovered"))
    # Week 1: admins act; no mail to bob once he is invalid.
    steps += [
        Week(1),
        AdminAction("acme", "create_user", ("carol@b.example", *addresses["acme"])),
        AdminAction("acme", "mark_invalid", ("bob@a.example",)),
        AdminAction("beta", "create_user", ("erin@g.example", *addresses["beta"][: steady // 2])),
    ]
    # Weeks 1 and 2: steady mail to every steady address, the kills among it.
    steady_mail = [Mail(PARTNER, a) for _ in range(rounds) for t in addresses.values() for a in t]
    half = len(steady_mail) // 2
    weeks: list[Step] = [*steady_mail[:half], Week(2), *steady_mail[half:]]
    points = len(KILLS)
    stride = len(weeks) // (points + 1)
    for i, kill in reversed(list(enumerate(KILLS))):
        weeks.insert(stride * (i + 1), KillPoint(kill))
    steps += weeks
    # Week 5: past the expiry of what was discovered in week 0 and never managed.
    expiring = [
        "dave@a.example",
        "frank@g.example",
        "hank@c.example",
        *addresses["beta"][steady // 2 :],
        *addresses["gamma"],
    ]
    steps += [Week(5), *[Mail(PARTNER, a) for a in ticks(partitions)]]
    for address in expiring:
        tenant = next(t for t, (domains, _) in TENANTS.items() if address.split("@")[1] in domains)
        steps.append(Barrier(tenant, address, "invalid"))
    return steps


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Recovery:
    kill: str
    seconds: float
    """From the SIGKILL until everything written before it was processed by the workers and
    the sink (their committed offsets past the ends at the kill), and the killed part (or its
    replacement) serves again."""
    detail: dict[str, float] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a run left behind, times and ids left out (the runs are minutes apart)."""

    replies: list[str]
    states: dict[str, tuple[Any, ...]]
    transitions: Counter[tuple[str, ...]]
    transitions_on_topic: int
    delivered: dict[str, int]
    clickhouse: dict[str, list[list[Any]]]
    recoveries: list[Recovery] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


class Run:
    """One compose project on the shared cluster, with its own Postfix."""

    def __init__(
        self,
        kafka: LocalKafka,
        passwords: dict[str, str],
        directory: Path,
        name: str,
        *,
        steady: int,
        overrides: dict[str, str],
        worker_overrides: dict[str, str],
        drill: bool,
    ) -> None:
        self.kafka = kafka
        self.super = kafka.client_options()
        self.directory = directory
        self.steady = steady
        self.drill = drill
        self.clock_file = directory / "clock-offset"
        self.deployment = Deployment(
            kafka, passwords, directory, name, self.clock_file, overrides, worker_overrides
        )
        self.config: RuntimeConfig = self.deployment.config()
        self.partitions = spec_of(MAIL).partition_count(self.config.topic_partitions)
        self.postfix = PostfixServer(
            port=free_port(),
            domains=tuple(d for t in TENANTS.values() for d in t[0]),
            mailboxes=tuple(
                m for boxes in mailboxes(steady, self.partitions).values() for m in boxes
            ),
        )
        self.states: dict[str, Any] = {}
        self.follower: CompactedTopicFollower | None = None
        self.api: httpx.AsyncClient | None = None
        self.replies: list[str] = []
        self.recoveries: list[Recovery] = []
        self.sent = 0
        self.sessions: dict[int, aiosmtplib.SMTP] = {}
        self.killed_at = 0.0
        self.ingest_killed = asyncio.Event()
        self.segment_sent = asyncio.Event()
        """Set when the mail that follows a kill point has been sent (the next point reached)."""
        self.up_phases: dict[str, float] = {}
        self.retried_s = float("nan")
        """Seconds from the ingest kill until the other node answered the retried message."""

    # --- start, as compose orders it -------------------------------------------------------

    async def up(self) -> None:
        d = self.deployment
        began = time.monotonic()
        mark = self.up_phases

        def note(what: str) -> None:
            mark[what] = round(time.monotonic() - began, 1)

        self.postfix.start()  # kafka-users (the logins were made with the cluster)
        # The one-shots, together as compose runs them (each waits for nothing of the others').
        await asyncio.gather(
            *(asyncio.to_thread(d.cli, s) for s in ("topics", "migrate", "admin-key"))
        )
        note("one-shots")
        d.start_chdb_roles()
        for service in ("worker-1", "worker-2"):
            d.start(service)
        await asyncio.to_thread(d.wait_ready, "sink")
        note("sink and admin ready")
        token = await asyncio.to_thread(d.cli, "admin", "token", "create", "--operator")
        admin = d.port("admin", "DISCOVERY_ADMIN_LISTEN")
        self.api = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{admin}",
            timeout=60,
            headers={"Authorization": f"Bearer {token.strip()}"},
        )
        # The tenants, before the ingest nodes start (they read their views before listening).
        note("token")
        for tenant, (domains, _) in TENANTS.items():
            await self._create_tenant(tenant, domains)
        note("tenants")
        for service in ("ingest-1", "ingest-2"):
            d.start(service)
        for service in ("worker-1", "worker-2", "ingest-1", "ingest-2"):
            await asyncio.to_thread(d.wait_ready, service)
        note("workers and ingest ready")
        self.follower = CompactedTopicFollower(
            self.super, self.config.topics(ADDRESS_STATE), self._note_state
        )
        await self.follower.start()

    async def _create_tenant(self, tenant: str, domains: tuple[str, ...]) -> None:
        assert self.api is not None
        body = {
            "tenant_id": tenant,
            "name": tenant.title(),
            "domains": list(domains),
            "destinations": [{"host": "127.0.0.1", "port": self.postfix.port}],
            "outbound_ranges": [f"{OUTBOUND_IP}/32"] if tenant == "acme" else [],
            "settings": {"discovery_enabled": True, "auto_add_outbound_users": True},
        }
        deadline = time.monotonic() + 90
        while True:  # 401 until the admin API has read the token just made
            answer = await self.api.post("/v1/tenants", json=body)
            if answer.status_code == 201:
                return
            assert answer.status_code == 401 and time.monotonic() < deadline, answer.text
            await asyncio.sleep(0.2)

    def _note_state(self, key: bytes | None, value: bytes | None) -> None:
        if key is not None:
            self.states[key.decode()] = None if value is None else decode(ADDRESS_STATE, value)

    def _set_week(self, n: int) -> None:
        partial = self.clock_file.with_suffix(".new")
        partial.write_text(str((n * WEEK).total_seconds()))
        os.replace(partial, self.clock_file)  # atomically: a role never reads half a number

    # --- the traffic ---------------------------------------------------------------------------

    async def play(self, steps: list[Step], killer: Callable[[str], Any] | None) -> None:
        kills: asyncio.Task[None] | None = None
        for step in steps:
            if isinstance(step, Week):
                self._set_week(step.n)
            elif isinstance(step, Mail):
                self.replies.append(await self.send(step))
            elif isinstance(step, AdminAction):
                await self.act(step)
            elif isinstance(step, Barrier):
                await self.barrier(step)
            elif isinstance(step, KillPoint) and killer is None and step.kill == "ingest":
                self.replies.append(await self.send(self._interrupted()))  # as the drill does
            elif isinstance(step, KillPoint) and killer is not None:
                self.segment_sent.set()
                if kills is not None:
                    await kills  # one kill at a time: the previous one has recovered
                self.segment_sent.clear()
                if step.kill == "ingest":
                    kills = await self.interrupted_transaction(killer)
                else:
                    kills = asyncio.create_task(killer(step.kill))
        self.segment_sent.set()
        if kills is not None:
            await kills

    def _ports(self) -> list[int]:
        return [
            self.deployment.port(s, "DISCOVERY_INGEST_LISTEN") for s in ("ingest-1", "ingest-2")
        ]

    async def send(self, mail: Mail, first: int | None = None, deadline_s: float = 180) -> str:
        """One message, to the ingest nodes in turn until one answers it: its final reply
        (``250``, or the code of a permanent refusal). An MTA's retry: a node that refuses the
        connection, drops it or answers 4xx is tried again later, the next one first. Inbound
        mail reuses one connection per node, as an MTA delivering a queue does."""
        ports = self._ports()
        turn = self.sent if first is None else first
        self.sent += 1
        deadline = time.monotonic() + deadline_s
        while True:
            port = ports[turn % len(ports)]
            turn += 1
            try:
                smtp = await self._session(port, mail.outbound)
                try:
                    await smtp.sendmail(mail.sender, [mail.rcpt], BODY)
                finally:
                    if mail.outbound:
                        await smtp.quit()
                return "250"
            except aiosmtplib.SMTPRecipientsRefused as refused:
                code = refused.recipients[0].code
                try:
                    await smtp.rset()
                except (aiosmtplib.SMTPException, OSError):
                    self._drop(port)
                if code >= 500:
                    return str(code)
            except aiosmtplib.SMTPResponseException as error:
                self._drop(port)
                if error.code >= 500:
                    return str(error.code)
            except (aiosmtplib.SMTPException, OSError):
                self._drop(port)
            assert time.monotonic() < deadline, f"no ingest node took {mail} in {deadline_s}s"
            await asyncio.sleep(0.1)  # an MTA's retry interval, shortened

    async def _session(self, port: int, outbound: bool) -> aiosmtplib.SMTP:
        if outbound:
            smtp = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=port, timeout=30, source_address=(OUTBOUND_IP, 0)
            )
            await smtp.connect()
            return smtp
        if port not in self.sessions:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
            await smtp.connect()
            self.sessions[port] = smtp
        return self.sessions[port]

    def _drop(self, port: int) -> None:
        smtp = self.sessions.pop(port, None)
        if smtp is not None:
            smtp.close()

    async def act(self, action: AdminAction) -> None:
        assert self.api is not None
        answer = await self.api.post(
            f"/v1/tenants/{action.tenant}/actions",
            json={"action": action.action, "addresses": list(action.addresses)},
        )
        assert answer.status_code == 202, answer.text
        for command in answer.json()["commands"]:
            url = f"/v1/tenants/{action.tenant}/commands/{command['command_id']}"
            deadline = time.monotonic() + 120
            while (await self.api.get(url)).json()["status"] == "pending":
                assert time.monotonic() < deadline, f"{action} not applied"
                await asyncio.sleep(0.1)

    async def barrier(self, barrier: Barrier) -> None:
        key = f"{barrier.tenant}:{barrier.address}"
        deadline = time.monotonic() + 180
        while True:
            found = self.states.get(key)
            if found is not None and found.record.status == barrier.status:
                return
            self.deployment.assert_running()
            assert time.monotonic() < deadline, (
                f"{key} never became {barrier.status} (it is {found and found.record.status})"
            )
            await asyncio.sleep(0.05)

    def _interrupted(self) -> Mail:
        """The message the ingest kill interrupts (the undisturbed run sends it too)."""
        return Mail(PARTNER, pool(self.steady)["acme"][0])

    async def interrupted_transaction(self, killer: Callable[[str], Any]) -> asyncio.Task[None]:
        """The ingest kill: a transaction open on ingest-1 (its RCPT answered), the node
        SIGKILLed before it answers DATA; the client sends the message again, to ingest-2."""
        mail = self._interrupted()
        port = self._ports()[0]
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await smtp.connect()
        await smtp.mail(mail.sender)
        await smtp.rcpt(mail.rcpt)
        self.ingest_killed.clear()
        recovered = asyncio.create_task(killer("ingest"))
        await self.ingest_killed.wait()
        try:
            await smtp.data(BODY)
            raise AssertionError("ingest-1 answered DATA after it was killed")
        except (aiosmtplib.SMTPException, OSError):
            pass
        self.replies.append(await self.send(mail, first=1))
        self.retried_s = time.monotonic() - self.killed_at
        return recovered

    # --- the end -------------------------------------------------------------------------------

    async def settled(self, timeout: float = 180) -> None:
        """Until the workers and the sink have processed everything on their topics."""
        deadline = time.monotonic() + timeout
        while not await self.processed(await self.ends()):
            self.deployment.assert_running()
            assert time.monotonic() < deadline, "the pipeline did not catch up"
            await asyncio.sleep(0.2)

    def _groups(self) -> dict[str, tuple[str, ...]]:
        return {
            self.config.streams_app_id: (MAIL, COMMANDS),
            self.config.sink_group: (MAIL, MAIL_SETTLED, STATE_CHANGES, ADDRESS_STATE),
        }

    async def ends(self) -> dict[str, dict[TopicPartition, int]]:
        """The end offsets of each group's input partitions, now."""
        consumer = AIOKafkaConsumer(**self.super, enable_auto_commit=False)
        await consumer.start()
        try:
            out = {}
            for group, topics in self._groups().items():
                partitions = [
                    TopicPartition(self.config.topics(t), p)
                    for t in topics
                    for p in range(spec_of(t).partition_count(self.config.topic_partitions))
                ]
                out[group] = await consumer.end_offsets(partitions)
            return out
        finally:
            await consumer.stop()

    async def processed(self, ends: dict[str, dict[TopicPartition, int]]) -> bool:
        """Whether each group has committed past ``ends`` on every partition."""
        admin = AIOKafkaAdminClient(**self.super, request_timeout_ms=5000)
        try:
            await admin.start()
            for group, targets in ends.items():
                committed = await admin.list_consumer_group_offsets(group)
                for tp, end in targets.items():
                    at = committed.get(tp)
                    if (at.offset if at is not None and at.offset >= 0 else 0) < end:
                        return False
            return True
        except (KafkaError, OSError, TimeoutError):
            return False  # a coordinator moving (a broker down): not yet
        finally:
            await admin.close()

    async def outcome(self) -> Outcome:
        """Stop the roles (as ``docker compose stop``) and read what the run left."""
        assert self.follower is not None
        await self.follower.stop()
        states = {
            key: (
                s.record.status,
                s.record.status_reason,
                s.record.role,
                s.record.primary,
                tuple(sorted(s.record.aliases)),
                s.record.discovered_reason,
            )
            for key, s in self.states.items()
            if s is not None
        }
        transitions, on_topic = await self._transitions()
        if self.api is not None:
            await self.api.aclose()
        d = self.deployment
        for service in ("ingest-1", "ingest-2", "sink", "worker-1", "worker-2"):
            if service in d.processes:
                await asyncio.to_thread(d.stop, service)
        clickhouse = await asyncio.to_thread(d.dump_clickhouse)
        delivered = {
            box: len(self.postfix.delivered(box))
            for boxes in mailboxes(self.steady, self.partitions).values()
            for box in boxes
        }
        return Outcome(
            self.replies, states, transitions, on_topic, delivered, clickhouse, self.recoveries
        )

    async def _transitions(self) -> tuple[Counter[tuple[str, ...]], int]:
        """Each transition once (a worker killed between its send and its commit sends it again,
        with the same id), and how many records the topic holds."""
        topic = self.config.topics(STATE_CHANGES)
        consumer = AIOKafkaConsumer(**self.super, enable_auto_commit=False)
        await consumer.start()
        try:
            count = spec_of(STATE_CHANGES).partition_count(self.config.topic_partitions)
            parts = [TopicPartition(topic, p) for p in range(count)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            seen: dict[str, tuple[str, ...]] = {}
            records = 0
            for tp in parts:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        records += 1
                        change = decode(STATE_CHANGES, record.value)
                        seen[change.event_id] = (
                            change.tenant_id,
                            str(change.address),
                            str(change.from_status),
                            str(change.to_status),
                            str(change.reason),
                        )
            return Counter(seen.values()), records
        finally:
            await consumer.stop()

    def close(self) -> None:
        for port in list(self.sessions):
            self._drop(port)
        self.deployment.stop_all()
        self.postfix.stop()


# --- the kills -------------------------------------------------------------------------------


class Killer:
    """Fires one kill and measures the recovery from it (:class:`Recovery`)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    async def __call__(self, kill: str) -> None:
        """The kill, then until the workers and the sink have processed all the mail sent up to
        the next kill point (what was sent while the part was down included) and the part
        serves again: the seconds from the SIGKILL."""
        run, d = self.run, self.run.deployment
        began = time.monotonic()
        detail: dict[str, float] = {}
        if kill == "broker":
            # Node 2: the brokers elect new leaders for its partitions; compose restarts it.
            await asyncio.to_thread(run.kafka.kill_node, 2)
            await asyncio.to_thread(run.kafka.start_node, 2, 120)
            # start_node returns once three brokers are registered, and the killed one may still
            # be, until its session expires: wait for its listener itself.
            port = run.kafka.ports[2].broker
            deadline = time.monotonic() + 120
            while port_is_free(port):
                assert time.monotonic() < deadline, "the restarted broker never listened"
                await asyncio.sleep(0.1)
            detail["broker_back_s"] = time.monotonic() - began
            await self._until_replicated()
            detail["in_sync_s"] = time.monotonic() - began
        elif kill == "worker":
            # worker-2 dies; worker-1 takes its partitions over (from its standby tables) once
            # the group's session timeout has passed. Restarted after, as an operator would.
            await asyncio.to_thread(d.kill, "worker-2")
            await self._until_alone()
            detail["dropped_s"] = time.monotonic() - began
            await run.segment_sent.wait()
            await self._until_processed(await run.ends())
            detail["taken_over_s"] = time.monotonic() - began
        elif kill == "sink":
            # The chDB process (sink and admin API); compose restarts it.
            await asyncio.to_thread(d.kill, "sink")
            d.start_chdb_roles()
            await asyncio.to_thread(d.wait_ready, "sink")
            detail["restarted_s"] = time.monotonic() - began
        elif kill == "ingest":
            run.killed_at = began
            await asyncio.to_thread(d.kill, "ingest-1")
            run.ingest_killed.set()
            d.start("ingest-1")  # compose restarts it; its spool re-sends what Kafka lacked
            await asyncio.to_thread(d.wait_ready, "ingest-1")
            detail["restarted_s"] = time.monotonic() - began
        await run.segment_sent.wait()
        await self._until_processed(await run.ends())
        seconds = time.monotonic() - began
        if kill == "ingest":
            detail["retried_s"] = run.retried_s
        if kill == "worker":
            d.start("worker-2")
            await asyncio.to_thread(d.wait_ready, "worker-2")
            detail["rejoined_s"] = time.monotonic() - began
        run.recoveries.append(Recovery(kill, seconds, detail))

    async def _until_processed(self, ends: dict[str, dict[TopicPartition, int]]) -> None:
        deadline = time.monotonic() + 300
        while not await self.run.processed(ends):
            assert time.monotonic() < deadline, "the kill was never recovered from"
            await asyncio.sleep(0.1)

    async def _until_alone(self) -> None:
        """Until the workers' group has dropped the killed worker (its session timed out) and
        the survivor holds every partition: whatever mail follows, the takeover is done."""
        group = self.run.config.streams_app_id
        deadline = time.monotonic() + 300
        while True:
            admin = AIOKafkaAdminClient(**self.run.super, request_timeout_ms=5000)
            try:
                await admin.start()
                if await members(admin, group) == 1:
                    return
            except (KafkaError, OSError, TimeoutError):
                pass
            finally:
                await admin.close()
            assert time.monotonic() < deadline, "the killed worker never left the group"
            await asyncio.sleep(0.1)

    async def _until_replicated(self) -> None:
        """Until every partition of the project's topics has its three replicas in sync."""
        names = [s.name for s in self.run.config.topics.specs()]
        deadline = time.monotonic() + 300
        while True:
            admin = AIOKafkaAdminClient(**self.run.super, request_timeout_ms=5000)
            try:
                await admin.start()
                described = await admin.describe_topics(names)
                if all(len(p["isr"]) == 3 for t in described for p in t["partitions"]):
                    return
            except (KafkaError, OSError, TimeoutError):
                pass
            finally:
                await admin.close()
            assert time.monotonic() < deadline, "the restarted broker never caught up"
            await asyncio.sleep(0.2)


# --- the cluster, and both runs ----------------------------------------------------------------


def grant_projects(
    kafka: LocalKafka,
    passwords: dict[str, str],
    directory: Path,
    names: list[str],
    overrides: dict[str, str],
) -> None:
    """compose's ``kafka-users`` for the projects ``names`` at once (see ``grant``)."""
    grant(
        kafka,
        [
            Deployment(
                kafka, passwords, directory / name, name, directory / "clock", dict(overrides)
            )
            for name in names
        ],
    )


def start_cluster(directory: Path) -> tuple[LocalKafka, dict[str, str]]:
    """compose's three Kafka nodes (KRaft, replication 3, min ISR 2, SASL, ACLs) and the
    passwords compose reads (fresh ones: at least 16 characters, as kafka-users.sh demands)."""
    passwords = {variable: secrets.token_hex(24) for variable in PASSWORD_VARIABLES}
    login, users = cluster_logins(passwords)
    config = RuntimeConfig.from_env()
    kafka = LocalKafka(
        directory,
        nodes=3,
        kafka_version=config.kafka_version,
        cache_dir=config.kafka_cache_dir,
        heap="384m",
        login=login,
        users=users,
        authorize=True,
    )
    kafka.start(timeout=240)
    return kafka, passwords


async def one_run(
    kafka: LocalKafka,
    passwords: dict[str, str],
    directory: Path,
    name: str,
    *,
    steady: int,
    rounds: int,
    overrides: dict[str, str],
    worker_overrides: dict[str, str],
    drill: bool,
) -> Outcome:
    began = time.monotonic()
    run = Run(
        kafka,
        passwords,
        directory / name,
        name,
        steady=steady,
        overrides=overrides,
        worker_overrides=worker_overrides,
        drill=drill,
    )
    try:
        await run.up()
        up = time.monotonic()
        await run.play(scenario(steady, rounds, run.partitions), Killer(run) if drill else None)
        played = time.monotonic()
        await run.settled()
        outcome = await run.outcome()
        outcome.seconds = time.monotonic() - began
        print(f"{name}: up at {run.up_phases}")
        outcome.phases = {
            "up": up - began,
            "traffic": played - up,
            "settle_and_read": time.monotonic() - played,
        }
        return outcome
    except BaseException:
        for service in ("worker-1", "worker-2", "ingest-1", "ingest-2", "sink"):
            print(f"--- {name} {service}\n{run.deployment.report(service)}")
        raise
    finally:
        run.close()


def clean(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


# --- the comparison --------------------------------------------------------------------------

COUNTED = ("recipient_delivered", "outbound_sent")
"""Mail events that are one per message: counted exactly. A verification's events (callouts)
are one per cache miss of the node that took the RCPT, and a killed node's cache is gone, so
for them only which addresses had which outcome is compared."""


def differences(calm: Outcome, drilled: Outcome) -> list[str]:
    """Everything in which the drilled run differs from the undisturbed one, or holds a double."""
    found: list[str] = []

    def same(what: str, a: object, b: object) -> None:
        if a != b:
            found.append(f"{what}:\n  undisturbed {a}\n  drilled     {b}")

    same("SMTP replies, step by step", calm.replies, drilled.replies)
    same("address states (the compacted topic)", calm.states, drilled.states)
    same(
        "transitions (state-changes topic, each event id once)",
        calm.transitions,
        drilled.transitions,
    )
    same("messages in the tenants' mailboxes (Postfix)", calm.delivered, drilled.delivered)
    for run, outcome in (("undisturbed", calm), ("drilled", drilled)):
        rows = outcome.clickhouse
        for table in ("state_changes", "mail_events"):
            ids = Counter(row[0] for row in rows[table])
            doubled = [i for i, n in ids.items() if n > 1]
            if doubled:
                found.append(f"{run}: {len(doubled)} event ids twice in {table}: {doubled[:5]}")
        stored = Counter(tuple(str(v) for v in row[1:6]) for row in rows["state_changes"])
        if sum(stored.values()) != sum(outcome.transitions.values()):
            found.append(
                f"{run}: {sum(stored.values())} state_changes rows for "
                f"{sum(outcome.transitions.values())} transitions on the topic"
            )
    c, d = calm.clickhouse, drilled.clickhouse
    same("state_changes rows", _changes(c), _changes(d))
    same("mail_events rows, one per message", _counted(c), _counted(d))
    same("mail_events rows, verifications (which outcome per address)", _verified(c), _verified(d))
    same(
        "tenant_daily (messages, clean, outbound, new pending/discovered/users/aliases/invalid)",
        _daily(c),
        _daily(d),
    )
    same(
        "address_state rows",
        sorted(map(tuple, c["address_state"])),
        sorted(map(tuple, d["address_state"])),
    )
    return found


def _changes(rows: dict[str, list[list[Any]]]) -> Counter[tuple[str, ...]]:
    return Counter(tuple(str(v) for v in row[1:6]) for row in rows["state_changes"])


def _counted(rows: dict[str, list[list[Any]]]) -> Counter[tuple[str, ...]]:
    return Counter((r[1], r[2], r[3]) for r in rows["mail_events"] if r[3] in COUNTED)


def _verified(rows: dict[str, list[list[Any]]]) -> set[tuple[str, ...]]:
    """A catch-all check probes a random address (``sd-probe-<random>@domain``): its domain is
    what is compared."""
    return {
        (r[1], re.sub(r"^sd-probe-[0-9a-f]+@", "sd-probe@", r[2]), r[3], str(r[4]))
        for r in rows["mail_events"]
        if r[3] not in COUNTED
    }


def _daily(rows: dict[str, list[list[Any]]]) -> dict[str, tuple[int, ...]]:
    return {row[0]: tuple(int(v) for v in row[1:]) for row in rows["tenant_daily"]}
