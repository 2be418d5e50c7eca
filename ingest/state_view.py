"""Ingest's view of every address's state: record key -> status, from the compacted topic.

Every ingest node holds every tenant's addresses, so the view is built for size: an open-
addressing table of 64-bit fingerprints (an ``array`` of unsigned longs) beside one status byte
per slot, 9 bytes a slot, 35% to 70% of the slots in use: 13 to 26 bytes an address,
against about 130 for a dict of strings. The fingerprint is a keyed BLAKE2b of the record key
with a random key of this process, so nobody can choose addresses that collide.

What a collision could do, and why it cannot let a stranger in: two record keys sharing a
fingerprint (about one chance in 2^64 / n per lookup) would give a never-seen address the
status of a known one. If that status is user, functional or alias, the node skips the callout,
but it still relays the RCPT to the tenant's destination before it answers (the before-queue
relay), and the destination refuses a mailbox it does not have: the client gets the
destination's 550. The view can save a callout; it cannot accept mail for a stranger.

A record that changes the status is reported to ``on_change`` with the old and new status (the
node decides what that means for its cache); a record that does not, however often it comes,
changes nothing here.
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from collections.abc import Callable
from hashlib import blake2b

from smtp_discovery.schemas.state import AddressStatus

log = logging.getLogger("smtp_discovery.ingest")

_STATUSES = tuple(AddressStatus)
_CODES = {status.value: index for index, status in enumerate(_STATUSES)}
_EMPTY = 0
_DELETED = 1
_MAX_LOAD = 0.7
_MIN_CAPACITY = 1024

Change = Callable[[str, AddressStatus | None, AddressStatus | None], None]


class AddressStateView:
    def __init__(
        self, on_change: Change | None = None, *, fingerprint_key: bytes | None = None
    ) -> None:
        self.on_change = on_change
        self._key = fingerprint_key or os.urandom(16)
        self._fingerprints = array("Q", bytes(8 * _MIN_CAPACITY))
        self._statuses = bytearray(_MIN_CAPACITY)
        self._mask = _MIN_CAPACITY - 1
        self._count = 0
        self._used = 0
        """Slots not empty: live entries and deletion markers (what probing must walk past)."""

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of discovery.address-state (a tombstone removes the address)."""
        if key is None:
            return
        record_key = key.decode("utf-8", "replace")
        if value is None:
            self.set(record_key, None)
            return
        try:
            status = _STATUSES[_CODES[json.loads(value)["record"]["status"]]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an undecodable address-state record for %s", record_key)
            return
        self.set(record_key, status)

    def set(self, record_key: str, status: AddressStatus | None) -> None:
        """Record ``status`` for the address (None removes it); report a change."""
        fingerprint = self._fingerprint(record_key)
        slot, found = self._find(fingerprint)
        old = _STATUSES[self._statuses[slot]] if found else None
        if status is None:
            if found:
                self._fingerprints[slot] = _DELETED
                self._count -= 1
        else:
            if not found:
                if self._fingerprints[slot] == _EMPTY:
                    self._used += 1
                self._fingerprints[slot] = fingerprint
                self._count += 1
            self._statuses[slot] = _CODES[status.value]
            if self._used > _MAX_LOAD * len(self._statuses):
                self._resize()
        if status is not old and self.on_change is not None:
            self.on_change(record_key, old, status)

    def status(self, record_key: str) -> AddressStatus | None:
        slot, found = self._find(self._fingerprint(record_key))
        return _STATUSES[self._statuses[slot]] if found else None

    def __len__(self) -> int:
        return self._count

    def _fingerprint(self, record_key: str) -> int:
        digest = blake2b(record_key.encode("utf-8", "surrogatepass"), digest_size=8, key=self._key)
        value = int.from_bytes(digest.digest(), "little")
        return value if value > _DELETED else value + 2  # 0 and 1 mark empty and deleted slots

    def _find(self, fingerprint: int) -> tuple[int, bool]:
        """The slot holding ``fingerprint`` (True), or the slot to put it in (False): the first
        deleted one passed on the way, else the empty one that ended the search."""
        fingerprints = self._fingerprints
        mask = self._mask
        slot = fingerprint & mask
        reusable = -1
        while True:
            current = fingerprints[slot]
            if current == fingerprint:
                return slot, True
            if current == _EMPTY:
                return (slot if reusable < 0 else reusable), False
            if current == _DELETED and reusable < 0:
                reusable = slot
            slot = (slot + 1) & mask

    def _resize(self) -> None:
        """Grow (or clean out deletion markers) so that live entries fill at most 40%: a table
        that reached 70% doubles."""
        capacity = _MIN_CAPACITY
        while capacity * 0.4 < self._count:
            capacity *= 2
        old_fingerprints, old_statuses = self._fingerprints, self._statuses
        self._fingerprints = array("Q", bytes(8 * capacity))
        self._statuses = bytearray(capacity)
        self._mask = capacity - 1
        self._used = 0
        for slot, fingerprint in enumerate(old_fingerprints):
            if fingerprint > _DELETED:
                new_slot, _ = self._find(fingerprint)
                self._fingerprints[new_slot] = fingerprint
                self._statuses[new_slot] = old_statuses[slot]
                self._used += 1
