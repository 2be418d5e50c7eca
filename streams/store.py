"""Address records in Faust tables, loaded and saved a route-key group at a time.

Two tables, both written only while the worker processes a message of the group's partition:
``records`` (record key -> AddressRecord JSON) and ``groups`` (route key -> the record keys that
share it). The group index changes only when an address appears or disappears, so a message
costs one record write in the common case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping

from schemas.state import AddressRecord


class GroupStore:
    def __init__(
        self, records: MutableMapping[str, bytes], groups: MutableMapping[str, bytes]
    ) -> None:
        self.records = records
        self.groups = groups

    def members(self, route_key: str) -> list[str]:
        raw = self.groups.get(route_key)
        return [] if raw is None else json.loads(raw)

    def load(self, route_key: str) -> dict[str, AddressRecord]:
        group = {}
        for key in self.members(route_key):
            raw = self.records.get(key)
            if raw is not None:
                group[key] = AddressRecord.model_validate_json(raw)
        return group

    def save(self, route_key: str, changed: dict[str, AddressRecord | None]) -> None:
        if not changed:
            return
        members = self.members(route_key)
        before = list(members)
        for key, record in changed.items():
            if record is None:
                self.records.pop(key, None)
                if key in members:
                    members.remove(key)
            else:
                self.records[key] = record.model_dump_json().encode("utf-8")
                if key not in members:
                    members.append(key)
        if members != before:
            if members:
                self.groups[route_key] = json.dumps(members).encode("utf-8")
            else:
                self.groups.pop(route_key, None)

    def items(self) -> Iterator[tuple[str, AddressRecord]]:
        for key, raw in self.records.items():
            yield key, AddressRecord.model_validate_json(raw)
