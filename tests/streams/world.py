"""A pure, in-memory run of the rules for tests: groups by route key, system messages routed.

It plays the part Kafka and the worker play in production — each message goes to the group of
its route key, outputs are applied, system messages (alias requests, grants, releases) are
delivered in order — so multi-step protocols can be tested exhaustively in milliseconds. The
real wiring is tested against a real broker in tests/streams/test_worker.py.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.commands import CommandResult
from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutVerified,
    OutboundSent,
    RecipientDelivered,
)
from smtp_discovery.schemas.state import AddressRecord, StateChange
from smtp_discovery.schemas.tenant import DiscoverySettings, TenantConfig
from smtp_discovery.streams.journal import Entry, Journal, micros
from smtp_discovery.streams.reorder import JournalState, place
from smtp_discovery.streams.rules import Context, Outcome, Policy, apply, is_mail

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def tenant(
    domains: tuple[str, ...] = ("a.example", "b.example"), tenant_id: str = "acme"
) -> TenantConfig:
    return TenantConfig(tenant_id=tenant_id, event_time=T0, name=tenant_id.title(), domains=domains)


@dataclass
class World:
    settings: DiscoverySettings = field(
        default_factory=lambda: DiscoverySettings(discovery_enabled=True)
    )
    config: TenantConfig = field(default_factory=tenant)
    policy: Policy = field(default_factory=Policy)
    records: dict[str, AddressRecord] = field(default_factory=dict)
    changes: list[StateChange] = field(default_factory=list)
    results: list[CommandResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ordered: bool = True
    """Through the journal, as the worker applies messages (``streams.reorder.place``); False:
    each message straight through the rules, in arrival order."""
    journals: dict[str, JournalState] = field(default_factory=dict)
    bases: dict[str, dict[str, AddressRecord]] = field(default_factory=dict)
    sent: dict[str, Any] = field(default_factory=dict)
    """Messages by event id: what the journal's entries decode to."""

    @property
    def ctx(self) -> Context:
        return Context(self.config, self.settings, self.policy)

    def group(self, route_key: str) -> dict[str, AddressRecord]:
        return {
            k: r
            for k, r in self.records.items()
            if parse_address(r.address).route_key(r.tenant_id) == route_key
        }

    def send(self, message: Any) -> list[Outcome]:
        """Apply a message and every system message it causes, in Kafka order per key."""
        queue: deque[Any] = deque([message])
        outcomes = []
        while queue:
            current = queue.popleft()
            outcome = self._apply(current)
            for key, record in outcome.records.items():
                if record is None:
                    self.records.pop(key, None)
                else:
                    self.records[key] = record
            self.changes.extend(outcome.changes)
            self.results.extend(outcome.results)
            if outcome.skipped:
                self.skipped.append(outcome.skipped)
            queue.extend(outcome.messages)
            outcomes.append(outcome)
        return outcomes

    def _apply(self, message: Any) -> Outcome:
        group = self.group(message.route_key())
        if not self.ordered:
            return apply(group, message, self.ctx)
        route_key = message.route_key()
        state = self.journals.setdefault(route_key, JournalState(Journal()))
        self.sent.setdefault(message.event_id, message)
        entry = Entry(
            micros(message.event_time),
            message.event_id,
            "discovery.mail" if is_mail(message) else "discovery.commands",
            b"",
        )
        outcome = place(
            group,
            state,
            message,
            entry,
            self.ctx,
            load_base=lambda: dict(self.bases.get(route_key, {})),
            decode=lambda e: self.sent[e.event_id],
        )
        if state.base_changed:
            self.bases[route_key] = dict(state.base or {})
            state.base_changed = False
        state.base = None  # read through load_base, as the worker does in a later batch
        return outcome

    def status(self, address: str) -> str | None:
        record = self.records.get(parse_address(address).record_key(self.config.tenant_id))
        return None if record is None else str(record.status)

    def record(self, address: str) -> AddressRecord:
        return self.records[parse_address(address).record_key(self.config.tenant_id)]

    # ---- message builders ---------------------------------------------------------------------

    def base(self, address: str, at: datetime) -> dict[str, Any]:
        return {"tenant_id": self.config.tenant_id, "event_time": at, "address": address}

    def verified(self, address: str, at: datetime = T0, **kw: Any) -> CalloutVerified:
        return CalloutVerified(**self.base(address, at), destination="mx:25", reply_code=250, **kw)

    def rejected(self, address: str, at: datetime = T0) -> CalloutRejected:
        return CalloutRejected(**self.base(address, at), destination="mx:25", reply_code=550)

    def delivered(
        self, address: str, at: datetime = T0, verdict: str = "clean", **kw: Any
    ) -> RecipientDelivered:
        return RecipientDelivered(
            **self.base(address, at), verdict=verdict, message_id="m", client_ip="192.0.2.1", **kw
        )

    def outbound(self, address: str, at: datetime = T0) -> OutboundSent:
        return OutboundSent(**self.base(address, at), message_id="m", client_ip="192.0.2.9")

    def command(self, cls: type, address: str, at: datetime = T0, **kw: Any) -> Any:
        return cls(**self.base(address, at), actor="admin:test", **kw)

    def verify_and_deliver(self, address: str, days: list[int], start: datetime = T0) -> None:
        self.send(self.verified(address, start))
        for d in days:
            self.send(self.delivered(address, start + timedelta(days=d)))

    def reasons(self, address: str) -> list[tuple[str | None, str | None, str]]:
        norm = parse_address(address).normalized
        return [
            (c.from_status and str(c.from_status), c.to_status and str(c.to_status), c.reason)
            for c in self.changes
            if parse_address(c.address).normalized == norm
        ]
