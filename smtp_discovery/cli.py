"""The ``smtp-discovery`` command: one entry point, one sub-command per role or chore."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smtp_discovery import __version__
from smtp_discovery.platform.access import ROLES, acl_commands
from smtp_discovery.platform.config import SECTIONS, RuntimeConfig
from smtp_discovery.platform.errors import ConfigError, OperatorError
from smtp_discovery.platform.kafka import client_options, ensure_topics
from smtp_discovery.platform.logs import QUIET, TerminalLevels, role_log, terminal_levels
from smtp_discovery.platform.logs import configure as configure_logs

ROLES_ALONE = frozenset({"ingest", "policy", "worker", "sink", "admin", "jobs"})
"""The roles an orchestrator runs: they log to stderr at DISCOVERY_LOG_LEVEL (containers log to
stderr). Every other command (`up`, and the short ones an operator types) is quiet by default."""


class _Command(argparse.ArgumentParser):
    """A sub-command's parser: ``-v`` is taken after the command too (``tenant list -v``), and
    so is ``--log-file`` (`up` starts ``smtp-discovery worker --log-file …``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="more log lines on stderr: our INFO lines; -vv: DEBUG, the libraries' too",
        )
        self.add_argument(
            "--log-file", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-discovery",
        description="Multi-tenant SMTP Discovery. Configuration comes from environment variables "
        "(see `smtp-discovery config`).",
    )
    parser.add_argument("--version", action="version", version=f"smtp-discovery {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log lines on stderr: -v our INFO lines (and the libraries' warnings), -vv "
        "everything at DEBUG, the libraries' too. Without it `up` and the short commands "
        "(tenant, token, demo, topics, ...) show only warnings and errors (WARNING, and ERROR "
        "for the libraries) unless DISCOVERY_LOG_LEVEL is set in the environment; `up` writes "
        "the rest to DATA_DIR/logs/. A role run on its own (ingest, policy, worker, sink, admin, "
        "jobs) logs at DISCOVERY_LOG_LEVEL (default INFO) to stderr.",
    )
    parser.add_argument("--log-file", type=Path, help=argparse.SUPPRESS)  # `up`'s children
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Command
    )

    sub.add_parser("up", help="run the whole system on this machine (embedded Kafka and chDB)")
    demo = sub.add_parser("demo", help="against a running `up`: a demo tenant and a minute of mail")
    demo.add_argument(
        "--weeks",
        type=int,
        default=0,
        help="first play this many weeks of compressed history (4 or more shows an expiry)",
    )
    sub.add_parser("worker", help="run a streams worker (the only writer of address state)")
    sub.add_parser("ingest", help="run an SMTP ingest node (needs KAFKA_BOOTSTRAP)")
    sub.add_parser(
        "policy",
        help="run the Postfix policy service and lookup tables (needs KAFKA_BOOTSTRAP)",
    )
    sub.add_parser("sink", help="run a ClickHouse sink (needs KAFKA_BOOTSTRAP)")
    sub.add_parser("migrate", help="create or upgrade the ClickHouse schema (idempotent)")
    sub.add_parser("jobs", help="send the weekly reports on their Thursday schedule")
    report = sub.add_parser("report", help="preview or send one weekly report")
    report.add_argument("kind", choices=["new-users", "new-aliases", "warning"])
    report.add_argument("--tenant", required=True, help="tenant id")
    report.add_argument("--week", help="ISO week reported on, e.g. 2026-W47 (default: last week)")
    report.add_argument("--format", choices=["text", "html", "csv", "json"], default="text")
    report.add_argument("--send", action="store_true", help="send it (once) instead of printing")

    cache = sub.add_parser("cache", help="the ingest nodes' verification caches")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    clear = cache_sub.add_parser(
        "clear", help="make every ingest node forget a tenant's cached callouts"
    )
    clear.add_argument("tenant", help="tenant id")

    topics = sub.add_parser("topics", help="the Kafka topics of the registry")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    ensure = topics_sub.add_parser("ensure", help="create missing topics (idempotent)")
    ensure.add_argument("--bootstrap", help="host:port list (default: KAFKA_BOOTSTRAP)")
    ensure.add_argument("--partitions", type=int, help="override DISCOVERY_TOPIC_PARTITIONS")
    ensure.add_argument("--replication", type=int, help="override DISCOVERY_TOPIC_REPLICATION")
    topics_sub.add_parser("list", help="print the topic registry")
    acls = topics_sub.add_parser(
        "acls", help="print the kafka-acls.sh commands that grant each role its least ACLs"
    )
    acls.add_argument(
        "--principal",
        action="append",
        default=[],
        metavar="ROLE=User:NAME",
        help="a role's principal (default User:smtp-discovery-ROLE); repeat per role",
    )

    kafka = sub.add_parser("kafka", help="the embedded Apache Kafka broker")
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    kafka_sub.add_parser("fetch", help="resolve the broker jars from Maven Central into the cache")

    from smtp_discovery.admin.cli import add_parsers

    add_parsers(sub)
    status = sub.add_parser(
        "status",
        help="every role ready or not, Kafka, ClickHouse, lag, spool and counts; exit 0 when "
        "all is ready, else 1 (a running `up`, or the cluster KAFKA_BOOTSTRAP names)",
    )
    status.add_argument(
        "--ops",
        action="append",
        default=[],
        metavar="ROLE=URL",
        help="a role's ops endpoint (host:port or URL; several: a comma list or the flag again), "
        "roles ingest, worker, sink, admin, jobs; in a cluster a role not named is not checked",
    )
    status.add_argument("--json", action="store_true", help="the same facts as JSON")
    sub.add_parser("config", help="print the effective configuration (secrets masked)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = RuntimeConfig.from_env()
        _configure_logs(args, config)
        return _dispatch(args, config)
    except OperatorError as exc:
        print(f"smtp-discovery: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _configure_logs(args: argparse.Namespace, config: RuntimeConfig) -> None:
    """A role run on its own logs to stderr at DISCOVERY_LOG_LEVEL, as under an orchestrator;
    every other command is quiet (``QUIET``) unless DISCOVERY_LOG_LEVEL is set in the
    environment or ``-v`` is given. `up` and its children (``--log-file``) also log at
    DISCOVERY_LOG_LEVEL to a file of their own under the data directory."""
    alone = args.command in ROLES_ALONE and args.log_file is None
    base = TerminalLevels.every(config.log_level) if alone else QUIET
    asked = config.log_level if os.environ.get("DISCOVERY_LOG_LEVEL") else None
    file = args.log_file or (role_log(config.data_dir, "up") if args.command == "up" else None)
    terminal = terminal_levels(base, args.verbose, asked)
    configure_logs(config.log_level, config.log_format, terminal=terminal, file=file)


def _dispatch(args: argparse.Namespace, config: RuntimeConfig) -> int:
    # Each role is imported only when its command runs: `--help` and the small commands stay fast,
    # and a role's heavy libraries (Faust, chDB, uvicorn) load only in the process that runs it.
    if args.command == "up":
        from smtp_discovery.embedded import run_up

        asyncio.run(run_up(config, verbose=args.verbose))
        return 0
    if args.command == "demo":
        from smtp_discovery.demo import run_demo

        return asyncio.run(run_demo(config, weeks=max(0, args.weeks)))
    if args.command == "worker":
        from smtp_discovery.streams.worker import run_worker

        run_worker(config)
        return 0
    if args.command == "ingest":
        from smtp_discovery.ingest.run import run_ingest

        asyncio.run(run_ingest(config))
        return 0
    if args.command == "policy":
        from smtp_discovery.ingest.run import run_policy

        asyncio.run(run_policy(config))
        return 0
    if args.command == "sink":
        from smtp_discovery.sinks.run import run_sink

        asyncio.run(run_sink(config))
        return 0
    if args.command == "migrate":
        from smtp_discovery.sinks.run import run_migrate

        applied = run_migrate(config)
        layout = config.analytics_layout
        done = ", ".join(map(str, applied)) if applied else "none (up to date)"
        print(f"{layout.database}: migrations applied: {done}")
        return 0
    if args.command in ("jobs", "report"):
        from smtp_discovery.jobs.cli import jobs_command, report_command

        if args.command == "jobs":
            asyncio.run(jobs_command(config))
            return 0
        return report_command(config, args)
    if args.command == "admin":
        from smtp_discovery.admin.run import run_admin

        asyncio.run(run_admin(config))
        return 0
    if args.command in ("token", "tenant", "users", "erase", "cache"):
        from smtp_discovery.admin.cli import run

        return asyncio.run(run(config, args))
    if args.command == "status":
        from smtp_discovery.status import status_command

        return status_command(config, args.ops, args.json)
    if args.command == "topics":
        return _topics(args, config)
    if args.command == "kafka":
        from smtp_discovery.localkafka import resolve_kafka_classpath

        jars = resolve_kafka_classpath(config.kafka_version, config.kafka_cache_dir)
        print(f"Apache Kafka {config.kafka_version}: {len(jars)} jars in {jars[0].parent}")
        return 0
    if args.command == "config":
        values = config.redacted()
        for number, section in enumerate(SECTIONS):
            if number:
                print()
            print(f"# {section.section_title}")
            for var in section.variables():
                print(f"{var.env}={values[var.env]}")
        return 0
    raise AssertionError(args.command)


def _topics(args: argparse.Namespace, config: RuntimeConfig) -> int:
    if args.topics_command == "acls":
        principals = {role: f"User:smtp-discovery-{role}" for role in ROLES}
        for item in args.principal:
            role, sep, principal = item.partition("=")
            if not sep or role not in ROLES or not principal.startswith("User:"):
                raise ConfigError(
                    f"{item!r} is not ROLE=User:NAME with a role of {', '.join(ROLES)}"
                )
            principals[role] = principal
        print("# Run as a Kafka super user: KAFKA_ADMIN_CONFIG is its client properties file.")
        print("\n".join(acl_commands(config, principals)))
        return 0
    if args.topics_command == "list":
        for spec in config.topics.specs():
            partitions = (
                f"{config.topic_partitions} (co-partitioned)"
                if spec.co_partitioned
                else str(spec.partitions)
            )
            print(
                f"{spec.name:28} key={spec.key:8} cleanup={spec.cleanup:7} partitions={partitions}"
            )
            print(f"{'':28} {spec.description}")
        return 0
    bootstrap = args.bootstrap or config.kafka_bootstrap
    if not bootstrap:
        raise ConfigError(
            "topics ensure needs a cluster: set KAFKA_BOOTSTRAP or pass --bootstrap "
            "(`smtp-discovery up` ensures the topics of its embedded broker itself)"
        )
    if args.partitions is not None and args.partitions < 1:
        raise ConfigError("--partitions must be at least 1")
    outcomes = asyncio.run(
        ensure_topics(
            client_options(config, bootstrap),
            partitions=args.partitions or config.topic_partitions,
            replication=args.replication or config.topic_replication,
            specs=config.topics.specs(),
        )
    )
    for outcome in outcomes:
        print(f"{outcome.name}: {outcome.action}{' - ' + outcome.detail if outcome.detail else ''}")
    return 1 if any(o.action == "mismatch" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
