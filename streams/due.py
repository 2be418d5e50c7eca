"""Which addresses have a time-driven transition due: the timer's index, kept in memory.

Only pending and discovered records can become due. The index keeps what the deadline is
derived from (the record without its bulky parts), not the deadline itself, because the
deadline depends on settings that may change while the address waits.

A due record is ticked once per version, and again if its tick changed nothing for
``RETICK_AFTER_S``: a tick can find nothing due when the tenant's settings moved the deadline
between the scan and the tick, and the record, unchanged, would never be ticked again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import NamedTuple, Protocol

from smtp_discovery.platform.clock import Clock, SystemClock
from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.tenant import DiscoverySettings
from smtp_discovery.streams.partitioning import partition_for
from smtp_discovery.streams.rules import Policy, Timed, due_at


class Tracked(Timed, Protocol):
    """What the index reads of a record (an AddressRecord, or ``store.WaitingFields``)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def version(self) -> int: ...


class Waiting(NamedTuple):
    """The few fields of a waiting record that its deadline depends on (a rules.Timed). One
    is made per counted message: a named tuple, as ``journal.Entry`` says why."""

    tenant_id: str
    address: str
    version: int
    status: AddressStatus
    status_since: datetime
    discovered_at: datetime | None
    last_seen: datetime | None
    partition: int


class _Expiring(NamedTuple):
    partition: int
    expires_at: datetime
    ticked: float | None = None


RETICK_AFTER_S = 600.0
"""How long a tick that changed nothing keeps its record from being ticked again."""


class DueIndex:
    def __init__(
        self,
        policy: Policy,
        partitions: int,
        *,
        clock: Clock | None = None,
        retick_after_s: float = RETICK_AFTER_S,
    ) -> None:
        self.policy = policy
        self.partitions = partitions
        self.clock: Clock = clock if clock is not None else SystemClock()
        """Only its monotonic seconds are read: when a record was last ticked."""
        self.retick_after_s = retick_after_s
        self._waiting: dict[str, Waiting] = {}
        self._ticked: dict[str, tuple[int, float]] = {}
        """Record key -> (version, when) of its last tick."""
        self._journals: dict[str, _Expiring] = {}
        """Route key -> when its group's journal (``streams.journal``) is of no more use."""

    def __len__(self) -> int:
        return len(self._waiting)

    def update(self, key: str, record: Tracked | None, route_key: str | None = None) -> None:
        """Index ``record`` (None, or a status that cannot become due: forget it). Its
        partition comes from ``route_key`` where the caller has it, else from its address."""
        self._ticked.pop(key, None)
        if record is None or record.status not in (AddressStatus.PENDING, AddressStatus.DISCOVERED):
            self._waiting.pop(key, None)
            return
        known = self._waiting.get(key)
        if known is None:  # a record key's partition never changes: work it out once
            if route_key is None:
                route_key = parse_address(record.address).route_key(record.tenant_id)
            partition = partition_for(route_key.encode(), self.partitions)
        else:
            partition = known.partition
        self._waiting[key] = Waiting(
            tenant_id=record.tenant_id,
            address=record.address,
            version=record.version,
            status=record.status,
            status_since=record.status_since,
            discovered_at=record.discovered_at,
            last_seen=record.last_seen,
            partition=partition,
        )

    def update_journal(
        self,
        route_key: str,
        partition: int,
        expires_at: datetime | None,
    ) -> None:
        """Note when a group's journal can go (None: it has gone)."""
        if expires_at is None:
            self._journals.pop(route_key, None)
        else:
            self._journals[route_key] = _Expiring(partition, expires_at)

    def keep_partitions(self, active: frozenset[int]) -> None:
        """Forget records of partitions this worker does not own (a memory store also holds
        standby partitions)."""
        for key in [k for k, w in self._waiting.items() if w.partition not in active]:
            del self._waiting[key]
        for key in [k for k, j in self._journals.items() if j.partition not in active]:
            del self._journals[key]

    def clear(self) -> None:
        self._waiting.clear()
        self._ticked.clear()
        self._journals.clear()

    def expired_journals(self, now: Callable[[int], datetime]) -> Iterator[tuple[str, int]]:
        """(route key, partition) of each group whose journal has expired by its partition's
        ``now``: a tick drops it. Again after ``retick_after_s`` if it is still
        there (the tick was lost, or the journal grew meanwhile and was noted again)."""
        clock = self.clock.monotonic()
        for key, journal in list(self._journals.items()):
            if journal.expires_at > now(journal.partition):
                continue
            if journal.ticked is not None and clock - journal.ticked < self.retick_after_s:
                continue
            self._journals[key] = journal._replace(ticked=clock)
            yield key, journal.partition

    def due(
        self,
        now: Callable[[int], datetime],
        settings_for: Callable[[str], DiscoverySettings | None],
    ) -> Iterator[tuple[str, Waiting]]:
        """Records due by their partition's ``now`` and not ticked at their current version
        (or ticked at it long enough ago that the tick evidently changed nothing)."""
        clock = self.clock.monotonic()
        for key, waiting in list(self._waiting.items()):
            settings = settings_for(waiting.tenant_id)
            if settings is None:
                continue
            deadline = due_at(waiting, settings, self.policy)
            if deadline is None or deadline > now(waiting.partition):
                continue
            ticked = self._ticked.get(key)
            if (
                ticked is not None
                and ticked[0] == waiting.version
                and clock - ticked[1] < self.retick_after_s
            ):
                continue
            self._ticked[key] = (waiting.version, clock)
            yield key, waiting
