"""Admin API credentials on the compacted ``discovery.admin-tokens`` topic.

Only a hash of each token's secret is stored: the secret is shown once, when the token is made.
A token belongs to one tenant (it sees and changes only that tenant) or, with no tenant, to the
provider's operators. A tombstone revokes it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Message, TenantId


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
