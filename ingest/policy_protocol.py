"""Postfix's policy delegation protocol, as pure functions: reading requests, writing answers.

Postfix (``check_policy_service``) sends one request as ``name=value`` lines ended by an empty
line, and reads one answer, ``action=...`` and an empty line, on a connection it keeps for
further requests (http://www.postfix.org/SMTPD_POLICY_README.html). Attribute names Postfix
does not know yet must be ignored, so unknown ones are kept but never refused. No I/O here:
``ingest.policy_service`` reads the lines and writes what these functions return.

Answers map the ingest node's RCPT decision (``ingest.policy``) onto Postfix access(5)
actions: an acceptance is ``OK`` (this recipient may be relayed: the policy service is the
restriction that permits it), a refusal or a deferral is the ingest node's own SMTP reply
(``550 5.1.1 <tenant's text>``, ``451 4.4.3 ...``, ``421 ...`` for harvest protection), which
Postfix sends to the client as it is. A deferral may instead be ``DEFER_IF_PERMIT`` so that a
later restriction that rejects still wins (DISCOVERY_POLICY_TEMPFAIL_ACTION).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

MAX_LINE_BYTES = 8192
"""Longest attribute line taken (Postfix's own lines are far shorter; ``ccert_*`` are longest)."""
MAX_ATTRIBUTES = 200
"""Attributes in one request (Postfix sends about forty)."""
MAX_REQUEST_BYTES = 64 * 1024
"""A whole request (Postfix's are about 1 KiB; client certificates' subjects make them grow)."""

ACCESS_POLICY = "smtpd_access_policy"
VERDICT_REPORT = "smtp_discovery_verdict"
"""Our own request: an after-queue content filter reports a message's verdict (see
docs/postfix.md, "The verdict after the queue")."""

_REPLY = re.compile(r"^[45]\d\d [245]\.\d{1,3}\.\d{1,3}( .*)?$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class TempfailAction(StrEnum):
    REPLY = "reply"
    """The ingest node's ``451 4.4.3`` reply, whatever other restrictions say."""
    DEFER_IF_PERMIT = "defer_if_permit"
    """``DEFER_IF_PERMIT``: deferred unless a later restriction rejects (Postfix decides)."""


class ProtocolError(ValueError):
    """A request that breaks the protocol: the answer says which rule, then the connection
    closes (the stream can no longer be trusted to be in step)."""


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    attributes: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """An attribute's value, "" when Postfix did not send it (as it does for empty ones)."""
        return self.attributes.get(name, "")

    @property
    def request(self) -> str:
        return self.get("request")

    @property
    def state(self) -> str:
        """``protocol_state``: RCPT, DATA, END-OF-MESSAGE, ... (upper case as Postfix sends)."""
        return self.get("protocol_state").upper()


def parse_line(line: bytes) -> tuple[str, str] | None:
    """One line without its newline: None for the empty line that ends a request, else the
    (name, value) pair; ProtocolError for what Postfix never sends."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"attribute line longer than {MAX_LINE_BYTES} bytes")
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line:
        return None
    name, sep, value = line.partition(b"=")
    if not sep:
        raise ProtocolError("attribute line without '='")
    try:
        text_name = name.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("attribute name is not ASCII") from None
    if not _NAME.match(text_name):
        raise ProtocolError(f"bad attribute name {text_name[:40]!r}")
    # Values are the client's words (HELO, addresses): UTF-8 with SMTPUTF8, else anything.
    return text_name, value.decode("utf-8", "surrogateescape")


def parse_request(lines: Iterable[bytes]) -> PolicyRequest:
    """A whole request from its attribute lines (without the ending empty line)."""
    attributes: dict[str, str] = {}
    for line in lines:
        pair = parse_line(line)
        if pair is None:
            break
        if len(attributes) >= MAX_ATTRIBUTES:
            raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes in one request")
        attributes[pair[0]] = pair[1]
    return PolicyRequest(attributes)


_BLOCK = re.compile(
    rb"(?:[a-z_][a-z0-9_]{0,63}=[^\n\r]{0,%d}\n){1,%d}\n" % (MAX_LINE_BYTES, MAX_ATTRIBUTES)
)
"""A well-formed request as Postfix sends it, checked in one pass (the common case)."""


def parse_block(block: bytes) -> PolicyRequest:
    """A whole request as read off the connection, its ending empty line included.

    What Postfix sends matches one regular expression and is split at once (a request is some
    thirty lines, so reading them one by one was most of the service's cost); anything else
    goes through ``parse_line`` line by line, which names the rule broken or accepts the
    oddity (a CR before the newline, a long attribute name)."""
    if _BLOCK.fullmatch(block):
        text = block[:-2].decode("utf-8", "surrogateescape")
        return PolicyRequest(dict(line.split("=", 1) for line in text.split("\n")))  # type: ignore[misc]
    body = block[:-2] if block.endswith(b"\n\n") else block
    if not body:
        raise ProtocolError("request without attributes")
    request = parse_request(body.split(b"\n"))
    if len(request.attributes) < body.count(b"\n") + 1:
        raise ProtocolError("empty line inside a request")
    return request


def format_action(action: str) -> bytes:
    """The answer to one request. Newlines in ``action`` would end it early and put Postfix
    out of step with the connection, so they become spaces."""
    one_line = " ".join(action.split())
    return f"action={one_line}\n\n".encode("utf-8", "surrogateescape")


def dunno() -> str:
    """No opinion: Postfix goes on with the next restriction."""
    return "DUNNO"


def accept() -> str:
    return "OK"


def refusal(reply: str, tempfail: TempfailAction = TempfailAction.REPLY) -> str:
    """The action for an SMTP reply of the ingest node's decision (``550 5.1.1 text``,
    ``451 4.4.3 text``, ``421 4.7.0 text``). A 4xx other than 421 becomes DEFER_IF_PERMIT when
    the provider prefers that; 421 always stays (it is harvest protection closing the
    connection, which only the numeric reply does)."""
    if not _REPLY.match(reply):
        raise ValueError(f"not an SMTP reply with an enhanced status: {reply!r}")
    code = reply[:3]
    if tempfail is TempfailAction.DEFER_IF_PERMIT and code.startswith("4") and code != "421":
        return f"DEFER_IF_PERMIT {reply[4:]}"
    return reply


def malformed(reason: str) -> str:
    """What a broken request gets: a temporary refusal naming the rule it broke (Postfix shows
    it to the client only if the request was really its own)."""
    return f"451 4.3.5 Policy request refused: {reason}"
