"""The routing rule: mail that can change no state goes past the streams worker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutVerified,
    OutboundSent,
    RecipientDelivered,
)
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.topics import MAIL, MAIL_SETTLED, mail_route
from smtp_discovery.streams import rules
from tests.streams.world import World

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
COMMON = {"tenant_id": "acme", "address": "alice@a.example", "event_time": T0}
DELIVERED = RecipientDelivered(**COMMON, verdict="clean", message_id="m", client_ip="192.0.2.1")
OUTBOUND = OutboundSent(**COMMON, message_id="m", client_ip="192.0.2.9")
VERIFIED = CalloutVerified(**COMMON, destination="mx:25", reply_code=250)
REJECTED = CalloutRejected(**COMMON, destination="mx:25", reply_code=550)
S = AddressStatus


@pytest.mark.parametrize("status", [S.USER, S.FUNCTIONAL, S.ALIAS, S.INVALID])
@pytest.mark.parametrize("event", [DELIVERED, OUTBOUND], ids=["delivered", "outbound"])
def test_mail_of_settled_addresses_goes_past_the_worker(event: object, status: S) -> None:
    assert mail_route(event, status) == MAIL_SETTLED  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [None, S.PENDING, S.DISCOVERED])
@pytest.mark.parametrize("event", [DELIVERED, OUTBOUND], ids=["delivered", "outbound"])
def test_mail_that_can_change_state_goes_to_the_worker(event: object, status: S | None) -> None:
    assert mail_route(event, status) == MAIL  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [None, *S])
@pytest.mark.parametrize("event", [VERIFIED, REJECTED], ids=["verified", "rejected"])
def test_callouts_always_go_to_the_worker(event: object, status: S | None) -> None:
    assert mail_route(event, status) == MAIL  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [S.USER, S.FUNCTIONAL, S.ALIAS, S.INVALID])
def test_the_worker_would_change_nothing_for_what_goes_past_it(status: S) -> None:
    """The rule and the worker agree: whatever is routed away, the worker would have skipped."""
    w = World()
    w.send(w.verified("alice@a.example"))
    record = w.record("alice@a.example").model_copy(update={"status": status})
    group = {"acme:alice@a.example": record}
    for event in (w.delivered("alice@a.example"), w.outbound("alice@a.example")):
        assert mail_route(event, status) == MAIL_SETTLED
        outcome = rules.apply(group, event, w.ctx)
        assert outcome.skipped == "settled" and not outcome.records
