from __future__ import annotations

import pytest

from ingest.policy import verification_still_applies
from ingest.state_view import AddressStateView
from schemas.codec import encode
from schemas.state import AddressStateSnapshot, AddressStatus
from tests.schemas.samples import RECORD, T0


def snapshot(status: AddressStatus) -> bytes:
    record = RECORD.model_copy(update={"status": status})
    return encode(
        AddressStateSnapshot(tenant_id="acme", event_time=T0, address=record.address, record=record)
    )


def test_statuses_follow_snapshots_and_tombstones_and_report_only_changes() -> None:
    changed: list[tuple[str, AddressStatus | None, AddressStatus | None]] = []
    view = AddressStateView(on_change=lambda *change: changed.append(change))
    key = b"acme:first.last+news@example.com"
    view.apply(key, snapshot(AddressStatus.PENDING))
    assert view.status(key.decode()) is AddressStatus.PENDING
    for _ in range(3):  # a record per counted message, the status unchanged: nothing to report
        view.apply(key, snapshot(AddressStatus.PENDING))
    view.apply(key, snapshot(AddressStatus.USER))
    assert view.status(key.decode()) is AddressStatus.USER
    view.apply(key, None)
    assert view.status(key.decode()) is None
    view.apply(key, None)
    k = key.decode()
    assert changed == [
        (k, None, AddressStatus.PENDING),
        (k, AddressStatus.PENDING, AddressStatus.USER),
        (k, AddressStatus.USER, None),
    ]


@pytest.mark.parametrize(
    ("old", "new", "keeps"),
    [
        (None, AddressStatus.PENDING, True),
        (AddressStatus.PENDING, AddressStatus.DISCOVERED, True),
        (AddressStatus.DISCOVERED, None, True),
        (AddressStatus.DISCOVERED, AddressStatus.USER, False),
        (AddressStatus.USER, None, False),
        (AddressStatus.INVALID, AddressStatus.PENDING, False),
        (AddressStatus.ALIAS, AddressStatus.DISCOVERED, False),
    ],
)
def test_a_cached_answer_survives_only_changes_the_decision_does_not_read(
    old: AddressStatus | None, new: AddressStatus | None, keeps: bool
) -> None:
    assert verification_still_applies(old, new) is keeps


def test_undecodable_records_are_skipped() -> None:
    view = AddressStateView()
    view.apply(b"acme:x@a.example", b"{}")
    view.apply(b"acme:y@a.example", b"\xff")
    view.apply(None, snapshot(AddressStatus.USER))
    assert len(view) == 0
