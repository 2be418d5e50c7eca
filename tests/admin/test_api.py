"""The admin API against real Kafka and chDB: operators, tenant admins, isolation, errors."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from smtp_discovery.jobs.render import Presentation
from smtp_discovery.jobs.reports import Kind, Tenant, build
from smtp_discovery.jobs.send import Mailer, compose
from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.schemas.calendar import Week
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.commands import CommandResult
from smtp_discovery.schemas.mail import (
    CalloutVerified,
    CatchAllChecked,
    OutboundSent,
    RecipientDelivered,
)
from smtp_discovery.schemas.state import (
    AddressRecord,
    AddressStateSnapshot,
    AddressStatus,
    StateChange,
    UserRole,
)
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    COMMAND_RESULTS,
    COMMANDS,
    MAIL,
    STATE_CHANGES,
)
from smtp_discovery.streams.rules import expiry_deadline
from tests.admin.conftest import Admin
from tests.smtp_discovery.kafka_helpers import consume_until

pytestmark = pytest.mark.kafka


async def test_operators_manage_tenants_with_validation(admin: Admin) -> None:
    acme = await admin.tenant(
        "acme",
        destinations=[{"host": "mx.acme.example", "priority": 5}],
        outbound_ranges=["192.0.2.0/24"],
    )
    assert acme["effective_settings"]["inbound_detection_threshold"] == 3
    again = await admin.http.post(
        "/v1/tenants", json={"tenant_id": "acme", "name": "A"}, headers=admin.operator
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "tenant_exists")
    taken = await admin.http.post(
        "/v1/tenants",
        json={"tenant_id": "beta", "name": "B", "domains": ["ACME.example"]},
        headers=admin.operator,
    )
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "domain_taken")
    bad = await admin.http.post(
        "/v1/tenants",
        json={"tenant_id": "gamma", "name": "G", "domains": ["not a domain"]},
        headers=admin.operator,
    )
    assert bad.status_code == 422 and "domains" in bad.json()["error"]["message"]
    changed = await admin.http.put(
        "/v1/tenants/acme",
        headers=admin.operator,
        json={"name": "Acme Ltd", "domains": ["acme.example"]},
    )
    assert changed.json()["name"] == "Acme Ltd"
    listed = await admin.http.get("/v1/tenants", headers=admin.operator)
    assert [t["tenant_id"] for t in listed.json()["items"]] == ["acme"]


async def test_the_tenant_list_comes_a_page_at_a_time_and_searches(admin: Admin) -> None:
    for tenant_id, name, domain in [("acme", "Acme", "acme.example"), ("beta", "Beta", "b.example"),
                                    ("gamma", "Gamma Mail", "xn--bcher-kva.example"),
                                    ("delta", "Delta", "delta.example")]:  # fmt: skip
        await admin.tenant(tenant_id, name=name, domains=[domain])

    async def ids(headers: dict[str, str], **params: Any) -> tuple[int, list[str]]:
        body = (await admin.http.get("/v1/tenants", params=params, headers=headers)).json()
        return body["total"], [t["tenant_id"] for t in body["items"]]

    everyone = admin.operator
    assert await ids(everyone, per_page=3) == (4, ["acme", "beta", "delta"])
    assert await ids(everyone, per_page=3, page=2) == (4, ["gamma"])
    assert await ids(everyone, per_page=3, page=3) == (4, [])
    assert await ids(everyone, q="MAIL") == (1, ["gamma"])  # the name, any case
    assert await ids(everyone, q="bücher") == (1, ["gamma"])  # a domain, as it reads
    assert await ids(everyone, q="b.example") == (1, ["beta"])  # a domain
    assert await ids(everyone, q="elt") == (1, ["delta"])  # the id
    beta = await admin.token("beta")
    assert await ids(beta) == (1, ["beta"])
    assert await ids(beta, q="acme") == (0, [])
    too_many = await admin.http.get("/v1/tenants", params={"per_page": 501}, headers=everyone)
    assert too_many.status_code == 422


async def test_a_tenant_token_sees_and_changes_only_its_tenant(admin: Admin) -> None:
    await admin.tenant("acme")
    await admin.tenant("beta")
    acme = await admin.token("acme")
    seen = (await admin.http.get("/v1/tenants", headers=acme)).json()
    assert [t["tenant_id"] for t in seen["items"]] == ["acme"] and seen["total"] == 1
    # Every route with a tenant in its path, straight from the OpenAPI document: a new endpoint
    # is covered the day it is added.
    schema = (await admin.http.get("/openapi.json")).json()
    bodies = {"patch": {"monitor_mode": True}, "post": {"action": "mark_invalid",
              "addresses": ["x@beta.example"]}, "put": {"name": "Beta"}}  # fmt: skip
    checked = 0
    for path, methods in schema["paths"].items():
        if "{tenant_id}" not in path:
            continue
        concrete = path.replace("{tenant_id}", "beta").replace("{command_id}", "abc")
        concrete = concrete.replace("{address}", "x@beta.example").replace("{kind}", "warning")
        for method in methods:
            response = await admin.http.request(
                method.upper(), concrete, json=bodies.get(method), headers=acme
            )
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] in ("other_tenant", "operators_only")
            checked += 1
    assert checked >= 14
    operator_only = [
        ("POST", "/v1/tenants", {"tenant_id": "x", "name": "X"}),
        ("PUT", "/v1/tenants/acme", {"name": "Mine"}),
        ("PUT", "/v1/settings/defaults", {"monitor_mode": True}),
    ]
    for method, path, body in operator_only:
        response = await admin.http.request(method, path, json=body, headers=acme)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "operators_only")
    nobody = await admin.http.get("/v1/tenants")
    forged = await admin.http.get("/v1/tenants", headers={"Authorization": "Bearer sd_0000_x"})
    assert nobody.status_code == forged.status_code == 401


async def test_a_null_resets_a_setting_to_the_level_below_at_both_levels(admin: Admin) -> None:
    """One rule: a provider default reset with null is the built-in vendor value again, a
    tenant override reset with null is the provider default again; ``overridden`` says this
    level set the value."""
    await admin.tenant("acme")
    acme = await admin.token("acme")
    put = admin.http.put
    set_ = await put("/v1/settings/defaults", json={"dha_max_rejections": 50},
                     headers=admin.operator)  # fmt: skip
    assert set_.status_code == 200, set_.text
    assert set_.json()["dha_max_rejections"]["value"] == 50
    assert set_.json()["dha_max_rejections"]["overridden"] is True
    assert set_.json()["dha_window_s"]["overridden"] is False
    tenant_view = await admin.http.patch(
        "/v1/tenants/acme/settings", json={"dha_max_rejections": 9}, headers=acme
    )
    assert tenant_view.json()["dha_max_rejections"] | {"description": ""} == {
        "value": 9, "overridden": True, "recommended": None, "description": ""}  # fmt: skip
    reset_tenant = await admin.http.patch(
        "/v1/tenants/acme/settings", json={"dha_max_rejections": None}, headers=acme
    )
    assert reset_tenant.json()["dha_max_rejections"]["value"] == 50  # the provider's default
    assert reset_tenant.json()["dha_max_rejections"]["overridden"] is False
    reset = await put("/v1/settings/defaults", json={"dha_max_rejections": None},
                      headers=admin.operator)  # fmt: skip
    assert reset.status_code == 200, reset.text
    assert reset.json()["dha_max_rejections"] | {"description": ""} == {
        "value": 20, "overridden": False, "recommended": None, "description": ""}  # fmt: skip
    shown = await admin.http.get("/v1/settings/defaults", headers=admin.operator)
    assert not any(setting["overridden"] for setting in shown.json().values())
    tenant_now = await admin.http.get("/v1/tenants/acme/settings", headers=acme)
    assert tenant_now.json()["dha_max_rejections"]["value"] == 20
    unknown = await put("/v1/settings/defaults", json={"colour": None}, headers=admin.operator)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["message"] == "unknown setting(s): colour"


async def test_settings_overrides_follow_the_provider_defaults_until_set(admin: Admin) -> None:
    await admin.tenant("acme")
    acme = await admin.token("acme")
    bad = await admin.http.patch(
        "/v1/tenants/acme/settings", json={"notices_before_expiry": 0}, headers=acme
    )
    assert bad.status_code == 422 and "notices_before_expiry" in bad.json()["error"]["message"]
    unknown = await admin.http.patch("/v1/tenants/acme/settings", json={"colour": 1}, headers=acme)
    assert unknown.json()["error"]["message"] == "unknown setting(s): colour"
    ok = await admin.http.patch(
        "/v1/tenants/acme/settings", json={"discovery_enabled": True}, headers=acme
    )
    view = ok.json()
    assert view["discovery_enabled"] == {
        "value": True,
        "overridden": True,
        "recommended": None,
        "description": view["discovery_enabled"]["description"],
    }
    assert view["auto_add_detected_aliases"]["recommended"] is True
    await admin.http.put(
        "/v1/settings/defaults", json={"inbound_detection_threshold": 5}, headers=admin.operator
    )
    after = (await admin.http.get("/v1/tenants/acme/settings", headers=acme)).json()
    assert after["inbound_detection_threshold"]["value"] == 5
    reset = await admin.http.patch(
        "/v1/tenants/acme/settings", json={"discovery_enabled": None}, headers=acme
    )
    assert reset.json()["discovery_enabled"] == {
        **view["discovery_enabled"],
        "value": False,
        "overridden": False,
    }


def _snapshot(address: str, status: AddressStatus, at: datetime) -> AddressStateSnapshot:
    record = AddressRecord(
        tenant_id="acme",
        address=address,
        status=status,
        status_since=at,
        status_reason="threshold",
        discovered_at=at,
        first_name="Ann" if "ann" in address else "",
    )
    return AddressStateSnapshot(tenant_id="acme", address=address, event_time=at, record=record)


async def test_writes_made_on_a_stale_read_are_refused_and_change_nothing(admin: Admin) -> None:
    await admin.tenant("acme")
    acme = await admin.token("acme")
    read = await admin.http.get("/v1/tenants/acme", headers=admin.operator)
    etag = read.headers["ETag"]
    assert etag == f'"{read.json()["revision"]}"'
    body = {"name": "Acme Ltd", "domains": ["acme.example"]}
    first = await admin.http.put(
        "/v1/tenants/acme", json=body, headers={**admin.operator, "If-Match": etag}
    )
    assert first.status_code == 200 and first.headers["ETag"] != etag
    stale = await admin.http.put(
        "/v1/tenants/acme",
        json={**body, "name": "Acme Old"},
        headers={**admin.operator, "If-Match": etag},
    )
    assert (stale.status_code, stale.json()["error"]["code"]) == (412, "changed_meanwhile")
    now = await admin.http.get("/v1/tenants/acme", headers=admin.operator)
    assert (now.json()["name"], now.headers["ETag"]) == ("Acme Ltd", first.headers["ETag"])

    # The settings carry the tenant's revision: an edit on a stale form is refused too.
    form = await admin.http.get("/v1/tenants/acme/settings", headers=acme)
    tag = form.headers["ETag"]
    ok = await admin.http.patch("/v1/tenants/acme/settings", json={"discovery_enabled": True},
                                headers={**acme, "If-Match": tag})  # fmt: skip
    assert ok.status_code == 200
    late = await admin.http.patch("/v1/tenants/acme/settings", json={"discovery_enabled": False},
                                  headers={**acme, "If-Match": tag})  # fmt: skip
    assert late.status_code == 412
    current = await admin.http.get("/v1/tenants/acme/settings", headers=acme)
    assert current.json()["discovery_enabled"]["value"] is True
    star = await admin.http.patch("/v1/tenants/acme/settings", json={"discovery_enabled": False},
                                  headers={**acme, "If-Match": "*"})  # fmt: skip
    assert star.status_code == 200 and star.json()["discovery_enabled"]["value"] is False

    # Without If-Match, edits of different settings made at once all survive: each is
    # merged into the version the one before it wrote.
    changes = [{"inbound_detection_threshold": 4}, {"notices_before_expiry": 2},
               {"detection_period_days": 5}, {"auto_add_outbound_users": True}]  # fmt: skip
    answers = await asyncio.gather(
        *(admin.http.patch("/v1/tenants/acme/settings", json=c, headers=acme) for c in changes)
    )
    assert [a.status_code for a in answers] == [200] * 4
    merged = (await admin.http.get("/v1/tenants/acme", headers=admin.operator)).json()
    expected = {"discovery_enabled": False}
    for c in changes:
        expected.update(c)
    assert merged["settings"] == expected

    defaults = await admin.http.get("/v1/settings/defaults", headers=admin.operator)
    d_tag = defaults.headers["ETag"]
    set_ = await admin.http.put("/v1/settings/defaults", json={"inbound_detection_threshold": 6},
                                headers={**admin.operator, "If-Match": d_tag})  # fmt: skip
    assert set_.status_code == 200 and set_.headers["ETag"] != d_tag
    again = await admin.http.put("/v1/settings/defaults", json={"inbound_detection_threshold": 7},
                                 headers={**admin.operator, "If-Match": d_tag})  # fmt: skip
    assert again.status_code == 412
    kept = await admin.http.get("/v1/settings/defaults", headers=admin.operator)
    assert kept.json()["inbound_detection_threshold"]["value"] == 6


async def test_the_discovered_list_filters_sorts_pages_and_shows_notices(admin: Admin) -> None:
    await admin.tenant("acme")
    now = datetime.now(UTC).replace(microsecond=0)
    admin.history.add(
        ADDRESS_STATE,
        *[
            _snapshot(f"user{i}@acme.example", AddressStatus.DISCOVERED, now - timedelta(days=i))
            for i in range(5)
        ],
        _snapshot("old@acme.example", AddressStatus.DISCOVERED, now - timedelta(weeks=5)),
        _snapshot("ann@acme.example", AddressStatus.USER, now),
        _snapshot("gone@acme.example", AddressStatus.INVALID, now),
    )
    admin.history.add(MAIL, *_mail(now))
    acme = await admin.token("acme")
    page = (
        await admin.http.get(
            "/v1/tenants/acme/discovered?per_page=2&sort=address&order=asc", headers=acme
        )
    ).json()
    assert page["total"] == 5 and [i["address"] for i in page["items"]] == [
        "user0@acme.example",
        "user1@acme.example",
    ]
    assert page["items"][0]["notices_left"] in (3, 4) and page["items"][0]["expires_at"]
    found = (await admin.http.get("/v1/tenants/acme/discovered?q=USER3", headers=acme)).json()
    assert [i["address"] for i in found["items"]] == ["user3@acme.example"]
    wide = (await admin.http.get("/v1/tenants/acme/discovered?weeks=6", headers=acme)).json()
    assert wide["total"] == 6
    invalid = (await admin.http.get("/v1/tenants/acme/invalid", headers=acme)).json()
    assert [i["address"] for i in invalid["items"]] == ["gone@acme.example"]
    people = (await admin.http.get("/v1/tenants/acme/users?q=ann", headers=acme)).json()
    assert [p["address"] for p in people] == ["ann@acme.example"]
    bad = await admin.http.get("/v1/tenants/acme/discovered?sort=nope&per_page=0", headers=acme)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    # First and last seen and the counts: the tenant's mail events about each address.
    listed = (await admin.http.get("/v1/tenants/acme/discovered?sort=address&order=asc",
                                   headers=acme)).json()["items"]  # fmt: skip
    seen = {i["address"].split("@")[0]: (_at(i["first_seen"]), _at(i["last_seen"]),
                                         i["messages"], i["clean_messages"])
            for i in listed}  # fmt: skip
    h = timedelta(hours=1)
    assert seen == {
        "user0": (now - 3 * h, now - 2 * h, 2, 1),
        "user1": (now - timedelta(days=30), now - h, 3, 3),
        "user2": (None, None, 0, 0),
        "user3": (None, None, 0, 0),
        "user4": (now - timedelta(days=4), now - timedelta(days=4), 1, 0),
    }
    for sort, order, expected in (
        ("messages", "desc", ["user1", "user0", "user4", "user2", "user3"]),
        ("last_seen", "desc", ["user1", "user0", "user4", "user2", "user3"]),
        ("last_seen", "asc", ["user4", "user0", "user1", "user2", "user3"]),
    ):
        ordered = (await admin.http.get(f"/v1/tenants/acme/discovered?sort={sort}&order={order}",
                                        headers=acme)).json()["items"]  # fmt: skip
        assert [i["address"].split("@")[0] for i in ordered] == expected, (sort, order)


def _account(tenant_id: str, address: str, status: AddressStatus, at: datetime,
             **fields: Any) -> AddressStateSnapshot:  # fmt: skip
    record = AddressRecord(tenant_id=tenant_id, address=address, status=status, status_since=at,
                           status_reason="admin:create_user", **fields)  # fmt: skip
    return AddressStateSnapshot(tenant_id=tenant_id, address=address, event_time=at, record=record)


async def test_the_users_list_pages_searches_filters_and_keeps_to_its_tenant(admin: Admin) -> None:
    await admin.tenant("acme", domains=["acme.example", "köln.example"])
    await admin.tenant("beta")
    now = datetime.now(UTC).replace(microsecond=0)
    user, alias = AddressStatus.USER, AddressStatus.ALIAS
    admin.history.add(
        ADDRESS_STATE,
        _account("acme", "ann@acme.example", user, now, role=UserRole.END_USER, first_name="Ann",
                 surname="Lee", aliases=("al@acme.example",)),
        _account("acme", "al@acme.example", alias, now, primary="ann@acme.example"),
        _account("acme", "info@acme.example", AddressStatus.FUNCTIONAL, now,
                 first_name="Info Desk"),
        _account("acme", "jörg@köln.example", user, now - timedelta(days=3)),
        *(_account("acme", f"u{i}@acme.example", user, now) for i in range(6)),
        _account("acme", "new@acme.example", AddressStatus.DISCOVERED, now),
        _account("acme", "bad@acme.example", AddressStatus.INVALID, now),
        _account("beta", "bob@beta.example", user, now),
    )  # fmt: skip
    acme, beta = await admin.token("acme"), await admin.token("beta")

    async def listed(tenant_id: str = "acme", headers: dict[str, str] = acme,
                     **params: Any) -> tuple[int, list[str]]:  # fmt: skip
        response = await admin.http.get(f"/v1/tenants/{tenant_id}/accounts", params=params,
                                        headers=headers)  # fmt: skip
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["page"], body["per_page"]) == (params.get("page", 1),
                                                    params.get("per_page", 50))  # fmt: skip
        return body["total"], [item["address"] for item in body["items"]]

    first = ["al@acme.example", "ann@acme.example", "info@acme.example", "jörg@köln.example"]
    assert await listed(per_page=4) == (10, first)
    assert await listed(per_page=4, page=3) == (10, ["u4@acme.example", "u5@acme.example"])
    assert await listed(per_page=4, page=4) == (0, [])
    items = (await admin.http.get("/v1/tenants/acme/accounts?per_page=3",
                                  headers=acme)).json()["items"]  # fmt: skip
    al, ann, info = ({k: v for k, v in item.items() if k != "since"} for item in items)
    assert ann == {"address": "ann@acme.example", "status": "user", "role": "end_user",
                   "first_name": "Ann", "surname": "Lee", "primary": None,
                   "aliases": ["al@acme.example"], "reason": "admin:create_user"}  # fmt: skip
    assert (al["status"], al["primary"], al["role"]) == ("alias", "ann@acme.example", None)
    assert (info["status"], info["first_name"], info["role"]) == ("functional", "Info Desk", None)
    assert _at(items[1]["since"]) == now
    assert await listed(q="ann lee") == (1, ["ann@acme.example"])  # a name
    assert await listed(q="ANN@") == (2, ["al@acme.example", "ann@acme.example"])  # its alias
    assert await listed(q="xn--kln-sna") == (1, ["jörg@köln.example"])  # an A-label
    assert await listed(status="alias") == (1, ["al@acme.example"])
    assert await listed(status="functional", q="desk") == (1, ["info@acme.example"])
    assert await listed(status="user", per_page=2) == (8, ["ann@acme.example", "jörg@köln.example"])
    for bad in ({"status": "discovered"}, {"per_page": 501}, {"page": 0}, {"q": "x" * 201}):
        refused = await admin.http.get("/v1/tenants/acme/accounts", params=bad, headers=acme)
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_request")
    # One tenant's token never reads another's list; each reads its own.
    other = await admin.http.get("/v1/tenants/acme/accounts", headers=beta)
    assert (other.status_code, other.json()["error"]["code"]) == (403, "other_tenant")
    assert "ann" not in other.text
    assert await listed("beta", beta) == (1, ["bob@beta.example"])
    assert await listed("beta", beta, q="ann") == (0, [])
    assert await listed("beta", admin.operator) == (1, ["bob@beta.example"])
    nobody = await admin.http.get("/v1/tenants/nobody/accounts", headers=admin.operator)
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (404, "unknown_tenant")
    # The typeahead the Discovered page uses answers as before: a plain list of users and
    # functional accounts.
    typeahead = await admin.http.get("/v1/tenants/acme/users?q=ann", headers=acme)
    ann_only = {"address": "ann@acme.example", "first_name": "Ann", "surname": "Lee",
                "status": "user", "role": "end_user"}  # fmt: skip
    assert typeahead.json() == [ann_only]
    first_two = (await admin.http.get("/v1/tenants/acme/users?limit=2", headers=acme)).json()
    assert [u["address"] for u in first_two] == ["ann@acme.example", "info@acme.example"]


async def test_the_history_counts_every_series_the_overview_draws(admin: Admin) -> None:
    await admin.tenant("acme")
    acme = await admin.token("acme")
    now = datetime.now(UTC)
    old = now - timedelta(days=60)
    change = {"tenant_id": "acme", "reason": "admin:create_user", "version": 2,
              "from_status": AddressStatus.DISCOVERED}  # fmt: skip
    admin.history.add(
        STATE_CHANGES,
        StateChange(**change, address="ann@acme.example", event_time=now,
                    to_status=AddressStatus.USER),
        StateChange(**change, address="old@acme.example", event_time=old,
                    to_status=AddressStatus.INVALID),
    )  # fmt: skip
    admin.history.add(
        MAIL,
        RecipientDelivered(tenant_id="acme", address="ann@acme.example", event_time=now,
                           verdict="clean", message_id="m1", client_ip="192.0.2.1"),
    )  # fmt: skip
    month = (await admin.http.get("/v1/tenants/acme/history", headers=acme)).json()
    (today,) = month
    assert today["day"] == now.date().isoformat()
    drawn = ("new_pending", "new_discovered", "new_users", "new_aliases", "new_invalid", "messages")
    assert {key: today[key] for key in drawn} == {
        "new_pending": 0, "new_discovered": 0, "new_users": 1, "new_aliases": 0,
        "new_invalid": 0, "messages": 1}  # fmt: skip
    quarter = (await admin.http.get("/v1/tenants/acme/history?days=90", headers=acme)).json()
    assert [(d["day"], d["new_invalid"]) for d in quarter] == [
        (old.date().isoformat(), 1),
        (now.date().isoformat(), 0),
    ]
    beta = await admin.token("beta")
    other = await admin.http.get("/v1/tenants/acme/history", headers=beta)
    assert other.status_code == 403


async def test_the_worker_the_console_and_the_warning_report_agree_on_expiry_and_notices(
    admin: Admin,
) -> None:
    """Discovered on Tue 1 Dec 2026 with 3 notices before expiry. The warning report covering
    week 49 goes out on Thu 10 Dec; at that moment the Discovered list, the report and the
    worker's timer say the same expiry and the same notices left."""
    await admin.tenant("acme", settings={"notices_before_expiry": 3})
    found = datetime(2026, 12, 1, 10, tzinfo=UTC)
    admin.history.add(ADDRESS_STATE, _snapshot("new@acme.example", AddressStatus.DISCOVERED, found))
    acme = await admin.token("acme")
    sent = admin.ctx.schedule.slot(Week.parse("2026-W50"))
    assert sent == datetime(2026, 12, 10, 9, tzinfo=UTC)
    settings = admin.ctx.tenants.settings("acme")
    assert settings is not None
    worker = expiry_deadline(_snapshot("x@acme.example", AddressStatus.DISCOVERED, found).record,
                             settings)  # fmt: skip
    for moment, left in ((found, 3), (sent, 2), (sent + timedelta(seconds=1), 1)):
        admin.ctx.clock = ManualClock(moment)
        listed = (await admin.http.get("/v1/tenants/acme/discovered?weeks=52", headers=acme)).json()
        (item,) = listed["items"]
        assert (_at(item["expires_at"]), item["notices_left"]) == (worker, left), moment
    report = await admin.http.get("/v1/tenants/acme/reports/warning?week=2026-W49&format=json",
                                  headers=acme)  # fmt: skip
    (row,) = report.json()["rows"]
    assert row["notices left"] == 2  # as the list said at the moment the report went out
    assert worker is not None and row["expires on"] == worker.date().isoformat()


async def test_the_report_preview_is_the_mail_the_jobs_send(
    admin: Admin,
) -> None:
    """format=html and format=text are the two parts of the mail the jobs send at the same
    moment, byte for byte (one function renders each), with the provider's name and the link to
    the console from the same settings; format=json carries the summary."""
    shown_as = Presentation("Example Mail Protect", "https://discovery.example.net/console")
    admin.ctx.presentation = shown_as
    name = 'Acme <script>alert("x")</script>'
    await admin.tenant("acme", name=name, settings={"notices_before_expiry": 3})
    found = datetime(2026, 12, 1, 10, tzinfo=UTC)
    admin.history.add(ADDRESS_STATE, _snapshot("new@acme.example", AddressStatus.DISCOVERED, found))
    moment = datetime(2026, 12, 10, 9, 30, tzinfo=UTC)  # Thursday: the reports of week 49
    admin.ctx.clock = ManualClock(moment)
    acme = await admin.token("acme")
    shown = {}
    for format in ("html", "text", "json"):
        response = await admin.http.get(f"/v1/tenants/acme/reports/warning?format={format}",
                                        headers=acme)  # fmt: skip
        assert response.status_code == 200, response.text
        shown[format] = response
    assert shown["html"].headers["content-type"] == "text/html; charset=utf-8"
    assert shown["text"].headers["content-type"] == "text/plain; charset=utf-8"

    config = admin.ctx.tenants.tenant("acme")
    settings = admin.ctx.tenants.settings("acme")
    assert config is not None and settings is not None
    tenant = Tenant("acme", config.name, config.tech_contact or "", "", settings)
    report = build(admin.history.client, admin.history.layout, tenant, Kind.WARNING,
                   Week.parse("2026-W49"), admin.ctx.schedule)  # fmt: skip
    mailer = Mailer("127.0.0.1", 25, "reports@filter.example.net", "gw.example.net",
                    presentation=shown_as)  # fmt: skip
    plain, rich = compose(report, mailer, moment).iter_parts()
    assert shown["html"].text == rich.get_content()
    assert shown["text"].text == plain.get_content()

    html = shown["html"].text
    assert "Example Mail Protect" in html and "<script" not in html
    assert 'href="https://discovery.example.net/console/discovered?tenant=acme&amp;weeks=4"' in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    body = shown["json"].json()
    assert body["week"] == "2026-W49"
    assert body["summary"] == {"waiting": 1, "expire_before_next_report": 0,
                               "earliest_expiry": "2026-12-23"}  # fmt: skip


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _mail(now: datetime) -> list[Any]:
    """Mail events about the discovered addresses (user2: only a catch-all check; user3: only
    another tenant's events), for the Discovered list's first/last seen and counts."""
    h = timedelta(hours=1)
    ip = "192.0.2.1"

    def delivered(address: str, at: datetime, verdict: str, tenant: str = "acme") -> Any:
        return RecipientDelivered(
            tenant_id=tenant,
            address=address,
            event_time=at,
            verdict=verdict,
            message_id=f"m-{address}-{at}",
            client_ip=ip,
        )

    return [
        delivered("User0@acme.example", now - 3 * h, "clean"),
        delivered("user0@acme.example", now - 2 * h, "not_clean"),
        CalloutVerified(tenant_id="acme", address="user1@acme.example",
                        event_time=now - timedelta(days=30), destination="mx:25", reply_code=250),
        *(delivered("user1@acme.example", now - timedelta(days=1, hours=i), "clean")
          for i in range(3)),
        OutboundSent(tenant_id="acme", address="user1@acme.example", event_time=now - h,
                     message_id="out-1", client_ip=ip),
        CatchAllChecked(tenant_id="acme", address="user2@acme.example", event_time=now,
                        destination="mx:25", catch_all=True),
        delivered("user3@acme.example", now - h, "clean", tenant="beta"),
        delivered("user4@acme.example", now - timedelta(days=4), "not_clean"),
    ]  # fmt: skip


async def test_actions_become_commands_and_report_their_results(admin: Admin) -> None:
    await admin.tenant("acme")
    acme = await admin.token("acme")
    response = await admin.http.post(
        "/v1/tenants/acme/actions",
        headers=acme,
        json={
            "action": "create_user",
            "addresses": ["Ann@acme.example", "bob@acme.example"],
            "users": [{"address": "ann@acme.example", "first_name": "Ann", "surname": "Lee"}],
        },
    )
    assert response.status_code == 202
    ids = [c["command_id"] for c in response.json()["commands"]]
    records = await consume_until(admin.bootstrap, admin.ctx.names(COMMANDS), 2)
    commands = {c.event_id: c for c in (decode(COMMANDS, r.value) for r in records)}
    assert set(commands) == set(ids)
    ann = commands[ids[0]]
    assert (ann.type, ann.first_name, ann.surname, ann.actor.startswith("token:")) == (
        "create_user",
        "Ann",
        "Lee",
        True,
    )
    assert records[0].key == b"acme:ann" or records[1].key == b"acme:ann"
    status = await admin.http.get(f"/v1/tenants/acme/commands/{ids[0]}", headers=acme)
    assert status.json()["status"] == "pending"
    result = CommandResult(
        tenant_id="acme",
        address="Ann@acme.example",
        event_time=ann.event_time,
        command_id=ids[0],
        command_type="create_user",
        outcome="rejected",
        reason_code="not_discovered",
        message="Ann is not discovered",
    )
    await admin.ctx._producer.send_and_wait(
        admin.ctx.names(COMMAND_RESULTS), encode(result), key=result.kafka_key()
    )
    deadline = asyncio.get_running_loop().time() + 30
    while (
        status := (await admin.http.get(f"/v1/tenants/acme/commands/{ids[0]}", headers=acme)).json()
    )["status"] == "pending":
        assert asyncio.get_running_loop().time() < deadline, "the result never arrived"
        await asyncio.sleep(0.05)
    assert status == {
        "command_id": ids[0],
        "status": "rejected",
        "address": "Ann@acme.example",
        "reason_code": "not_discovered",
        "message": "Ann is not discovered",
    }
    foreign = await admin.http.post(
        "/v1/tenants/acme/actions",
        headers=acme,
        json={"action": "mark_invalid", "addresses": ["x@beta.example"]},
    )
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (422, "foreign_domain")
    alias = await admin.http.post(
        "/v1/tenants/acme/actions",
        headers=acme,
        json={"action": "add_alias", "addresses": ["a@acme.example"]},
    )
    assert alias.json()["error"]["code"] == "primary_required"


async def test_users_import_reports_each_bad_row(admin: Admin) -> None:
    await admin.tenant("acme")
    acme = await admin.token("acme")
    csv_text = (
        "address,first_name,surname,role\nann@acme.example,Ann,Lee,end_user\n"
        "bad address,,,\nzed@other.example,,,\ncy@acme.example,Cy,,boss\n"
    )
    response = await admin.http.post(
        "/v1/tenants/acme/users/import",
        content=csv_text,
        headers={**acme, "Content-Type": "text/csv"},
    )
    body = response.json()
    assert [a["address"] for a in body["accepted"]] == ["ann@acme.example"]
    assert [e["row"] for e in body["errors"]] == [3, 4, 5]
    assert "role" in body["errors"][2]["message"]


async def test_an_oversized_import_is_refused_before_it_is_parsed(admin: Admin) -> None:
    await admin.tenant("acme")
    acme = await admin.token("acme")
    huge = b"address\n" + b"x@acme.example\n" * (21 * 1024 * 1024 // 15)
    response = await admin.http.post(
        "/v1/tenants/acme/users/import", content=huge, headers={**acme, "Content-Type": "text/csv"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")


_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _timestamps(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _timestamps(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _timestamps(item, f"{path}[{i}]")
    elif isinstance(value, str) and _TIMESTAMP.match(value):
        yield path, value


async def test_every_timestamp_the_api_returns_carries_its_zone(admin: Admin) -> None:
    """Walk every GET route of the OpenAPI document with a tenant that has data in each list."""
    await admin.tenant("acme")
    now = datetime.now(UTC)
    admin.history.add(
        ADDRESS_STATE,
        _snapshot("new@acme.example", AddressStatus.DISCOVERED, now - timedelta(days=1)),
        _snapshot("ann@acme.example", AddressStatus.USER, now),
        _snapshot("gone@acme.example", AddressStatus.INVALID, now),
    )
    admin.history.add(
        MAIL,
        RecipientDelivered(tenant_id="acme", address="new@acme.example", event_time=now,
                           verdict="clean", message_id="m1", client_ip="192.0.2.1"),
    )  # fmt: skip
    spec = (await admin.http.get("/openapi.json")).json()
    values = {"tenant_id": "acme", "kind": "warning"}
    checked: list[str] = []
    for template, operations in spec["paths"].items():
        if "get" not in operations:
            continue
        names = re.findall(r"{(\w+)}", template)
        if any(name not in values for name in names):
            continue  # one object by id (a command, an address): covered by the lists
        path = template.format(**values)
        for query in ("", "?format=csv") if "reports" in path else ("",):
            response = await admin.http.get(path + query, headers=admin.operator)
            assert response.status_code == 200, (path, response.text)
            if query:
                rows = list(csv.reader(io.StringIO(response.text)))
                cells = [(f"{path}[{r}][{c}]", cell) for r, row in enumerate(rows)
                         for c, cell in enumerate(row) if _TIMESTAMP.match(cell)]  # fmt: skip
            else:
                cells = list(_timestamps(response.json()))
            for where, text in cells:
                zoned = text.endswith(" UTC") or datetime.fromisoformat(text).tzinfo is not None
                assert zoned, f"{where}: {text!r} has no zone"
                checked.append(where)
    assert any("first_seen" in where for where in checked), checked
    assert any("since" in where for where in checked), checked


async def test_an_international_address_is_shown_in_u_labels_and_found_by_either_form(
    admin: Admin,
) -> None:
    await admin.tenant("acme", domains=["acme.example", "köln.example"])
    now = datetime.now(UTC)
    admin.history.add(ADDRESS_STATE, _snapshot("jörg@köln.example", AddressStatus.DISCOVERED, now))
    for q in ("jörg@köln", "xn--kln-sna", "JÖRG@XN--KLN-SNA.example"):
        found = (await admin.http.get(f"/v1/tenants/acme/discovered?q={q}",
                                      headers=admin.operator)).json()  # fmt: skip
        assert [i["address"] for i in found["items"]] == ["jörg@köln.example"], q


async def test_tenant_data_is_never_cached_sniffed_or_run(admin: Admin) -> None:
    await admin.tenant("acme")
    for path in ("/v1/tenants", "/v1/tenants/acme/discovered",
                 "/v1/tenants/acme/reports/warning?format=html",
                 "/v1/tenants/acme/reports/warning?format=csv", "/v1/tenants/nobody"):  # fmt: skip
        response = await admin.http.get(path, headers=admin.operator)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy, path
    csv_download = await admin.http.get("/v1/tenants/acme/reports/warning?format=csv",
                                        headers=admin.operator)  # fmt: skip
    assert csv_download.headers["content-disposition"].startswith("attachment;")


async def test_the_cdn_docs_page_is_served_only_when_asked_for(admin: Admin) -> None:
    from smtp_discovery.admin.api import create_app

    assert (await admin.http.get("/docs")).status_code == 404
    assert (await admin.http.get("/openapi.json")).status_code == 200
    transport = httpx.ASGITransport(app=create_app(admin.ctx, docs=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as http:
        assert (await http.get("/docs")).status_code == 200
