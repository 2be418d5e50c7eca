"""Which addresses have a time-driven transition due: the timer's index, kept in memory.

Only pending and discovered records can become due. The index keeps what the deadline is
derived from (status, anchor time), not the deadline itself, because the deadline depends on
settings that may change while the address waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from schemas.address import parse_address
from schemas.state import AddressRecord, AddressStatus
from schemas.tenant import DiscoverySettings
from streams.rules import Policy, due_at


@dataclass(frozen=True, slots=True)
class Waiting:
    record: AddressRecord
    route_key: str


class DueIndex:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._waiting: dict[str, Waiting] = {}
        self._ticked: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def update(self, key: str, record: AddressRecord | None) -> None:
        self._ticked.pop(key, None)
        if record is None or record.status not in (AddressStatus.PENDING, AddressStatus.DISCOVERED):
            self._waiting.pop(key, None)
            return
        lean = record.model_copy(update={"applied_event_ids": (), "clean_by_day": {}})
        self._waiting[key] = Waiting(
            lean, parse_address(record.address).route_key(record.tenant_id)
        )

    def clear(self) -> None:
        self._waiting.clear()
        self._ticked.clear()

    def due(
        self, now: datetime, settings_for: Callable[[str], DiscoverySettings | None]
    ) -> Iterator[tuple[str, Waiting]]:
        """Records due at ``now`` that have not been ticked at their current version yet."""
        for key, waiting in list(self._waiting.items()):
            settings = settings_for(waiting.record.tenant_id)
            if settings is None:
                continue
            deadline = due_at(waiting.record, settings, self.policy)
            if deadline is None or deadline > now:
                continue
            if self._ticked.get(key) == waiting.record.version:
                continue
            self._ticked[key] = waiting.record.version
            yield key, waiting
