"""Deployment files can't run here (no Docker engine, no cluster): check what can be checked."""

from __future__ import annotations

from pathlib import Path

import yaml

from smtp_discovery.cli import build_parser
from smtp_discovery.config import VARIABLES

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_run_real_cli_commands() -> None:
    parser = build_parser()
    ours = [s for s in _compose()["services"].values() if "build" in s]
    assert ours, "no service runs the project's image"
    for service in ours:
        args = parser.parse_args(service["command"])  # exits (fails the test) on a bad command
        assert args.command


def test_compose_sets_only_variables_the_configuration_reads() -> None:
    known = {v.env for v in VARIABLES}
    for name, service in _compose()["services"].items():
        if "build" in service:
            unknown = set(service.get("environment", {})) - known
            assert not unknown, f"{name} sets variables nothing reads: {unknown}"


def test_compose_named_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes", {}))
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared


def test_helm_chart_metadata() -> None:
    chart = yaml.safe_load((ROOT / "helm/smtp-discovery/Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "smtp-discovery"
    values = yaml.safe_load((ROOT / "helm/smtp-discovery/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsNonRoot"] is True
