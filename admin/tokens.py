"""Bearer tokens: ``sd_<id>_<secret>``. The id finds the record; only the secret's SHA-256 is
stored (a 256-bit random secret needs no slow hash), compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.admin import AdminToken
from schemas.codec import MessageDecodeError, decode
from schemas.topics import ADMIN_TOKENS

log = logging.getLogger("smtp_discovery.admin")

PREFIX = "sd_"


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


def new_token(tenant_id: str | None, label: str = "") -> tuple[str, AdminToken]:
    """A fresh token: the bearer string (show it once) and the record to publish."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = AdminToken(
        event_time=datetime.now(UTC),
        token_id=token_id,
        tenant_id=tenant_id,
        secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
        label=label,
    )
    return f"{PREFIX}{token_id}_{secret}", record


class TokenDirectory:
    """Every valid token, from the compacted topic."""

    def __init__(self) -> None:
        self._tokens: dict[str, AdminToken] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        token_id = key.decode("ascii", "replace")
        if value is None:
            self._tokens.pop(token_id, None)
            return
        try:
            record = decode(ADMIN_TOKENS, value)
        except MessageDecodeError as exc:
            log.warning("ignoring an undecodable token record: %s", exc.reason)
            return
        self._tokens[record.token_id] = record

    def authenticate(self, bearer: str) -> Principal | None:
        if not bearer.startswith(PREFIX):
            return None
        token_id, sep, secret = bearer[len(PREFIX) :].partition("_")
        record = self._tokens.get(token_id)
        if not sep or record is None:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, record.secret_sha256):
            return None
        return Principal(record.token_id, record.tenant_id)

    def admit(self, record: AdminToken) -> None:
        """Trust a token in this process only (the CLI's own, never published)."""
        self._tokens[record.token_id] = record

    def __len__(self) -> int:
        return len(self._tokens)
