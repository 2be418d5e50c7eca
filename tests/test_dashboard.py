"""The Grafana dashboard asks only for metrics the roles really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from smtp_discovery.admin.context import AdminContext
from smtp_discovery.ingest.metrics import IngestMetrics
from smtp_discovery.schemas.topics import TopicNames
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.sinks.sink import Sink, SinkSettings

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = {"kafka_consumergroup_lag"}  # from kafka-exporter, documented in docs/operations.md


def _exported() -> set[str]:
    names: set[str] = set()
    registries = [
        IngestMetrics().registry,
        Sink({}, None, Layout("x"), TopicNames(), SinkSettings(group="g")).metrics(),
        AdminContext({}, TopicNames(), None, Layout("x")).metrics(),
    ]
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            if family.type == "counter":  # labelled counters list no samples until used
                names.add(f"{family.name}_total")
            names.update(sample.name for sample in family.samples)
    # The worker's counters are named in its topology (a Faust app cannot be built here).
    source = (ROOT / "streams" / "app.py").read_text()
    for name in re.findall(r'"(smtp_discovery_worker_\w+)"', source):
        names.update({name, f"{name}_total"})
    return names


async def test_every_dashboard_metric_is_exported() -> None:
    dashboard = json.loads(
        (ROOT / "helm/smtp-discovery/dashboards/smtp-discovery.json").read_text()
    )
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"\b(smtp_discovery_\w+|kafka_\w+)\b", target["expr"]))
    exported = _exported()
    base = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    missing = {name for name in base if name not in exported and name not in EXTERNAL}
    assert not missing, f"the dashboard asks for metrics nothing exports: {sorted(missing)}"
    assert len(dashboard["panels"]) >= 8
