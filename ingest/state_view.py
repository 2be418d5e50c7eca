"""Ingest's view of every address's state: record key -> status, from the compacted topic.

Ingest only needs the status to decide a RCPT, so the view keeps one small int per address
(the benchmark reports bytes per address). A record that changes the status is reported to
``on_change`` with the old and new status (the node decides what that means for its cache); a
record that does not, however often it comes, changes nothing here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from schemas.state import AddressStatus

log = logging.getLogger("smtp_discovery.ingest")

_STATUSES = tuple(AddressStatus)
_CODES = {status.value: index for index, status in enumerate(_STATUSES)}


class AddressStateView:
    def __init__(
        self,
        on_change: Callable[[str, AddressStatus | None, AddressStatus | None], None] | None = None,
    ) -> None:
        self._status: dict[str, int] = {}
        self.on_change = on_change

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of discovery.address-state (a tombstone removes the address)."""
        if key is None:
            return
        record_key = key.decode("utf-8", "replace")
        old = self._status.get(record_key)
        if value is None:
            self._status.pop(record_key, None)
            code = None
        else:
            try:
                status = json.loads(value)["record"]["status"]
                code = _CODES[status]
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an undecodable address-state record for %s", record_key)
                return
            self._status[record_key] = code
        if code != old and self.on_change is not None:
            self.on_change(
                record_key,
                None if old is None else _STATUSES[old],
                None if code is None else _STATUSES[code],
            )

    def status(self, record_key: str) -> AddressStatus | None:
        code = self._status.get(record_key)
        return None if code is None else _STATUSES[code]

    def __len__(self) -> int:
        return len(self._status)
