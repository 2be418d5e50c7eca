from __future__ import annotations

import random
from pathlib import Path

import pytest

from smtp_discovery.ingest.policy import verification_still_applies
from smtp_discovery.ingest.state_view import AddressStateView
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.state import AddressStateSnapshot, AddressStatus
from tests.ingest.harness import running_ingest, state, tenant
from tests.ingest.postfix import PostfixServer
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


def test_the_compact_table_agrees_with_a_dict_through_growth_and_removals() -> None:
    rng = random.Random(7)
    view = AddressStateView(fingerprint_key=b"k" * 16)
    model: dict[str, AddressStatus] = {}
    statuses = list(AddressStatus)
    for step in range(60_000):
        key = f"acme:user{rng.randrange(20_000)}@a.example"
        if rng.random() < 0.3:
            view.set(key, None)
            model.pop(key, None)
        else:
            status = rng.choice(statuses)
            view.set(key, status)
            model[key] = status
        if step % 5_000 == 0:
            assert len(view) == len(model)
    assert len(view) == len(model)
    for i in range(20_000):
        key = f"acme:user{i}@a.example"
        assert view.status(key) is model.get(key)
    assert view.status("acme:stranger@a.example") is None
    assert len(view) <= 0.7 * len(view._statuses), "at most 70% full"


async def test_a_fingerprint_collision_cannot_accept_mail_for_a_stranger(
    kafka_bootstrap: str,
    tmp_path: Path,
    postfix_servers: dict[str, PostfixServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forced: every key has the same fingerprint, so a stranger reads as the known user. The
    node skips the callout, but the destination's own RCPT answer still refuses it."""
    monkeypatch.setattr(AddressStateView, "_fingerprint", lambda self, key: 42)
    strict = postfix_servers["strict"]
    acme = tenant("acme", ["a.example"], strict.port)
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states) as ingest:
        assert ingest.node.states.status("acme:stranger@a.example") is AddressStatus.USER
        async with ingest.client() as smtp:
            await smtp.mail("sender@outside.example")
            reply = await smtp.execute_command(b"RCPT TO:<stranger@a.example>")
        assert reply.code == 550 and "5.1.1" in reply.message, reply
