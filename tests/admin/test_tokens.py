"""Tokens that can be listed, rotated and revoked: by operators, and by tenant admins for their
own tenant only; when each was last used, without a write per request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smtp_discovery.admin.tokens import Principal, TokenDirectory, new_token
from smtp_discovery.schemas.admin import AdminTokenUsed, used_key
from smtp_discovery.schemas.codec import encode
from tests.admin.conftest import Admin
from tests.token_key import KEY

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def _directory_with(tenant: str | None) -> tuple[TokenDirectory, str, Principal]:
    directory = TokenDirectory(KEY)
    bearer, record = new_token(tenant, "t", key=KEY)
    directory.apply(record.kafka_key(), encode(record))
    found = directory.authenticate(bearer)
    assert found is not None
    return directory, record.token_id, found


def test_a_use_is_recorded_at_most_once_an_hour() -> None:
    directory, token_id, who = _directory_with("acme")
    first = directory.use_to_record(who, T0)
    assert first is not None and first.token_id == token_id
    assert directory.use_to_record(who, T0 + timedelta(minutes=59)) is None
    assert directory.use_to_record(who, T0 + timedelta(minutes=61)) is not None
    (info,) = directory.listing()
    assert info.last_used == T0 + timedelta(minutes=61)
    # An in-process token (the CLI's own, never published) leaves no record.
    cli = TokenDirectory(KEY)
    bearer, record = new_token(None, "cli", key=None)
    cli.admit(record)
    assert cli.use_to_record(cli.authenticate(bearer), T0) is None  # type: ignore[arg-type]


def test_a_use_recorded_after_a_revocation_does_not_bring_the_token_back() -> None:
    directory, token_id, _ = _directory_with(None)
    directory.apply(token_id.encode(), None)  # revoked
    late = AdminTokenUsed(event_time=T0, token_id=token_id)
    directory.apply(used_key(token_id), encode(late))
    assert token_id not in directory and directory.listing() == []


@pytest.mark.kafka
async def test_operators_manage_every_token_and_tenant_admins_their_own(admin: Admin) -> None:
    await admin.tenant("acme")
    await admin.tenant("beta")
    made = await admin.http.post("/v1/tokens", headers=admin.operator,
                                 json={"tenant_id": "acme", "label": "helpdesk"})  # fmt: skip
    assert made.status_code == 201, made.text
    acme = {"Authorization": f"Bearer {made.json()['token']}"}
    acme_id = made.json()["token_id"]
    beta = await admin.token("beta")
    assert (await admin.http.get("/v1/tenants/acme", headers=acme)).status_code == 200

    listed = (await admin.http.get("/v1/tokens", headers=admin.operator)).json()["items"]
    mine = next(t for t in listed if t["token_id"] == acme_id)
    assert mine["tenant_id"] == "acme" and mine["label"] == "helpdesk"
    assert mine["last_used"] is not None, "a use shows in the list"
    assert set(mine) == {"token_id", "tenant_id", "label", "created", "last_used"}  # no secret
    own = (await admin.http.get("/v1/tokens", headers=acme)).json()["items"]
    assert {t["tenant_id"] for t in own} == {"acme"}
    refused = await admin.http.get("/v1/tokens", params={"tenant": "beta"}, headers=acme)
    assert refused.status_code == 403
    for method, path in (("post", "/v1/tokens"), ("post", f"/v1/tokens/{acme_id}/rotate")):
        answer = await admin.http.request(method, path, headers=acme, json={})
        assert answer.status_code == 403, (path, answer.text)
    operator_id = admin.operator["Authorization"].split("_")[1]
    beta_id = beta["Authorization"].split("_")[1]
    for other in (operator_id, beta_id):  # an operator's token, another tenant's
        answer = await admin.http.delete(f"/v1/tokens/{other}", headers=acme)
        assert answer.status_code == 403, answer.text

    rotated = await admin.http.post(f"/v1/tokens/{acme_id}/rotate", headers=admin.operator)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["token_id"] == acme_id
    fresh = {"Authorization": f"Bearer {rotated.json()['token']}"}
    assert (await admin.http.get("/v1/tenants/acme", headers=acme)).status_code == 401
    assert (await admin.http.get("/v1/tenants/acme", headers=fresh)).status_code == 200

    revoked = await admin.http.delete(f"/v1/tokens/{acme_id}", headers=fresh)  # its own tenant
    assert revoked.status_code == 200, revoked.text
    assert (await admin.http.get("/v1/tenants/acme", headers=fresh)).status_code == 401
    gone = await admin.http.delete(f"/v1/tokens/{acme_id}", headers=admin.operator)
    assert gone.status_code == 404
