"""Prometheus metrics of one ingest node, in a registry of its own (several nodes can share a
process in tests without sharing counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from smtp_discovery.ingest.callout_guard import DestinationGuard
from smtp_discovery.platform.ops import CounterView, GaugeView

PREFIX = "smtp_discovery_ingest"


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rcpt = Counter(
            f"{PREFIX}_rcpt_decisions",
            "RCPT answers by outcome (accept, reject, defer) and reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.callout_latency = Histogram(
            f"{PREFIX}_callout_latency_seconds",
            "Verification callouts by result (exists, missing, tempfail).",
            ["result"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.cache = Counter(
            f"{PREFIX}_verification_cache_lookups",
            "Verification cache lookups by result (hit, miss); hit rate = hit / all.",
            ["result"],
            registry=r,
        )
        self.messages = Counter(
            f"{PREFIX}_messages",
            "Messages by direction (inbound, outbound) and outcome (relayed, refused).",
            ["direction", "outcome"],
            registry=r,
        )
        self.events = Counter(
            f"{PREFIX}_events",
            "Events published, by where they went (kafka, spool).",
            ["to"],
            registry=r,
        )
        self.routed = Counter(
            f"{PREFIX}_events_routed",
            "Events by topic: discovery.mail (the worker's input) or discovery.mail-settled "
            "(mail of settled addresses, analytics only).",
            ["topic"],
            registry=r,
        )
        self.connections = Counter(
            f"{PREFIX}_connections", "SMTP connections accepted.", registry=r
        )
        self.spool_depth = Gauge(
            f"{PREFIX}_spool_depth_bytes",
            "Bytes of events waiting in the local spool for Kafka.",
            registry=r,
        )
        self.address_view = Gauge(
            f"{PREFIX}_address_view_entries", "Addresses in the address-state view.", registry=r
        )

    def watch(
        self,
        spool_bytes: Callable[[], float],
        view_entries: Callable[[], float],
        callouts: DestinationGuard,
    ) -> None:
        """Gauges and counters read at scrape time, so they are never stale."""
        self.spool_depth.set_function(spool_bytes)
        self.address_view.set_function(view_entries)
        self.registry.register(
            GaugeView(
                f"{PREFIX}_destinations_paused",
                "Destinations not probed now: they failed to answer callouts (circuit breaker).",
                callouts.paused,
            )
        )
        self.registry.register(
            CounterView(
                f"{PREFIX}_callouts_held_back",
                "Callouts not made, by reason: destination_paused (its circuit breaker is "
                "open) or rate_limited (its share of callouts this second is used up).",
                "reason",
                lambda: dict(callouts.held_back),
            )
        )
