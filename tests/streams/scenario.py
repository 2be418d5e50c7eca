"""45 days of traffic for three tenants, as daily phases of messages, with an oracle.

The oracle is the pure rules run in-memory over the same messages (tests/streams/world.py); the
real worker must end in the same states with the same transitions. Each phase is one event-time
day; no address gets a mail event and an admin command on the same day, so the outcome cannot
depend on how Kafka interleaves the mail and commands topics within a phase.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from smtp_discovery.schemas.commands import (
    AddAlias,
    CreateFunctional,
    CreateUser,
    DeleteAddress,
    ImportUser,
    MarkInvalid,
    RemoveInvalid,
    Tick,
)
from smtp_discovery.schemas.tenant import DiscoverySettings, TenantConfig
from tests.streams.world import T0, World

DAYS = 45
DAY = timedelta(days=1)


def tenants() -> list[TenantConfig]:
    def config(tenant_id: str, domains: tuple[str, ...], **settings: Any) -> TenantConfig:
        return TenantConfig(
            tenant_id=tenant_id,
            event_time=T0,
            name=tenant_id.title(),
            domains=domains,
            settings={"discovery_enabled": True, **settings},
        )

    return [
        config(
            "acme",
            ("a.example", "b.example"),
            auto_add_outbound_users=True,
            default_new_user_role="silent_user",
        ),
        config(
            "beta",
            ("beta.example",),
            expired_addresses_default_to_new_user=True,
            auto_add_detected_aliases=False,
        ),
        config("gamma", ("gamma.example",), directory_sync_enabled=True),
    ]


class Scenario:
    def __init__(self) -> None:
        self.worlds = {
            t.tenant_id: World(settings=t.effective_settings(DiscoverySettings()), config=t)
            for t in tenants()
        }
        self.phases: dict[int, list[Any]] = defaultdict(list)

    def at(self, day: int, hour: int = 9) -> Any:
        return T0 + day * DAY + timedelta(hours=hour - 9)

    def add(self, day: int, message: Any) -> Any:
        self.phases[day].append(message)
        return message

    def build(self) -> Scenario:
        acme, beta, gamma = self.worlds["acme"], self.worlds["beta"], self.worlds["gamma"]
        add, at = self.add, self.at
        # Threshold crossing on day 5 (third clean message), with a duplicate and a late one.
        add(0, acme.verified("Alice@a.example", at(0)))
        add(1, acme.delivered("alice@a.example", at(1)))
        dup = add(3, acme.delivered("alice@a.example", at(3)))
        add(3, dup)
        add(5, acme.delivered("alice@a.example", at(5)))
        add(6, acme.delivered("alice@a.example", at(4, 20)))  # late, within grace
        # Never three within 30 days; one message too late to count.
        add(0, acme.verified("bob@a.example", at(0)))
        add(0, acme.delivered("bob@a.example", at(0, 10)))
        add(20, acme.delivered("bob@a.example", at(20)))
        add(21, acme.delivered("bob@a.example", at(10)))  # eleven days late: dropped
        add(40, acme.delivered("bob@a.example", at(40)))
        # Outbound auto-add, then aliases across domains and by sub-address.
        add(2, acme.outbound("carol@a.example", at(2)))
        add(6, acme.verified("carol@b.example", at(6)))
        add(7, acme.delivered("carol+news@a.example", at(7)))
        # Discovered, then an admin makes a user of it; a remote alias joins it later.
        add(1, acme.verified("dave@a.example", at(1)))
        for hour in (10, 11, 12):
            add(1, acme.delivered("dave@a.example", at(1, hour)))
        add(8, acme.command(CreateUser, "dave@a.example", at(8), first_name="Dave", surname="Dee"))
        add(9, acme.verified("jdoe@a.example", at(9)))
        add(10, acme.command(AddAlias, "jdoe@a.example", at(10), primary="dave@a.example"))
        add(16, acme.command(CreateUser, "dave@a.example", at(16)))  # rejected: already a user
        # Marked invalid, then removed from the invalid list.
        add(1, acme.verified("eve@a.example", at(1)))
        for day in (1, 2, 3):
            add(day, acme.delivered("eve@a.example", at(day, 15)))
        add(9, acme.command(MarkInvalid, "eve@a.example", at(9)))
        add(12, acme.command(RemoveInvalid, "eve@a.example", at(12)))
        # Discovered and never managed: invalid when day 23 ends.
        add(2, acme.verified("frank@a.example", at(2)))
        for hour in (10, 11, 12):
            add(2, acme.delivered("frank@a.example", at(2, hour)))
        # The destination removed the mailbox.
        add(3, acme.verified("gina@a.example", at(3)))
        add(4, acme.rejected("gina@a.example", at(4)))
        # Admin-created accounts, an import, a deletion.
        add(1, acme.command(CreateFunctional, "info@a.example", at(1)))
        add(0, acme.command(ImportUser, "henry@b.example", at(0), first_name="Henry"))
        add(15, acme.command(DeleteAddress, "henry@b.example", at(15)))
        # Pending, no more activity: pruned after 30 days.
        add(2, acme.verified("lena@a.example", at(2)))
        # beta: outbound without auto-add is discovered; expired addresses become users.
        add(1, beta.outbound("ivan@beta.example", at(1)))
        add(2, beta.verified("jack@beta.example", at(2)))
        for hour in (10, 11, 12):
            add(2, beta.delivered("jack@beta.example", at(2, hour)))
        add(4, beta.command(CreateFunctional, "jack@beta.example", at(4)))
        add(5, beta.verified("jack+x@beta.example", at(5)))  # alias detection is off for beta
        # gamma: a directory sync owns the users; nothing is discovered.
        add(1, gamma.verified("kim@gamma.example", at(1)))
        add(2, gamma.outbound("kim@gamma.example", at(2)))
        return self

    def final_ticks(self) -> list[Tick]:
        """One tick per address ever mentioned, at the end: every partition's clock reaches the
        last day, and whatever is due by then happens, in the oracle and in the worker alike."""
        seen: dict[tuple[str, str], Tick] = {}
        for messages in self.phases.values():
            for m in messages:
                seen.setdefault(
                    (m.tenant_id, m.address.lower()),
                    Tick(tenant_id=m.tenant_id, event_time=self.at(DAYS), address=m.address),
                )
        return list(seen.values())

    def ordered(self) -> list[list[Any]]:
        """Phases in day order, mail before commands within a day, then the final ticks."""
        phases = []
        for day in sorted(self.phases):
            messages = self.phases[day]
            mail = [m for m in messages if not hasattr(m, "actor")]
            commands = [m for m in messages if hasattr(m, "actor")]
            phases.append(mail + commands)
        phases.append(self.final_ticks())
        return phases

    def run_oracle(self) -> None:
        for phase in self.ordered():
            for message in phase:
                self.worlds[message.tenant_id].send(message)
