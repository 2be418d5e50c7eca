from __future__ import annotations

from ingest.state_view import AddressStateView
from schemas.codec import encode
from schemas.state import AddressStateSnapshot, AddressStatus
from tests.schemas.samples import RECORD, T0


def snapshot(status: AddressStatus) -> bytes:
    record = RECORD.model_copy(update={"status": status})
    return encode(
        AddressStateSnapshot(tenant_id="acme", event_time=T0, address=record.address, record=record)
    )


def test_statuses_follow_snapshots_and_tombstones_and_report_changes() -> None:
    changed: list[str] = []
    view = AddressStateView(on_change=changed.append)
    key = b"acme:first.last+news@example.com"
    view.apply(key, snapshot(AddressStatus.PENDING))
    assert view.status(key.decode()) is AddressStatus.PENDING
    view.apply(key, snapshot(AddressStatus.USER))
    assert view.status(key.decode()) is AddressStatus.USER
    view.apply(key, None)
    assert view.status(key.decode()) is None
    assert changed == [key.decode()] * 3


def test_undecodable_records_are_skipped() -> None:
    view = AddressStateView()
    view.apply(b"acme:x@a.example", b"{}")
    view.apply(b"acme:y@a.example", b"\xff")
    view.apply(None, snapshot(AddressStatus.USER))
    assert len(view) == 0
