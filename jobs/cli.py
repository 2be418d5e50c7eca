"""The jobs' command-line entry points, with operator-facing errors."""

from __future__ import annotations

import argparse
import asyncio
import socket
from datetime import UTC, datetime

from jobs.render import FORMATS
from jobs.reports import Kind
from jobs.runner import Jobs, install_stop, one_report
from jobs.send import Mailer, ReportLog, deliver_once
from jobs.weeks import Schedule, Week
from smtp_discovery.clickhouse import connect
from smtp_discovery.config import RuntimeConfig, split_host_port
from smtp_discovery.errors import ConfigError, OperatorError


def mailer(config: RuntimeConfig) -> Mailer:
    if not config.report_smarthost:
        raise ConfigError("sending reports needs DISCOVERY_REPORT_SMARTHOST (host:port)")
    host, port = split_host_port(config.report_smarthost)
    return Mailer(host, port, config.report_sender, socket.getfqdn())


def schedule(config: RuntimeConfig) -> Schedule:
    return Schedule.parse(config.report_time, config.report_timezone)


async def jobs_command(config: RuntimeConfig) -> None:
    stop = asyncio.Event()
    install_stop(stop)
    jobs = Jobs(
        connect(config.effective_clickhouse_url),
        config.analytics_layout,
        schedule(config),
        mailer(config),
    )
    await jobs.run(stop)


def report_command(config: RuntimeConfig, args: argparse.Namespace) -> int:
    plan = schedule(config)
    try:
        week = Week.parse(args.week) if args.week else plan.latest_slot(datetime.now(UTC))[1]
    except ValueError as exc:
        raise ConfigError(f"--week: {exc}") from None
    client = connect(config.effective_clickhouse_url)
    try:
        report = one_report(
            client, config.analytics_layout, plan, args.tenant, Kind(args.kind), week
        )
    except LookupError as exc:
        raise OperatorError(str(exc.args[0])) from None
    if not args.send:
        print(FORMATS[args.format](report), end="")
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
