"""The embedded mode: the whole system on one machine, state kept under one directory.

chDB allows one process per data path, so the roles that use ClickHouse (the sink, the admin
API, the report jobs) share this process. Kafka runs as a local broker the process starts and
stops; the streams worker runs as a child process (Faust wants an event loop of its own), and so
does the SMTP ingest node: mail first. Sharing this process's event loop, an RCPT waited behind
whatever the others were doing (a sink decoding ten thousand events, a page of tenants): its
p99 went from 6 ms idle to 437 ms while the admin API listed tenants and the sink inserted
(``bench.rcpt_under_load``). In a process of its own it waits for nothing of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtp_discovery.admin.run import serve_admin
from smtp_discovery.admin.tokens import load_key, new_token, parse_bearer, token_record
from smtp_discovery.jobs.cli import mailer, schedule
from smtp_discovery.jobs.runner import Jobs
from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.clickhouse import connect, redact_url
from smtp_discovery.platform.config import KAFKA_FIELDS, RuntimeConfig, split_host_port
from smtp_discovery.platform.errors import OperatorError
from smtp_discovery.platform.interpreter import tune
from smtp_discovery.platform.kafka import client_options, ensure_topics, idempotent_producer
from smtp_discovery.platform.kafka_login import MECHANISM
from smtp_discovery.platform.logs import role_log
from smtp_discovery.platform.running import LOCK, embedded_kafka_dir, embedded_login, on_embedded
from smtp_discovery.platform.stopping import Children, Stopper, die_with_parent, role_process
from smtp_discovery.platform.views import CompactedTopicFollower
from smtp_discovery.schemas.codec import MessageDecodeError, decode, encode
from smtp_discovery.schemas.topics import ADMIN_TOKENS
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.run import sink_settings
from smtp_discovery.sinks.sink import Sink
from smtp_discovery.supervise import Supervised

log = logging.getLogger("smtp_discovery.embedded")

WORKER_NICENESS = 10
"""How much lower than the ingest node's the streams worker's scheduling priority is: on a busy
machine, mail first. (`up` itself keeps its priority: a child it starts again inherits it, and
the ingest node must not come back at a lower one.)"""

INGEST_READY_S = 600.0
"""How long the ingest node may take to read its views (millions of addresses) and listen."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One embedded system per data directory: a second one would corrupt chDB and Kafka data."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OperatorError(
                f"another smtp-discovery is already running on {data_dir}; stop it or set "
                "DISCOVERY_DATA_DIR to another directory"
            ) from None
        yield


@dataclass
class _Progress:
    """Where `up` is: a signal while ``starting`` abandons the start at once; later ones let
    the ordered stop run."""

    phase: str = "starting"


async def run_up(config: RuntimeConfig, *, verbose: int = 0) -> None:
    """Start Kafka (unless external), ensure topics, open ClickHouse, run until stopped.

    The first SIGINT or SIGTERM stops everything in order within ``DISCOVERY_STOP_TIMEOUT_S``
    (SMTP first, then the sink, the admin API and jobs, the streams worker, Kafka last); past
    the deadline, or at a second signal, what is left is killed and `up` exits non-zero. The
    children run in sessions of their own, so a terminal's Ctrl-C reaches `up` alone, and a
    parent-death signal ends them if `up` is killed outright.

    Each process logs to a file of its own under ``<data dir>/logs`` (this one's: set up by the
    CLI); the terminal shows the summary, warnings and errors. ``verbose``: the ``-v`` count,
    passed on to the children.
    """
    tune()  # the sink, the admin API and the jobs run here (platform.interpreter)
    children = Children()
    progress = _Progress()
    running: asyncio.Task[None] | None = None

    def first_signal() -> None:
        print("stopping …", flush=True)
        if progress.phase == "starting" and running is not None:
            running.cancel()

    async with role_process(
        "smtp-discovery up", config.stop_timeout_s, children=children, on_first_signal=first_signal
    ) as stopper:
        running = asyncio.create_task(_run(config, stopper, children, progress, verbose), name="up")
        try:
            await running
        except asyncio.CancelledError:
            if not stopper.signals:
                raise
    print("stopped", flush=True)


async def _run(
    config: RuntimeConfig, stopper: Stopper, children: Children, progress: _Progress, verbose: int
) -> None:
    with data_dir_lock(config.data_dir):
        kafka: LocalKafka | None = None
        try:
            if config.embedded_kafka:
                login = embedded_login(config.data_dir, create=True)
                kafka = LocalKafka(
                    embedded_kafka_dir(config.data_dir),
                    kafka_version=config.kafka_version,
                    cache_dir=config.kafka_cache_dir,
                    heap=config.kafka_heap,
                    login=login,
                )
                print(
                    f"starting Apache Kafka {config.kafka_version} under {kafka.directory} …",
                    flush=True,
                )
                bootstrap = await kafka.start_async(children=children)
                print(
                    f"kafka       {bootstrap} (embedded, SASL/{MECHANISM} with the login in "
                    f"{kafka.directory / 'login.json'}; started in {kafka.startup_seconds:.1f}s)"
                )
                # Every role from here on, in this process and in its children, logs in.
                config = on_embedded(config, bootstrap, login)
            else:
                print(f"kafka       {config.kafka_bootstrap} (external)")
            outcomes = await ensure_topics(
                client_options(config),
                partitions=config.topic_partitions,
                replication=config.topic_replication or (1 if kafka else None),
                specs=config.topics.specs(),
            )
            for outcome in outcomes:
                print(f"topic       {outcome.name}: {outcome.action} {outcome.detail}".rstrip())
            clickhouse = await asyncio.to_thread(connect, config.effective_clickhouse_url)
            version = clickhouse.query("SELECT version()").result_rows[0][0]
            print(
                f"clickhouse  {redact_url(config.effective_clickhouse_url)} (ClickHouse {version})"
            )
            applied = await asyncio.to_thread(migrate, clickhouse, config.analytics_layout)
            state = (
                f"migrations {', '.join(map(str, applied))} applied" if applied else "up to date"
            )
            print(f"schema      {config.analytics_layout.database}: {state}")
            await _serve(config, clickhouse, stopper, children, progress, verbose)
        finally:
            progress.phase = "stopping"
            stopper.begin()
            if kafka is not None:
                await asyncio.to_thread(kafka.stop)  # last: every other part needs it to stop


async def _serve(
    config: RuntimeConfig,
    clickhouse: Any,
    stopper: Stopper,
    children: Children,
    progress: _Progress,
    verbose: int,
) -> None:
    """The streams worker, the ingest node, the sink and the report jobs, until stopped.

    The sink and the jobs share this process's ClickHouse client (chDB: one process per path).
    """
    options = client_options(config)
    worker_log = role_log(config.data_dir, "worker")
    ingest_log = role_log(config.data_dir, "ingest")
    smtp = _listen_address(config.ingest_listen)
    # The children's own deadlines leave `up` time to stop the rest and Kafka after them. The
    # ingest node keeps this system's ops endpoint (DISCOVERY_OPS_LISTEN) and its terminal; the
    # streams worker serves its own on a loopback port, the same across its restarts, for
    # `smtp-discovery status` (endpoints.json lists both).
    ops = {"ingest": config.ops_listen} if config.ops_listen else {}
    ops["worker"] = _listen_address("127.0.0.1:0")
    ingest = Supervised(
        "the ingest node",
        lambda: _start_child(
            "ingest",
            config,
            config.stop_timeout_s / 2,
            verbose=verbose,
            DISCOVERY_INGEST_LISTEN=smtp,
            DISCOVERY_OPS_LISTEN=ops.get("ingest", "off"),
        ),
        children,
        where=f"see {ingest_log} (its errors are above)",
    )
    worker = Supervised(
        "the streams worker",
        lambda: _start_child(
            "worker",
            config,
            config.stop_timeout_s / 2,
            verbose=verbose,
            niceness=WORKER_NICENESS,
            DISCOVERY_OPS_LISTEN=ops["worker"],
        ),
        children,
        where=f"see {worker_log} (its errors are above)",
    )
    halt = asyncio.Event()  # stops the in-process roles
    roles: list[asyncio.Task[None]] = []
    watchers: list[asyncio.Task[None]] = []
    try:
        await _smtp_ready(smtp, ingest.process, INGEST_READY_S, ingest_log)
        sink = Sink(options, clickhouse, config.analytics_layout, config.topics,
                    sink_settings(config))  # fmt: skip
        roles.append(asyncio.create_task(sink.run(halt), name="sink"))
        token_file, token = await _operator_token(config, options)
        admin_ready = asyncio.Event()
        roles.append(
            asyncio.create_task(
                serve_admin(config, options, clickhouse, halt, admin_ready), name="admin"
            )
        )
        await asyncio.wait(
            {asyncio.create_task(admin_ready.wait()), roles[-1]},
            return_when=asyncio.FIRST_COMPLETED,
        )
        print(f"worker      pid {worker.process.pid} (streams, {config.streams_app_id}; "
              f"log {worker_log})")  # fmt: skip
        print(f"smtp        {smtp} (ingest node {config.ingest_node_id}, "
              f"pid {ingest.process.pid}; log {ingest_log})")  # fmt: skip
        if config.ops_listen:
            print(f"metrics     http://{config.ops_listen}/metrics")
        print(f"sink        {config.sink_group} -> {config.analytics_layout.database}")
        docs = "/docs" if config.admin_docs else "/openapi.json"
        print(f"admin       http://{config.admin_listen}{docs} (operator token in {token_file})")
        print(f"console     http://{config.admin_listen}/console")
        if token == "made":
            # Where the secret is, never the secret: a terminal's output is often collected.
            print(f"token       an operator token was made; show it with: cat {token_file}")
        elif token == "stale":
            print(f"token       the operator token in {token_file} was revoked or rotated; "
                  "remove the file and start again for a new one, or use "
                  "`smtp-discovery token create --operator`")  # fmt: skip
        if config.report_smarthost:
            jobs = Jobs(clickhouse, config.analytics_layout, schedule(config), mailer(config))
            roles.append(asyncio.create_task(jobs.run(halt), name="jobs"))
            print(f"reports     Thursdays {config.report_time} {config.report_timezone} "
                  f"via {config.report_smarthost}")  # fmt: skip
        else:
            print("reports     off (set DISCOVERY_REPORT_SMARTHOST to send them)")
        (config.data_dir / "endpoints.json").write_text(
            json.dumps(
                {"kafka": config.kafka_bootstrap, "topic_prefix": config.topic_prefix,
                 "smtp": smtp, "admin": config.admin_listen, "ops": ops,
                 "jobs": bool(config.report_smarthost),
                 "clickhouse": redact_url(config.effective_clickhouse_url)}
            )
        )  # fmt: skip
        print(f"logs        {worker_log.parent} (up.log, ingest.log, worker.log; here: "
              "warnings and errors, more with -v)")  # fmt: skip
        print(f"ready; press Ctrl-C to stop (it takes up to {config.stop_timeout_s:g} s)",
              flush=True)  # fmt: skip
        progress.phase = "serving"
        waiter = asyncio.create_task(stopper.event.wait())
        # A child that dies is started again; one that keeps failing fast ends `up` (OperatorError).
        watchers = [asyncio.create_task(child.watch()) for child in (ingest, worker)]
        done, _ = await asyncio.wait({waiter, *watchers, *roles},
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        waiter.cancel()
        for task in (*watchers, *roles):
            if task in done:
                task.result()  # a part that ended on its own failed: surface why
    finally:
        # The order of a stop: no new mail (in-flight transactions finish and the spool
        # flushes), then the sink flushes and commits, the API and jobs end, then the worker.
        progress.phase = "stopping"
        stopper.begin()
        for watcher in watchers:  # nothing is started again from here on
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await asyncio.to_thread(_stop_child, ingest.name, ingest.process, config.stop_timeout_s)
        halt.set()
        if roles:
            await asyncio.gather(*roles, return_exceptions=True)
        await asyncio.to_thread(_stop_child, worker.name, worker.process, config.stop_timeout_s)


async def _operator_token(config: RuntimeConfig, options: dict[str, Any]) -> tuple[Path, str]:
    """The embedded system's first operator token, made once and kept (mode 0600) in the data
    directory: only its hash goes to Kafka, so the file is the only copy of the secret. Where
    it is, and what became of it: ``made``, ``kept``, ``signed`` (a record from before records
    were signed, published again with a code) or ``stale`` (revoked or rotated since: it is
    never brought back)."""
    key = load_key(config.token_key_path, create=True)
    path = config.data_dir / "operator-token"
    topic = config.topics(ADMIN_TOKENS)
    if not path.exists():
        bearer, record = new_token(None, OPERATOR_LABEL, key=key)
        state = "made"
    else:
        parts = parse_bearer(path.read_text().strip())
        if parts is None:
            raise OperatorError(f"{path} holds no token: remove it, and `up` makes a new one")
        token_id, secret = parts
        latest: list[bytes | None] = [None]

        def keep(k: bytes | None, value: bytes | None) -> None:
            if k == token_id.encode():
                latest[0] = value

        follower = CompactedTopicFollower(options, topic, keep)
        await follower.start()
        try:
            await follower.ready.wait()
        finally:
            await follower.stop()
        record = token_record(token_id, None, secret, OPERATOR_LABEL, key)
        try:
            found = decode(ADMIN_TOKENS, latest[0]) if latest[0] is not None else None
        except MessageDecodeError:
            found = None
        if found is None or getattr(found, "secret_sha256", None) != record.secret_sha256:
            return path, "stale"
        if found.mac:
            return path, "kept"
        bearer, state = "", "signed"
    producer = idempotent_producer(options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, encode(record), key=record.kafka_key())
    finally:
        await producer.stop()
    if state == "made":
        path.touch(mode=0o600)
        path.write_text(bearer + "\n")
    return path, state


OPERATOR_LABEL = "embedded operator"


def _start_child(
    role: str, config: RuntimeConfig, stop_timeout_s: float, *, verbose: int = 0,
    niceness: int = 0, **env: str,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """``smtp-discovery ROLE`` as a child, on this system's Kafka (``config``'s, with its
    login). It logs as `up` does: to a file of its own, ``<data dir>/logs/ROLE.log`` (where its
    stdout goes too: Faust's banner and the like), and its warnings and errors (more with
    ``verbose``, the ``-v`` count) to this terminal. Started from the loop's (main) thread, so
    that its parent-death signal fires only when `up` itself dies. ``env``: the child's own
    variables (one ops endpoint per port: only one child keeps DISCOVERY_OPS_LISTEN);
    ``niceness``: how much lower its scheduling priority is than `up`'s."""
    die = die_with_parent()

    def prepare() -> None:
        die()
        if niceness:
            os.nice(niceness)

    environment = {
        **os.environ,
        **config.as_environment(*KAFKA_FIELDS),
        "DISCOVERY_OPS_LISTEN": "off",
        "DISCOVERY_STOP_TIMEOUT_S": f"{max(1.0, stop_timeout_s):g}",
        **env,
    }
    log_file = role_log(config.data_dir, role)
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    options = [*([f"-{'v' * verbose}"] if verbose else []), "--log-file", str(log_file)]
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "smtp_discovery.cli", role, *options],
            env=environment,
            stdout=out,
            stderr=None,  # this terminal: the child's own handler decides what reaches it
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to `up` alone; it stops the children in order
            preexec_fn=prepare,
        )


def _listen_address(listen: str) -> str:
    """Where the ingest node will listen: port 0 becomes a free port now, so that `up` knows
    where to find the node it starts (and can say where it is)."""
    host, port = split_host_port(listen)
    return f"{host}:{port or free_port(host)}"


async def _smtp_ready(
    address: str, ingest: subprocess.Popen[bytes], timeout_s: float, log: Path
) -> None:
    """Until the ingest node greets on ``address`` (its views are complete once it listens)."""
    host, port = split_host_port(address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if ingest.poll() is not None:
            raise OperatorError(
                f"the ingest node exited with status {ingest.returncode}; see {log} (its "
                "errors are above)"
            )
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                greeting = await asyncio.wait_for(reader.readline(), 10)
            finally:
                writer.close()
            if greeting.startswith(b"220"):
                return
        await asyncio.sleep(0.1)
    raise OperatorError(f"the ingest node did not answer on {address} in {timeout_s:g} s")


def _stop_child(name: str, child: subprocess.Popen[bytes], timeout_s: float) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %g s; killing it", name, timeout_s)
        child.kill()
        child.wait()
