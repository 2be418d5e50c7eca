"""A partition's batch of values to messages the sink can turn into rows, at msgspec's speed,
accepting exactly what the contracts in ``schemas/`` accept.

Validating each value against its pydantic contract cost the sink more than everything else it
does per row (8 µs of about 12 on the bench machine; a bare insert of a row costs 4). The
high-volume topics (state changes, address snapshots, mail events) are therefore decoded first
by msgspec structs that mirror their contracts field by field, constraint by constraint: about
a third of the contract's cost for a state change, a quarter for a mail event, checks included
(best of 9 batches of 20,000 on the bench machine). The contracts stay the definition; the
mirrors are a fast path that may *decline* a value but never accepts one its contract refuses:

* a mirror's constraints are those of its contract or stricter (a required ``event_id`` where
  the contract would make one up, ASCII digits where the contract's pattern takes any digit,
  canonical IPv4 text only, plain ASCII addresses only: ``schemas.address.is_plain_address``);
* a value the mirror declines is decoded by its contract, which accepts it (an international
  address, an IPv6 client) or names what is wrong with it for the dead-letter topic.

Where both accept a value, the sink's rows from the mirror equal those from the contract:
``tests/sinks/test_decode.py`` shows it on the contract samples and on fuzzed values, and shows
that the set of values refused is the contract's. Other topics (tenants) go through their
contracts only: they are a few records a day.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from smtp_discovery.schemas.address import is_plain_address
from smtp_discovery.schemas.base import TENANT_ID_PATTERN
from smtp_discovery.schemas.codec import MessageDecodeError, decode_all
from smtp_discovery.schemas.mail import CANONICAL_IPV4, TempfailReason
from smtp_discovery.schemas.state import AddressStatus, UserRole, is_transition_reason
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, STATE_CHANGES

Status = Literal[tuple(status.value for status in AddressStatus)]  # type: ignore[valid-type]
Role = Literal[tuple(role.value for role in UserRole)]  # type: ignore[valid-type]
"""An enum's values as text: msgspec reads a literal at a fraction of an enum's cost, and a
row holds the text either way."""
TenantId = Annotated[str, Meta(pattern=rf"^{TENANT_ID_PATTERN}\Z")]
EventId = Annotated[str, Meta(min_length=1, max_length=128)]
NodeId = Annotated[str, Meta(max_length=128)]
Destination = Annotated[str, Meta(min_length=1, max_length=300)]
MessageId = Annotated[str, Meta(min_length=1, max_length=200)]
Latency = Annotated[float, Meta(ge=0)]


_LONG_FRACTION = re.compile(rb"\.[0-9]{7}")
"""A time with more than microseconds: msgspec rounds it, the contract truncates it (a value
holding this anywhere is left to the contract, whichever field it is in). Starting with the
literal dot lets the search skip ahead: 0.7 µs a value, against 3.9 from a digit class."""


class _Decline(ValueError):
    """Not for the fast path: the contract decides."""


def _plain(address: str) -> None:
    if not is_plain_address(address):
        raise _Decline


def _reason(reason: str) -> None:
    if not is_transition_reason(reason):
        raise _Decline


def _aware(at: datetime | None) -> None:
    # Checked here: msgspec's own ``tz=True`` cost more than the rest of a datetime's decoding.
    if at is not None and at.tzinfo is None:
        raise _Decline


def _ipv4(text: str) -> None:
    if CANONICAL_IPV4.fullmatch(text) is None:
        raise _Decline


class _Fast(msgspec.Struct, kw_only=True):
    """``schemas.base.AddressMessage``: the fields every message the sink reads carries."""

    schema_version: Annotated[int, Meta(ge=1)] = 1
    event_id: EventId
    event_time: datetime
    tenant_id: TenantId
    address: str

    def __post_init__(self) -> None:
        _plain(self.address)
        _aware(self.event_time)


class StateChangeFast(_Fast, kw_only=True):
    """``schemas.state.StateChange``."""

    type: Literal["state_change"] = "state_change"
    from_status: Status | None
    to_status: Status | None
    reason: str
    actor: Annotated[str, Meta(min_length=1, max_length=200)] = "system"
    cause_event_ids: tuple[str, ...] = ()
    version: Annotated[int, Meta(ge=1)]
    role: Role | None = None
    primary: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _reason(self.reason)
        if self.primary is not None:
            _plain(self.primary)


class AddressStateFast(msgspec.Struct, kw_only=True):
    """``schemas.state.AddressState``."""

    tenant_id: TenantId
    address: str
    status: Status
    status_since: datetime
    status_reason: str
    version: Annotated[int, Meta(ge=1)] = 1
    role: Role | None = None
    first_name: Annotated[str, Meta(max_length=100)] = ""
    surname: Annotated[str, Meta(max_length=100)] = ""
    primary: str | None = None
    alias_candidates: tuple[str, ...] = ()
    discovered_at: datetime | None = None
    discovered_reason: str | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _aware(self.status_since)
        _aware(self.discovered_at)
        _reason(self.status_reason)
        if self.discovered_reason is not None:
            _reason(self.discovered_reason)
        for address in (self.address, *self.aliases, *self.alias_candidates):
            _plain(address)
        if self.primary is not None:
            _plain(self.primary)


class AddressStateSnapshotFast(_Fast, kw_only=True):
    """``schemas.state.AddressStateSnapshot``."""

    type: Literal["address_state"] = "address_state"
    record: AddressStateFast


class _MailFast(_Fast, kw_only=True, tag_field="type"):
    """``schemas.mail.MailEventBase``; the union is tagged by ``type``, as the contract's is."""

    type: ClassVar[str]
    node_id: NodeId = ""


class CalloutVerifiedFast(_MailFast, kw_only=True, tag="callout_verified"):
    type: ClassVar[str] = "callout_verified"
    destination: Destination
    reply_code: Annotated[int, Meta(ge=200, le=299)]
    catch_all: bool = False
    latency_ms: Latency = 0.0


class CalloutRejectedFast(_MailFast, kw_only=True, tag="callout_rejected"):
    type: ClassVar[str] = "callout_rejected"
    destination: Destination
    reply_code: Annotated[int, Meta(ge=500, le=599)]
    enhanced_status: Annotated[str, Meta(pattern=r"^[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")] | None = None
    reply_text: Annotated[str, Meta(max_length=512)] = ""
    latency_ms: Latency = 0.0


class CalloutTempfailedFast(_MailFast, kw_only=True, tag="callout_tempfailed"):
    type: ClassVar[str] = "callout_tempfailed"
    destination: Annotated[str, Meta(max_length=300)] | None = None
    reason: TempfailReason
    reply_code: Annotated[int, Meta(ge=400, le=499)] | None = None
    latency_ms: Latency = 0.0


class _FromClientFast(_MailFast, kw_only=True):
    """Mail a client sent through the gateway: its transaction and its IP (canonical IPv4
    only; every other spelling is the contract's to read)."""

    message_id: MessageId
    client_ip: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _ipv4(self.client_ip)


class RecipientDeliveredFast(_FromClientFast, kw_only=True, tag="recipient_delivered"):
    type: ClassVar[str] = "recipient_delivered"
    verdict: Literal["clean", "not_clean"]
    size: Annotated[int, Meta(ge=0)] = 0
    catch_all: bool = False


class OutboundSentFast(_FromClientFast, kw_only=True, tag="outbound_sent"):
    type: ClassVar[str] = "outbound_sent"
    recipient_count: Annotated[int, Meta(ge=1)] = 1


class CatchAllCheckedFast(_MailFast, kw_only=True, tag="catch_all_checked"):
    type: ClassVar[str] = "catch_all_checked"
    destination: Destination
    catch_all: bool


MailEventFast = (
    CalloutVerifiedFast
    | CalloutRejectedFast
    | CalloutTempfailedFast
    | RecipientDeliveredFast
    | OutboundSentFast
    | CatchAllCheckedFast
)

_MAIL_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(MailEventFast)
FAST_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    STATE_CHANGES: msgspec.json.Decoder(StateChangeFast),
    ADDRESS_STATE: msgspec.json.Decoder(AddressStateSnapshotFast),
    MAIL: _MAIL_DECODER,
    MAIL_SETTLED: _MAIL_DECODER,
}
"""The mirrored topics; every other topic is decoded by its contract alone."""


def decode_batch(
    topic_name: str, values: Sequence[bytes | None]
) -> tuple[list[Any], dict[int, MessageDecodeError]]:
    """What ``schemas.codec.decode_all`` returns for these values (the decoded messages in
    order, None for a tombstone, and the failures by position), with each value the fast path
    takes decoded by its mirror instead of its contract."""
    fast = FAST_DECODERS.get(topic_name)
    if fast is None:
        return decode_all(topic_name, values)
    decode = fast.decode
    decoded: list[Any] = []
    declined: list[int] = []
    for position, data in enumerate(values):
        try:
            if _LONG_FRACTION.search(data):  # type: ignore[arg-type]
                raise _Decline
            decoded.append(decode(data))  # type: ignore[arg-type]
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError, _Decline):
            # a value for the contract to judge (TypeError: a tombstone, None)
            decoded.append(None)
            declined.append(position)
    if not declined:
        return decoded, {}
    judged, failed = decode_all(topic_name, [values[position] for position in declined])
    failures = {}
    for index, position in enumerate(declined):
        decoded[position] = judged[index]
        if index in failed:
            failures[position] = failed[index]
    return decoded, failures
