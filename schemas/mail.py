"""Mail events: what the ingest nodes saw, published to ``discovery.mail``.

One event per verification callout, per delivered recipient and per outbound message. They are
facts about the mail flow, not decisions: the streams topology alone turns them into state.
"""

from __future__ import annotations

import re
import socket
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal

from pydantic import Field, ValidatorFunctionWrapHandler, WrapValidator

from smtp_discovery.schemas.base import AddressMessage

TempfailReason = Literal[
    "reply_4xx",
    "timeout",
    "connect_failed",
    "tls_failed",
    "no_destination",
    "probe_refused",
    "reply_5xx",
    "smtputf8_unsupported",
]
"""Why a callout gave no definite answer."""

CANONICAL_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                            r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")  # fmt: skip
"""IPv4 text exactly as ``str(IPv4Address(text))`` writes it (to be matched whole). It is the
only way ``ipaddress`` spells an IPv4 address and every text it matches is one ``ipaddress``
accepts (no octet over 255, no leading zero): what a producer wrote from an ``IPv4Address``."""


def _canonical_ipv4(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """An IPv4 address in its canonical text, read without ``ipaddress``'s parser (the field
    took 4.0 µs instead of 7.1, measured alone); anything else (another type, another spelling,
    IPv6) is validated as before."""
    if type(value) is str and CANONICAL_IPV4.fullmatch(value) is not None:
        return IPv4Address(socket.inet_aton(value))
    return handler(value)


ClientIp = Annotated[
    IPv4Address | IPv6Address,
    Field(union_mode="left_to_right"),
    WrapValidator(_canonical_ipv4),
]
"""The connecting client's address. Tried as IPv4, then as IPv6: no text is both, so the
result is the one pydantic's default ("smart") union picks, but that union tried the members
several times over and made this field over half of decoding a delivery in the worker (24 µs
against 9 for an IPv4 address, measured alone); the JSON schema is the same. Nearly every
value is an IPv4 address in its canonical text, which takes the fast way
(``_canonical_ipv4``): the field was then still a third of decoding a delivery (py-spy)."""


class MailEventBase(AddressMessage):
    node_id: str = Field(default="", max_length=128, description="Ingest node that saw it.")


class CalloutVerified(MailEventBase):
    """The tenant's delivery destination accepted ``RCPT TO`` for the address."""

    type: Literal["callout_verified"] = "callout_verified"
    destination: str = Field(min_length=1, max_length=300, description="host:port that answered")
    reply_code: int = Field(ge=200, le=299)
    catch_all: bool = Field(
        default=False,
        description="The destination accepts any local part, so this is no proof of existence.",
    )
    latency_ms: float = Field(default=0.0, ge=0)


class CalloutRejected(MailEventBase):
    """The destination rejected the address permanently (5xx): the mailbox does not exist."""

    type: Literal["callout_rejected"] = "callout_rejected"
    destination: str = Field(min_length=1, max_length=300)
    reply_code: int = Field(ge=500, le=599)
    enhanced_status: str | None = Field(default=None, pattern=r"^[245]\.\d{1,3}\.\d{1,3}$")
    reply_text: str = Field(default="", max_length=512)
    latency_ms: float = Field(default=0.0, ge=0)


class CalloutTempfailed(MailEventBase):
    """No destination gave a definite answer: a 4xx, a timeout, a connection or TLS failure, a
    refusal of the probe's own form (``probe_refused``) or a 5xx that is not about the mailbox
    (``reply_5xx``), or no SMTPUTF8 at the destination for an address that needs it."""

    type: Literal["callout_tempfailed"] = "callout_tempfailed"
    destination: str | None = Field(default=None, max_length=300)
    reason: TempfailReason
    reply_code: int | None = Field(default=None, ge=400, le=499)
    latency_ms: float = Field(default=0.0, ge=0)


class RecipientDelivered(MailEventBase):
    """The destination accepted a message for this recipient; ``verdict`` is the filter's."""

    type: Literal["recipient_delivered"] = "recipient_delivered"
    verdict: Literal["clean", "not_clean"]
    message_id: str = Field(min_length=1, max_length=200, description="Ingest transaction id")
    client_ip: ClientIp
    size: int = Field(default=0, ge=0)
    catch_all: bool = Field(
        default=False,
        description="The destination accepts any local part: the delivery proves nothing.",
    )


class OutboundSent(MailEventBase):
    """The address sent a message out from the tenant's own server (a registered outbound IP)."""

    type: Literal["outbound_sent"] = "outbound_sent"
    message_id: str = Field(min_length=1, max_length=200)
    client_ip: ClientIp
    recipient_count: int = Field(default=1, ge=1)


class CatchAllChecked(MailEventBase):
    """A destination was asked about a random local part (``address``), at most daily.

    A fact about the tenant's server, not about an address: the reports show destinations that
    accept anything, and the streams layer ignores it. Keyed like any address event.
    """

    type: Literal["catch_all_checked"] = "catch_all_checked"
    destination: str = Field(min_length=1, max_length=300)
    catch_all: bool = Field(description="The destination accepted the random local part.")


MailEvent = Annotated[
    CalloutVerified
    | CalloutRejected
    | CalloutTempfailed
    | RecipientDelivered
    | OutboundSent
    | CatchAllChecked,
    Field(discriminator="type"),
]

__all__ = [
    "CalloutRejected",
    "CalloutTempfailed",
    "CalloutVerified",
    "CatchAllChecked",
    "MailEvent",
    "MailEventBase",
    "OutboundSent",
    "RecipientDelivered",
    "TempfailReason",
]
