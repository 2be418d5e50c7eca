"""Bearer tokens: ``sd_<id>_<secret>``. The id finds the record; only the secret's SHA-256 is
stored (a 256-bit random secret needs no slow hash), compared in constant time.

Whoever can write ``discovery.admin-tokens`` could otherwise publish a record of their own and
so mint access. Each record therefore carries an HMAC made with the token key, a secret only the
admin role holds (``DISCOVERY_ADMIN_TOKEN_KEY_FILE``): a record without a valid code is ignored
and logged. Kafka's own authentication and ACLs keep others off the topic; the key keeps a
process that is let write it (a misconfigured ACL, a stolen role credential) from minting.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from smtp_discovery.platform.errors import ConfigError
from smtp_discovery.schemas.admin import USE_RESOLUTION_S, AdminToken, AdminTokenUsed, used_key
from smtp_discovery.schemas.codec import MessageDecodeError, decode
from smtp_discovery.schemas.topics import ADMIN_TOKENS

log = logging.getLogger("smtp_discovery.admin")

PREFIX = "sd_"
KEY_BYTES = 32
_MAC_CONTEXT = b"smtp-discovery admin token v1"


class TokenKeyError(ConfigError):
    """The token key is missing or unusable: a sentence saying which file and what to do."""


def load_key(path: Path, *, create: bool = False) -> bytes:
    """The token key from ``path`` (hex). ``create``: make it (mode 0600) when it is missing, as
    `up` and ``token init-key`` do; an admin replica never does, or replicas would disagree."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made meanwhile by another process: read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise TokenKeyError(
            f"no admin token key at {path}: run `smtp-discovery token init-key` once where the "
            "admin role runs, or point DISCOVERY_ADMIN_TOKEN_KEY_FILE at the admin role's key"
        ) from None
    except OSError as exc:
        raise TokenKeyError(f"cannot read the admin token key {path}: {exc.strerror}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise TokenKeyError(f"{path} is not an admin token key ({KEY_BYTES * 2} hex digits)")
    return key


def token_mac(key: bytes, token_id: str, tenant_id: str | None, secret_sha256: str) -> str:
    """What the key says of one token: who it is for (the tenant, or none for an operator)
    bound to its secret's hash. The label is not covered: it grants nothing."""
    message = b"\0".join(
        (_MAC_CONTEXT, token_id.encode(), (tenant_id or "").encode(), secret_sha256.encode())
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    tenant_id: str | None
    """None: a provider operator, who may act on every tenant."""

    @property
    def operator(self) -> bool:
        return self.tenant_id is None

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"

    def may_see(self, tenant_id: str) -> bool:
        return self.operator or self.tenant_id == tenant_id


def new_token(
    tenant_id: str | None, label: str = "", *, key: bytes | None, token_id: str | None = None
) -> tuple[str, AdminToken]:
    """A fresh token: the bearer string (show it once) and the record to publish, signed with
    ``key`` (None: a token only admitted in-process, never published). ``token_id``: a new
    secret for that token (a rotation: the old secret stops working)."""
    token_id = token_id or secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}{token_id}_{secret}", token_record(token_id, tenant_id, secret, label, key)


def token_record(
    token_id: str, tenant_id: str | None, secret: str, label: str, key: bytes | None
) -> AdminToken:
    """The record of the token ``sd_<token_id>_<secret>``."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return AdminToken(
        event_time=datetime.now(UTC),
        token_id=token_id,
        tenant_id=tenant_id,
        secret_sha256=digest,
        label=label,
        mac=token_mac(key, token_id, tenant_id, digest) if key is not None else "",
    )


def parse_bearer(bearer: str) -> tuple[str, str] | None:
    """``sd_<id>_<secret>`` as (id, secret)."""
    if not bearer.startswith(PREFIX):
        return None
    token_id, sep, secret = bearer[len(PREFIX) :].partition("_")
    return (token_id, secret) if sep and token_id and secret else None


USED = used_key("").decode()
"""The prefix of the keys of last-use records."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token list shows: never the secret, nor its hash."""

    token_id: str
    tenant_id: str | None
    label: str
    created: datetime
    last_used: datetime | None


class TokenDirectory:
    """Every valid token, from the compacted topic: those whose code the key confirms. Without a
    key (an operator CLI that has none) no published token is trusted, only admitted ones."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key
        self._tokens: dict[str, AdminToken] = {}
        self._used: dict[str, datetime] = {}
        """When each token was last used, as recorded on the topic (or by this process)."""
        self.forged = 0
        """Records refused for a missing or wrong code (a metric: someone wrote the topic)."""

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode("ascii", "replace")
        if value is None:
            if name.startswith(USED):
                self._used.pop(name.removeprefix(USED), None)
            else:
                self._tokens.pop(name, None)
            return
        try:
            record = decode(ADMIN_TOKENS, value)
        except MessageDecodeError as exc:
            log.warning("ignoring an undecodable token record: %s", exc.reason)
            return
        if isinstance(record, AdminTokenUsed):  # grants nothing: needs no code
            known = self._used.get(record.token_id)
            self._used[record.token_id] = max(known or record.event_time, record.event_time)
            return
        if not self.genuine(record):
            self._tokens.pop(record.token_id, None)
            if self._key is not None:
                self.forged += 1
                log.warning(
                    "ignoring token record %s: its code does not match the admin token key "
                    "(written by something that does not hold the key)",
                    record.token_id,
                )
            return
        self._tokens[record.token_id] = record

    def genuine(self, record: AdminToken) -> bool:
        if self._key is None or not record.mac:
            return False
        expected = token_mac(self._key, record.token_id, record.tenant_id, record.secret_sha256)
        return hmac.compare_digest(expected, record.mac)

    def authenticate(self, bearer: str) -> Principal | None:
        parts = parse_bearer(bearer)
        if parts is None:
            return None
        token_id, secret = parts
        record = self._tokens.get(token_id)
        if record is None:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, record.secret_sha256):
            return None
        return Principal(record.token_id, record.tenant_id)

    def use_to_record(self, principal: Principal, now: datetime) -> AdminTokenUsed | None:
        """The record of this use of a published token, if the last one known is older than
        ``USE_RESOLUTION_S`` (noted here at once, so that concurrent requests make one)."""
        last = self._used.get(principal.token_id)
        if self.record(principal.token_id) is None or (
            last is not None and (now - last).total_seconds() < USE_RESOLUTION_S
        ):
            return None
        self._used[principal.token_id] = now
        return AdminTokenUsed(
            event_time=now, token_id=principal.token_id, tenant_id=principal.tenant_id
        )

    def forget_use(self, token_id: str, at: datetime) -> None:
        """A use noted at ``at`` that could not be published: the next one tries again."""
        if self._used.get(token_id) == at:
            del self._used[token_id]

    def listing(self, tenant_id: str | None = None) -> list[TokenInfo]:
        """The published tokens (of one tenant, or all), never their secrets, by creation."""
        used = self._used.get
        found = [
            TokenInfo(r.token_id, r.tenant_id, r.label, r.event_time, used(r.token_id))
            for r in self._tokens.values()
            if r.mac and (tenant_id is None or r.tenant_id == tenant_id)
        ]
        return sorted(found, key=lambda info: (info.created, info.token_id))

    def record(self, token_id: str) -> AdminToken | None:
        found = self._tokens.get(token_id)
        return found if found is not None and found.mac else None

    def admit(self, record: AdminToken) -> None:
        """Trust a token in this process only (the CLI's own, never published)."""
        self._tokens[record.token_id] = record

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._tokens

    def __len__(self) -> int:
        return len(self._tokens)
