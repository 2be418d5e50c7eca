"""Admin API credentials on the compacted ``discovery.admin-tokens`` topic.

Only a hash of each token's secret is stored: the secret is shown once, when the token is made.
A token belongs to one tenant (it sees and changes only that tenant) or, with no tenant, to the
provider's operators. A tombstone revokes it; a new record under the same id (a rotation)
replaces its secret.

When a token was last used is kept beside it, under a key of its own (``used:<id>``): an API
replica records a use at most once per ``USE_RESOLUTION_S``, and a use recorded after a
revocation can never bring the token back, because it is not the token's record.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from smtp_discovery.schemas.base import Message, TenantId


class AdminToken(Message):
    type: Literal["admin_token"] = "admin_token"
    token_id: str = Field(pattern=r"^[a-f0-9]{8,32}$")
    tenant_id: TenantId | None = Field(default=None, description="None: a provider operator.")
    secret_sha256: str = Field(pattern=r"^[a-f0-9]{64}$")
    label: str = Field(default="", max_length=200)
    mac: str = Field(
        default="",
        pattern=r"^([a-f0-9]{64})?$",
        description="HMAC-SHA256 of id, tenant and secret hash with the admin role's token key; "
        "a record without a valid one grants nothing.",
    )

    def kafka_key(self) -> bytes:
        return self.token_id.encode("ascii")


USE_RESOLUTION_S = 3600
"""How precisely "last used" is known: one record per token and replica per hour at most."""


class AdminTokenUsed(Message):
    """A token was used (by ``event_time``) for a request that an API replica authenticated."""

    type: Literal["admin_token_used"] = "admin_token_used"
    token_id: str = Field(pattern=r"^[a-f0-9]{8,32}$")
    tenant_id: TenantId | None = Field(default=None, description="The token's; None: operator.")

    def kafka_key(self) -> bytes:
        return used_key(self.token_id)


def used_key(token_id: str) -> bytes:
    return f"used:{token_id}".encode("ascii")


AdminTokensTopicValue = Annotated[AdminToken | AdminTokenUsed, Field(discriminator="type")]
