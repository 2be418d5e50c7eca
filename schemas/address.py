"""Mail addresses: RFC 5321 path parsing, normalisation and the keys derived from them.

Every part of the system that compares, stores or routes an address goes through this module, so
that "is this the same mailbox?" has exactly one answer. The rules:

* Domains are case-insensitive and internationalised: they are kept as lower-case A-labels
  (``xn--…``), the form DNS and the delivery destinations use, and shown as U-labels.
* Local parts are kept exactly as received for display, but compared case-insensitively after
  Unicode NFC normalisation; a quoted local part whose content needs no quoting is the same
  mailbox as the unquoted one (``"john"@x`` is ``john@x``).
* ``local+tag`` is a sub-address of ``local``; its *base* local part is ``local``.
* The route key (tenant + normalised base local part) is the Kafka key of every message about an
  address, so all addresses that could be aliases of each other land on one partition.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import idna

MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_PATH_OCTETS = 256  # including the angle brackets
MAX_LABEL_OCTETS = 63
SUBADDRESS_SEPARATOR = "+"

# RFC 5321 atext, ASCII part. Non-ASCII characters are allowed on top of this only with SMTPUTF8.
_ATEXT_ASCII = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
# Fast paths for the common all-ASCII forms; anything they do not match takes the full checks.
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_ASCII_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LDH_LABELS = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(
    # A dot-atom of at most 64 characters, @, LDH labels of at most 63 with no A-label (those
    # take IDNA's checks); the length of the whole is checked apart.
    rf"(?=[^@]{{1,{MAX_LOCAL_OCTETS}}}@){_ATOM}(?:\.{_ATOM})*@(?!.*[xX][nN]--){_LABEL}(?:\.{_LABEL})*"
)


class AddressError(ValueError):
    """An address that cannot be accepted, with a machine-readable code.

    ``enhanced_status`` is the RFC 3463 code an SMTP server should answer with, so the edge can
    turn any parse failure into a specific reply without a second table.
    """

    def __init__(self, code: str, message: str, enhanced_status: str = "5.1.3") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.enhanced_status = enhanced_status


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed mailbox. Construct with :func:`parse_address`."""

    local: str
    """The local part exactly as received (quoted form included), for display."""
    domain: str
    """Lower-case ASCII domain (A-labels), or an address literal such as ``[192.0.2.1]``."""
    domain_unicode: str
    """The domain in U-labels, for display."""
    normalized_local: str
    """The local part used for matching: canonical quoting, NFC, lower case."""
    base_local: str
    """``normalized_local`` without its ``+tag``."""
    tag: str | None
    """The sub-address tag, or None when the address is not a sub-address."""
    quoted: bool
    needs_smtputf8: bool

    @property
    def normalized(self) -> str:
        """The matching form of the whole address: one per mailbox."""
        return f"{self.normalized_local}@{self.domain}"

    @property
    def base(self) -> str:
        """The matching form of the address this one is a sub-address of (itself if none)."""
        return f"{self.base_local}@{self.domain}"

    @property
    def display(self) -> str:
        return f"{self.local}@{self.domain_unicode}"

    @property
    def mailbox(self) -> str:
        """The address as it goes to another server: the domain in its A-label form, which
        every server takes; the local part as received (non-ASCII only with SMTPUTF8)."""
        return f"{self.local}@{self.domain}"

    @property
    def is_subaddress(self) -> bool:
        return self.tag is not None

    @property
    def is_domain_literal(self) -> bool:
        return self.domain.startswith("[")

    @property
    def has_relay_hack(self) -> bool:
        """True for the ``user%host@`` and ``host!user@`` forms once used for relaying, and for
        quoted local parts hiding another address (``"user@elsewhere"@ours``)."""
        if self.quoted:
            # "user@elsewhere"@ours: some MTAs look inside the quotes and route on them.
            return any(ch in self.normalized_local for ch in "@%!")
        return "%" in self.local or "!" in self.local

    def route_key(self, tenant_id: str) -> str:
        return route_key(tenant_id, self.base_local)

    def record_key(self, tenant_id: str) -> str:
        return record_key(tenant_id, self.normalized)

    def __str__(self) -> str:
        return self.display


def route_key(tenant_id: str, base_local: str) -> str:
    """Kafka key for every message about an address: tenant id, then normalised base local part.

    Tenant ids cannot contain ``:``, so the first ``:`` always separates the two.
    """
    return f"{tenant_id}:{base_local}"


def record_key(tenant_id: str, normalized_address: str) -> str:
    """Key of one address record (tables, the compacted address-state topic)."""
    return f"{tenant_id}:{normalized_address}"


@lru_cache(maxsize=1 << 16)
def parse_address(text: str, *, smtputf8: bool = True) -> Address:
    """Parse an RFC 5321 mailbox or path (``<local@domain>`` or ``local@domain``).

    Cached: the same few addresses are parsed over and over on hot paths (every message names
    one, and every record of a group is compared), and an Address is immutable.

    ``smtputf8`` says whether the transaction negotiated SMTPUTF8; without it a non-ASCII local
    part is refused (a non-ASCII domain is always acceptable: it has an ASCII form).
    Source routes (``<@a,@b:user@c>``) are refused: we never relay on a sender's say-so.
    """
    if "\x00" in text or any(ch in text for ch in "\r\n"):
        raise AddressError("syntax", "address contains NUL or line-break characters", "5.1.3")
    path = text.strip()
    bracketed = path.startswith("<") or path.endswith(">")
    if bracketed:
        if not (path.startswith("<") and path.endswith(">")):
            raise AddressError("syntax", "unbalanced angle brackets in address")
        inner = path[1:-1]
    else:
        inner = path
    if _octets(inner) + 2 > MAX_PATH_OCTETS:
        raise AddressError(
            "path_too_long", f"path is longer than {MAX_PATH_OCTETS} octets", "5.1.3"
        )
    if not inner:
        raise AddressError("empty", "empty address")
    if inner.startswith("@"):
        raise AddressError(
            "source_route", "source routes (@host,@host:user@domain) are not accepted", "5.7.1"
        )
    local_raw, domain_raw = _split(inner)
    content, quoted = _parse_local(local_raw, smtputf8=smtputf8)
    domain, domain_unicode = _parse_domain(domain_raw)
    normalized_local = _normalize_local(content)
    base_local, tag = _split_subaddress(content)
    return Address(
        local=local_raw,
        domain=domain,
        domain_unicode=domain_unicode,
        normalized_local=normalized_local,
        base_local=_normalize_local(base_local) if tag is not None else normalized_local,
        tag=tag,
        quoted=quoted,
        needs_smtputf8=not local_raw.isascii(),
    )


def is_plain_address(text: str) -> bool:
    """True only for an address ``parse_address`` certainly accepts: ASCII ``dot.atom@host.name``
    within the length limits (what nearly every address is). False says nothing; parse it.

    Checking an address that a producer already checked is what consumers of a topic do for
    every message: a sink validating 50,000 state changes spent most of its time parsing
    addresses again. ``tests/schemas/test_address_fast_check.py`` shows on generated input
    that this never accepts what the parser refuses."""
    return len(text) <= MAX_PATH_OCTETS - 2 and _PLAIN_ADDRESS.fullmatch(text) is not None


def display_form(text: str) -> str:
    """``text`` (an address, a domain or a fragment of one) with each A-label (``xn--…``) shown
    as its U-label: addresses are stored and shown in display form, and a search typed in
    either form must find them. A label that is not a valid A-label is left as it is."""
    if "xn--" not in text.lower():
        return text

    def label(match: re.Match[str]) -> str:
        part = match.group(0)
        if not part.lower().startswith("xn--"):
            return part
        try:
            return str(idna.decode(part.lower()))
        except (idna.IDNAError, UnicodeError):
            return part

    return _LABEL.sub(label, text)


_LABEL = re.compile(r"[^.@\s]+")


def normalize_domain(text: str) -> str:
    """Canonical form of a domain name (lower-case A-labels). Raises AddressError."""
    return _parse_domain(text.strip())[0]


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _split(inner: str) -> tuple[str, str]:
    if inner.startswith('"'):
        end = _closing_quote(inner)
        local, rest = inner[: end + 1], inner[end + 1 :]
        if not rest.startswith("@"):
            raise AddressError("syntax", "a quoted local part must be followed by @domain")
        return local, rest[1:]
    if "@" not in inner:
        raise AddressError("syntax", "address has no @domain part")
    local, _, domain = inner.rpartition("@")
    if not local:
        raise AddressError("syntax", "address has an empty local part")
    return local, domain


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise AddressError("syntax", "unterminated quoted local part")


def _parse_local(local: str, *, smtputf8: bool) -> tuple[str, bool]:
    """Validate a local part; return its content (quotes and quoted-pairs resolved)."""
    if _octets(local) > MAX_LOCAL_OCTETS:
        raise AddressError(
            "local_too_long", f"local part is longer than {MAX_LOCAL_OCTETS} octets", "5.1.3"
        )
    if not local.isascii() and not smtputf8:
        raise AddressError(
            "smtputf8_required",
            "a non-ASCII local part needs the SMTPUTF8 extension",
            "5.6.7",
        )
    if local.startswith('"'):
        return _quoted_content(local), True
    if _ASCII_DOT_ATOM.fullmatch(local):
        return local, False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError("syntax", "local part has a leading, trailing or doubled dot")
    for ch in local:
        if ch != "." and not _is_atext(ch):
            raise AddressError(
                "syntax", f"character {ch!r} is not allowed in an unquoted local part"
            )
    return local, False


def _quoted_content(local: str) -> str:
    body = local[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body):
                raise AddressError("syntax", "dangling backslash in quoted local part")
            nxt = body[i + 1]
            if not (32 <= ord(nxt) <= 126):
                raise AddressError("syntax", "invalid quoted pair in local part")
            out.append(nxt)
            i += 2
            continue
        code = ord(ch)
        if ch == '"' or code < 32 or code == 127:
            raise AddressError("syntax", f"character {ch!r} is not allowed in a quoted local part")
        out.append(ch)
        i += 1
    return "".join(out)


def _is_atext(ch: str) -> bool:
    if ch in _ATEXT_ASCII:
        return True
    if ch.isascii():
        return False
    # RFC 6531 UTF8-non-ascii; refuse controls and unassigned/surrogate code points.
    return unicodedata.category(ch)[0] not in ("C", "Z")


def _is_dot_string(content: str) -> bool:
    if _ASCII_DOT_ATOM.fullmatch(content):
        return True
    if not content or content.startswith(".") or content.endswith(".") or ".." in content:
        return False
    return all(ch == "." or _is_atext(ch) for ch in content)


def _normalize_local(content: str) -> str:
    folded = unicodedata.normalize("NFC", content).lower()
    if _is_dot_string(folded):
        return folded
    escaped = folded.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _split_subaddress(content: str) -> tuple[str, str | None]:
    index = content.find(SUBADDRESS_SEPARATOR)
    if index <= 0:
        return content, None
    base = content[:index]
    if base.endswith("."):
        return content, None
    return base, content[index + 1 :]


def _parse_domain(domain: str) -> tuple[str, str]:
    if not domain:
        raise AddressError("syntax", "address has an empty domain")
    if domain.startswith("["):
        return _parse_literal(domain)
    if _octets(domain) > MAX_DOMAIN_OCTETS:
        raise AddressError("domain_too_long", f"domain is longer than {MAX_DOMAIN_OCTETS} octets")
    if domain.isascii():
        ascii_domain = domain.lower()
        _check_ldh(ascii_domain)
        if "xn--" in ascii_domain:
            try:
                unicode_domain = idna.decode(ascii_domain)
            except idna.IDNAError as exc:
                raise AddressError("idna", f"invalid internationalised domain: {exc}") from exc
        else:
            unicode_domain = ascii_domain
        return ascii_domain, unicode_domain
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        unicode_domain = idna.decode(ascii_domain)
    except (idna.IDNAError, UnicodeError) as exc:
        raise AddressError("idna", f"invalid internationalised domain: {exc}") from exc
    if len(ascii_domain) > MAX_DOMAIN_OCTETS:
        raise AddressError("domain_too_long", f"domain is longer than {MAX_DOMAIN_OCTETS} octets")
    _check_ldh(ascii_domain)
    return ascii_domain, unicode_domain


def _check_ldh(domain: str) -> None:
    if _LDH_LABELS.fullmatch(domain):
        return
    for label in domain.split("."):
        if not label:
            raise AddressError("syntax", "domain has an empty label")
        if len(label) > MAX_LABEL_OCTETS:
            raise AddressError(
                "label_too_long", f"domain label is longer than {MAX_LABEL_OCTETS} octets"
            )
        if label.startswith("-") or label.endswith("-"):
            raise AddressError("syntax", f"domain label {label!r} starts or ends with a hyphen")
        if not set(label) <= _LDH:
            raise AddressError("syntax", f"domain label {label!r} has invalid characters")


def _parse_literal(domain: str) -> tuple[str, str]:
    if not domain.endswith("]"):
        raise AddressError("syntax", "unterminated address literal")
    body = domain[1:-1]
    try:
        if body[:5].lower() == "ipv6:":
            canonical = f"[IPv6:{ipaddress.IPv6Address(body[5:]).compressed}]"
        else:
            canonical = f"[{ipaddress.IPv4Address(body)}]"
    except ValueError as exc:
        raise AddressError("syntax", f"invalid address literal {domain!r}") from exc
    return canonical, canonical
