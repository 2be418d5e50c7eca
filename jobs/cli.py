"""The jobs' command-line entry points, with operator-facing errors."""

from __future__ import annotations

import argparse
import asyncio
import socket
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from smtp_discovery.jobs.render import FORMATS, Presentation
from smtp_discovery.jobs.reports import Kind
from smtp_discovery.jobs.runner import Jobs, one_report
from smtp_discovery.jobs.send import Mailer, ReportLog, deliver_once
from smtp_discovery.platform.clickhouse import connect
from smtp_discovery.platform.config import RuntimeConfig, split_host_port
from smtp_discovery.platform.errors import ConfigError, OperatorError
from smtp_discovery.platform.ops import CounterView, OpsServer
from smtp_discovery.platform.running import RunningSystem, data_dir_in_use
from smtp_discovery.platform.stopping import role_process
from smtp_discovery.schemas.calendar import Schedule, Week


def mailer(config: RuntimeConfig) -> Mailer:
    if not config.report_smarthost:
        raise ConfigError("sending reports needs DISCOVERY_REPORT_SMARTHOST (host:port)")
    host, port = split_host_port(config.report_smarthost)
    return Mailer(host, port, config.report_sender, socket.getfqdn(),
                  presentation=Presentation.of(config))  # fmt: skip


def schedule(config: RuntimeConfig) -> Schedule:
    return Schedule.parse(config.report_time, config.report_timezone)


async def jobs_command(config: RuntimeConfig) -> None:
    async with role_process("smtp-discovery jobs", config.stop_timeout_s) as stopper:
        jobs = Jobs(
            connect(config.effective_clickhouse_url),
            config.analytics_layout,
            schedule(config),
            mailer(config),
        )
        registry = CollectorRegistry()
        registry.register(
            CounterView(
                "smtp_discovery_jobs_reports", "Weekly reports by outcome.", "outcome",
                lambda: dict(jobs.outcomes),
            )
        )  # fmt: skip
        await stopper.serve_ops(OpsServer(registry, ready=lambda: True), config.ops_listen)
        await jobs.run(stopper.event)


def report_command(config: RuntimeConfig, args: argparse.Namespace) -> int:
    plan = schedule(config)
    try:
        week = Week.parse(args.week) if args.week else plan.latest_slot(datetime.now(UTC))[1]
    except ValueError as exc:
        raise ConfigError(f"--week: {exc}") from None
    if not args.send and _embedded_in_use(config):
        print(_report_via_api(config, args, week), end="")
        return 0
    client = connect(config.effective_clickhouse_url)
    try:
        report = one_report(
            client, config.analytics_layout, plan, args.tenant, Kind(args.kind), week
        )
    except LookupError as exc:
        raise OperatorError(str(exc.args[0])) from None
    if not args.send:
        print(FORMATS[args.format](report, Presentation.of(config)), end="")
        return 0
    outcome = asyncio.run(
        deliver_once(
            report,
            ReportLog(client, config.analytics_layout),
            mailer(config),
            datetime.now(UTC),
        )
    )
    print(f"{args.tenant} {args.kind} {week}: {outcome}")
    return 0


def _embedded_in_use(config: RuntimeConfig) -> bool:
    """True when `up` holds the embedded chDB (one process per data path): ask its API instead."""
    return config.effective_clickhouse_url.startswith("chdb:") and data_dir_in_use(config.data_dir)


def _report_via_api(config: RuntimeConfig, args: argparse.Namespace, week: Week) -> str:
    from urllib.parse import quote

    path = f"/v1/tenants/{quote(args.tenant)}/reports/{args.kind}?week={week}&format={args.format}"
    status, text = RunningSystem(config.data_dir).fetch("GET", path)
    if status != 200:
        raise OperatorError(f"the admin API answered {status}: {text}")
    return text
