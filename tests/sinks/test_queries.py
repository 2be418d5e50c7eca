"""Every query of ``sinks.queries`` against the session's embedded ClickHouse (chDB): a history
written through the sink's own columns, the answers each query gives, and never another
tenant's rows."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.mail import CalloutVerified, CatchAllChecked, RecipientDelivered
from smtp_discovery.schemas.state import (
    AddressRecord,
    AddressStateSnapshot,
    AddressStatus,
    StateChange,
    UserRole,
)
from smtp_discovery.schemas.tenant import (
    PROVIDER_DEFAULTS_KEY,
    DiscoverySettings,
    ProviderDefaults,
    TenantConfig,
)
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, STATE_CHANGES, TENANTS
from smtp_discovery.sinks import queries
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from tests.jobs.history import History

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47, Monday to Monday
WEEK_END = datetime(2026, 11, 23, tzinfo=UTC)
IN_WEEK = datetime(2026, 11, 18, 10, tzinfo=UTC)
MAIL_DAY = datetime(2026, 11, 19, 8, tzinfo=UTC)
LONG_AGO = datetime(2026, 11, 1, tzinfo=UTC)
IP = "192.0.2.1"
ANN = "ann@acme.example"


def snapshot(tenant: str, address: str, status: AddressStatus, at: datetime,
             **fields: Any) -> AddressStateSnapshot:  # fmt: skip
    record = AddressRecord(tenant_id=tenant, address=address, status=status, status_since=at,
                           status_reason="threshold",
                           discovered_at=at if status is AddressStatus.DISCOVERED else None,
                           **fields)  # fmt: skip
    return AddressStateSnapshot(tenant_id=tenant, address=address, event_time=at, record=record)


def gone(tenant: str, address: str) -> tuple[bytes, None]:
    """The address-state tombstone of a removed address."""
    return (parse_address(address).record_key(tenant).encode(), None)


def change(tenant: str, address: str, to: AddressStatus, at: datetime, *,
           frm: AddressStatus = AddressStatus.DISCOVERED, reason: str = "threshold",
           primary: str | None = None) -> StateChange:  # fmt: skip
    return StateChange(tenant_id=tenant, address=address, event_time=at, from_status=frm,
                       to_status=to, reason=reason, version=2, primary=primary)  # fmt: skip


def delivered(tenant: str, address: str, at: datetime, verdict: str = "clean") -> Any:
    return RecipientDelivered(tenant_id=tenant, address=address, event_time=at, verdict=verdict,
                              message_id=f"m-{uuid.uuid4().hex}", client_ip=IP)  # fmt: skip


def catch_all(tenant: str, destination: str, at: datetime, accepted: bool) -> CatchAllChecked:
    return CatchAllChecked(tenant_id=tenant, address=f"sd-probe@{tenant}.example", event_time=at,
                           destination=destination, catch_all=accepted)  # fmt: skip


def tenant(tenant_id: str, **settings: Any) -> TenantConfig:
    return TenantConfig(tenant_id=tenant_id, event_time=LONG_AGO, name=tenant_id.title(),
                        tech_contact=f"tech@{tenant_id}.example", settings=settings)  # fmt: skip


def fresh(client: Any) -> History:
    layout = Layout(f"q_{uuid.uuid4().hex[:10]}")
    migrate(client, layout)
    return History(client, layout)


@pytest.fixture(scope="module")
def history(clickhouse: Any) -> History:
    """Two tenants, acme and beta, with rows alike enough that a query missing its tenant
    condition would mix them; read-only for the tests that use it."""
    h = fresh(clickhouse)
    provider = ProviderDefaults(event_time=LONG_AGO,
                                settings=DiscoverySettings(notices_before_expiry=5))  # fmt: skip
    h.add(TENANTS, provider, tenant("acme", inbound_detection_threshold=7), tenant("beta"),
          tenant("left"))  # fmt: skip
    h.add(TENANTS, (b"left", None))
    h.add(
        ADDRESS_STATE,
        snapshot("acme", "disc1@acme.example", AddressStatus.DISCOVERED, NOW - timedelta(days=1)),
        snapshot("acme", "disc2@acme.example", AddressStatus.DISCOVERED, NOW - timedelta(days=2)),
        snapshot("acme", "disc3@bücher.example", AddressStatus.DISCOVERED, NOW - timedelta(days=3)),
        snapshot("acme", "old@acme.example", AddressStatus.DISCOVERED, NOW - timedelta(weeks=5)),
        snapshot("acme", "del@acme.example", AddressStatus.DISCOVERED, NOW - timedelta(days=1)),
        snapshot("acme", "bad@acme.example", AddressStatus.INVALID, NOW),
        snapshot("acme", "bad2@acme.example", AddressStatus.INVALID, NOW - timedelta(days=1)),
        snapshot("acme", "ann@acme.example", AddressStatus.USER, NOW, role=UserRole.END_USER,
                 first_name="Ann", surname="Lee"),
        snapshot("acme", "ops@acme.example", AddressStatus.FUNCTIONAL, NOW),
        snapshot("acme", "al1@acme.example", AddressStatus.ALIAS, NOW, primary="ann@acme.example"),
        snapshot("acme", "al3@acme.example", AddressStatus.USER, NOW, role=UserRole.END_USER),
        snapshot("beta", "other@beta.example", AddressStatus.DISCOVERED, NOW - timedelta(days=1)),
        snapshot("beta", "bad@beta.example", AddressStatus.INVALID, NOW),
        snapshot("beta", "annie@beta.example", AddressStatus.USER, NOW, first_name="Ann"),
    )  # fmt: skip
    h.add(ADDRESS_STATE, gone("acme", "del@acme.example"))
    h.add(
        STATE_CHANGES,
        change("acme", "new@acme.example", AddressStatus.USER, IN_WEEK, reason="admin:create_user"),
        change("acme", "same@acme.example", AddressStatus.USER, IN_WEEK, frm=AddressStatus.USER),
        change("acme", "early@acme.example", AddressStatus.USER, WEEK_START - timedelta(minutes=1)),
        change("acme", "late@acme.example", AddressStatus.USER, WEEK_END),
        change("acme", "first@acme.example", AddressStatus.USER, WEEK_START),
        change("acme", "link@acme2.example", AddressStatus.ALIAS, IN_WEEK,
               reason="alias_detected", primary="ann@acme.example"),
        change("beta", "dee@beta.example", AddressStatus.USER, IN_WEEK),
        # Aliases of ann@acme.example, for an erasure of ann.
        change("acme", "al1@acme.example", AddressStatus.ALIAS, LONG_AGO, primary=ANN),
        change("acme", "al2@acme.example", AddressStatus.ALIAS, LONG_AGO, primary="Ann@acme.example"),  # noqa: E501
        change("acme", "al3@acme.example", AddressStatus.ALIAS, LONG_AGO, primary=ANN),
        change("beta", "al4@beta.example", AddressStatus.ALIAS, LONG_AGO, primary=ANN),
    )  # fmt: skip
    h.add(
        MAIL,
        delivered("acme", "Disc1@acme.example", MAIL_DAY),
        delivered("acme", "disc1@acme.example", MAIL_DAY + timedelta(hours=2)),
        delivered("acme", "disc1@acme.example", MAIL_DAY + timedelta(hours=3), "not_clean"),
        CalloutVerified(tenant_id="acme", address="disc3@bücher.example", event_time=MAIL_DAY,
                        destination="mx:25", reply_code=250),
        delivered("beta", "disc1@acme.example", MAIL_DAY + timedelta(hours=5)),
        delivered("beta", "disc2@acme.example", MAIL_DAY + timedelta(hours=5)),
        catch_all("acme", "mx1.acme.example:25", MAIL_DAY, True),
        catch_all("acme", "mx1.acme.example:25", MAIL_DAY + timedelta(hours=1), True),
        catch_all("acme", "mx2.acme.example:25", MAIL_DAY, True),
        catch_all("acme", "mx2.acme.example:25", MAIL_DAY + timedelta(hours=1), False),
        catch_all("acme", "mx0.acme.example:25", MAIL_DAY, True),
        catch_all("beta", "mx9.beta.example:25", MAIL_DAY, True),
    )  # fmt: skip
    return h


def ask(history: History, query: Any, *args: Any, **kwargs: Any) -> Any:
    return query(history.client, history.layout, *args, **kwargs)


def test_tenant_rows_are_the_live_records_with_their_stored_settings(history: History) -> None:
    rows = {row.tenant_id: row for row in ask(history, queries.tenant_rows)}
    assert set(rows) == {PROVIDER_DEFAULTS_KEY, "acme", "beta"}  # "left" was removed
    assert rows["acme"].settings == {"inbound_detection_threshold": 7}
    assert rows["acme"].name == "Acme" and rows["acme"].tech_contact == "tech@acme.example"
    assert rows["acme"].admin_contact == "" and rows["beta"].settings == {}
    assert rows[PROVIDER_DEFAULTS_KEY].settings["notices_before_expiry"] == 5
    assert DiscoverySettings.model_validate(rows[PROVIDER_DEFAULTS_KEY].settings) == (
        DiscoverySettings(notices_before_expiry=5)
    )


def test_changes_into_a_status_are_the_weeks_by_time_then_address(history: History) -> None:
    users = ask(history, queries.changes_into, "acme", "user", WEEK_START, WEEK_END)
    # Not "same" (it was a user already), "early" or "late" (outside [start, end)), nor beta's.
    assert [(c.address, c.reason, c.event_time) for c in users] == [
        ("first@acme.example", "threshold", WEEK_START),
        ("new@acme.example", "admin:create_user", IN_WEEK),
    ]
    assert users[0].event_time.tzinfo is not None
    (alias,) = ask(history, queries.changes_into, "acme", "alias", WEEK_START, WEEK_END)
    assert (alias.address, alias.primary, alias.role) == (
        "link@acme2.example",
        "ann@acme.example",
        "",
    )
    beta = ask(history, queries.changes_into, "beta", "user", WEEK_START, WEEK_END)
    assert [c.address for c in beta] == ["dee@beta.example"]


def test_the_discovered_list_pages_searches_sorts_and_counts_mail(history: History) -> None:
    def page(**kwargs: Any) -> queries.Page[queries.DiscoveredAddress]:
        asked: dict[str, Any] = {"since": NOW - timedelta(weeks=3), "search": "",
                                 "sort": "address", "order": "asc", "limit": 50, "offset": 0,
                                 **kwargs}  # fmt: skip
        return ask(history, queries.discovered_page, "acme", **asked)

    everything = page()
    # Not old@ (discovered before ``since``), del@ (removed), other statuses or beta's.
    assert everything.total == 3
    assert [r.address for r in everything.rows] == [
        "disc1@acme.example",
        "disc2@acme.example",
        "disc3@bücher.example",
    ]
    disc1, disc2, disc3 = everything.rows
    # Counted from acme's events only, whatever the case of the address in them.
    assert (disc1.first_seen, disc1.last_seen, disc1.messages, disc1.clean_messages) == (
        MAIL_DAY,
        MAIL_DAY + timedelta(hours=3),
        3,
        2,
    )
    assert (disc1.discovered_at, disc1.discovered_reason) == (NOW - timedelta(days=1), "")
    assert (disc2.first_seen, disc2.last_seen, disc2.messages, disc2.clean_messages) == (
        None,
        None,
        0,
        0,
    )
    assert (disc3.first_seen, disc3.messages) == (MAIL_DAY, 0)  # a callout: seen, no message
    assert page(since=NOW - timedelta(weeks=6)).total == 4
    second = page(limit=1, offset=1)
    assert (second.total, [r.address for r in second.rows]) == (3, ["disc2@acme.example"])
    assert page(offset=3) == queries.Page(0, [])  # past the last page: nothing, not even a total
    assert [r.address for r in page(search="DISC2").rows] == ["disc2@acme.example"]
    # An A-label typed finds the address shown in U-labels.
    assert [r.address for r in page(search="xn--bcher-kva").rows] == ["disc3@bücher.example"]
    by_messages = page(sort="messages", order="desc")
    assert [r.address.split("@")[0] for r in by_messages.rows] == ["disc1", "disc2", "disc3"]
    by_discovery = page(sort="discovered_at", order="desc")
    assert [r.address.split("@")[0] for r in by_discovery.rows] == ["disc1", "disc2", "disc3"]
    by_last_seen = page(sort="last_seen", order="asc")
    assert [r.address.split("@")[0] for r in by_last_seen.rows] == ["disc3", "disc1", "disc2"]
    beta = ask(history, queries.discovered_page, "beta", since=NOW - timedelta(weeks=3),
               search="", sort="address", order="asc", limit=50, offset=0)  # fmt: skip
    assert [(r.address, r.messages) for r in beta.rows] == [("other@beta.example", 0)]


def test_the_discovered_list_sorts_only_by_its_columns(history: History) -> None:
    for sort, order in (("address; DROP TABLE x", "asc"), ("address", "asc, 1")):
        with pytest.raises(ValueError):
            ask(history, queries.discovered_page, "acme", since=NOW, search="", sort=sort,
                order=order, limit=1, offset=0)  # fmt: skip


def test_the_invalid_list_pages_and_searches_by_address(history: History) -> None:
    found = ask(history, queries.invalid_page, "acme", search="", limit=50, offset=0)
    assert found.total == 2
    assert [(r.address, r.since, r.reason) for r in found.rows] == [
        ("bad2@acme.example", NOW - timedelta(days=1), "threshold"),
        ("bad@acme.example", NOW, "threshold"),
    ]
    second = ask(history, queries.invalid_page, "acme", search="", limit=1, offset=1)
    assert (second.total, [r.address for r in second.rows]) == (2, ["bad@acme.example"])
    searched = ask(history, queries.invalid_page, "acme", search="BAD2", limit=50, offset=0)
    assert (searched.total, [r.address for r in searched.rows]) == (1, ["bad2@acme.example"])
    beta = ask(history, queries.invalid_page, "beta", search="", limit=50, offset=0)
    assert [r.address for r in beta.rows] == ["bad@beta.example"]


def test_users_match_by_address_or_name(history: History) -> None:
    (ann,) = ask(history, queries.users_matching, "acme", search="ann lee", limit=20)
    assert ann == queries.UserEntry("ann@acme.example", "Ann", "Lee", "user", "end_user")
    everyone = ask(history, queries.users_matching, "acme", search="", limit=20)
    # Users and functional accounts only (not the alias, the discovered or the invalid ones).
    assert [(u.address, u.status, u.role) for u in everyone] == [
        ("al3@acme.example", "user", "end_user"),
        ("ann@acme.example", "user", "end_user"),
        ("ops@acme.example", "functional", ""),
    ]
    assert len(ask(history, queries.users_matching, "acme", search="", limit=2)) == 2
    beta = ask(history, queries.users_matching, "beta", search="ann", limit=20)
    assert [u.address for u in beta] == ["annie@beta.example"]


def test_the_users_list_pages_searches_filters_and_keeps_to_its_tenant(
    history: History,
) -> None:
    h = fresh(history.client)
    user, functional, alias = AddressStatus.USER, AddressStatus.FUNCTIONAL, AddressStatus.ALIAS
    h.add(
        ADDRESS_STATE,
        snapshot("acme", ANN, user, NOW, role=UserRole.END_USER, first_name="Ann",
                 surname="Lee", aliases=("al1@acme.example",)),
        snapshot("acme", "ops@acme.example", functional, IN_WEEK, first_name="Support Desk"),
        snapshot("acme", "al1@acme.example", alias, NOW, primary=ANN),
        snapshot("acme", "jörg@köln.example", user, LONG_AGO, role=UserRole.SILENT_USER),
        snapshot("acme", "new@acme.example", AddressStatus.DISCOVERED, NOW),
        snapshot("acme", "bad@acme.example", AddressStatus.INVALID, NOW),
        snapshot("acme", "del@acme.example", user, NOW),
        snapshot("beta", "annie@beta.example", user, NOW, first_name="Ann"),
        snapshot("beta", "al9@beta.example", alias, NOW, primary="annie@beta.example"),
    )  # fmt: skip
    h.add(ADDRESS_STATE, gone("acme", "del@acme.example"))

    def page(tenant_id: str = "acme", **kwargs: Any) -> queries.Page[queries.Account]:
        asked: dict[str, Any] = {"search": "", "limit": 50, "offset": 0, **kwargs}
        return ask(h, queries.accounts_page, tenant_id, **asked)

    def addresses(found: queries.Page[queries.Account]) -> tuple[int, list[str]]:
        return found.total, [a.address for a in found.rows]

    everyone = page()
    # Users, functional accounts and aliases by address: not the discovered, the invalid, the
    # deleted one or beta's.
    assert addresses(everyone) == (
        4,
        ["al1@acme.example", ANN, "jörg@köln.example", "ops@acme.example"],
    )
    al1, ann, jorg, ops = everyone.rows
    assert ann == queries.Account(ANN, "user", "end_user", "Ann", "Lee", "",
                                  ["al1@acme.example"], NOW, "threshold")  # fmt: skip
    assert (al1.status, al1.primary, al1.role, al1.aliases) == ("alias", ANN, "", [])
    assert (ops.status, ops.first_name, ops.role, ops.since) == ("functional", "Support Desk", "",
                                                                 IN_WEEK)  # fmt: skip
    assert (jorg.role, jorg.since.tzinfo is not None) == ("silent_user", True)
    assert addresses(page(limit=2, offset=2)) == (4, ["jörg@köln.example", "ops@acme.example"])
    assert page(offset=4) == queries.Page(0, [])  # past the last page: nothing, not even a total
    assert addresses(page(search="ann LEE")) == (1, [ANN])  # the name
    assert addresses(page(search="ANN@")) == (2, ["al1@acme.example", ANN])  # and its alias
    assert addresses(page(search="desk")) == (1, ["ops@acme.example"])
    assert addresses(page(search="xn--kln-sna")) == (1, ["jörg@köln.example"])  # an A-label
    assert addresses(page(search="JÖRG@KÖLN")) == (1, ["jörg@köln.example"])
    assert addresses(page(statuses=["alias"])) == (1, ["al1@acme.example"])
    assert addresses(page(statuses=["user", "functional"], limit=1)) == (3, [ANN])
    for wrong in (["discovered"], ["user", "invalid"], []):
        with pytest.raises(ValueError):
            page(statuses=wrong)
    # Beta's, and only beta's, whatever is asked.
    assert addresses(page("beta")) == (2, ["al9@beta.example", "annie@beta.example"])
    assert addresses(page("beta", search="lee")) == (0, [])
    assert addresses(page("beta", search="ann@acme")) == (0, [])
    assert addresses(page("nobody")) == (0, [])


def test_discovered_addresses_are_by_discovery_time(history: History) -> None:
    assert ask(history, queries.discovered_addresses, "acme") == [
        ("old@acme.example", NOW - timedelta(weeks=5)),
        ("disc3@bücher.example", NOW - timedelta(days=3)),
        ("disc2@acme.example", NOW - timedelta(days=2)),
        ("disc1@acme.example", NOW - timedelta(days=1)),
    ]
    assert ask(history, queries.discovered_addresses, "beta") == [
        ("other@beta.example", NOW - timedelta(days=1))
    ]
    assert ask(history, queries.discovered_addresses, "nobody") == []


def test_tenant_addresses_are_every_live_record(history: History) -> None:
    assert ask(history, queries.tenant_addresses, "beta") == [
        "annie@beta.example",
        "bad@beta.example",
        "other@beta.example",
    ]
    acme = ask(history, queries.tenant_addresses, "acme")
    assert "del@acme.example" not in acme and len(acme) == 10 and acme == sorted(acme)


def test_catch_all_destinations_are_those_whose_latest_check_accepted(history: History) -> None:
    # mx2 accepted, then refused: its latest check counts.
    assert ask(history, queries.catch_all_destinations, "acme") == [
        ("mx0.acme.example:25", MAIL_DAY),
        ("mx1.acme.example:25", MAIL_DAY + timedelta(hours=1)),
    ]
    assert ask(history, queries.catch_all_destinations, "beta") == [
        ("mx9.beta.example:25", MAIL_DAY)
    ]


def test_daily_counts_are_the_tenants_days_from_since(history: History) -> None:
    days = ask(history, queries.daily_counts, "acme", date(2026, 11, 16))
    assert [d.day for d in days] == [date(2026, 11, 16), date(2026, 11, 18), date(2026, 11, 19),
                                     date(2026, 11, 23)]  # fmt: skip
    mail_day = days[2].counts
    assert list(mail_day) == list(queries.DAILY_COUNTS)
    # Beta's deliveries that day are beta's: acme had 3 messages, 2 of them clean.
    assert (mail_day["messages"], mail_day["clean_messages"], mail_day["verifications"]) == (
        3,
        2,
        1,
    )
    assert days[1].counts["new_users"] == 2 and days[1].counts["new_aliases"] == 1
    beta = ask(history, queries.daily_counts, "beta", date(2026, 11, 16))
    assert [(d.day, d.counts["messages"], d.counts["new_users"]) for d in beta] == [
        (date(2026, 11, 18), 0, 1),
        (date(2026, 11, 19), 2, 0),
    ]
    assert ask(history, queries.daily_counts, "acme", date(2026, 11, 24)) == []


def test_the_report_state_is_the_latest_logged(history: History) -> None:
    h = fresh(history.client)
    columns = ["tenant_id", "report", "week", "state", "message_id", "recipients", "rows", "at"]
    h.client.insert(
        h.layout.name("report_log"),
        [["acme", "warning", "2026-W47", "sending", "<m>", ["tech@acme.example"], 1, NOW],
         ["acme", "warning", "2026-W47", "sent", "<m>", ["tech@acme.example"], 1,
          NOW + timedelta(seconds=1)],
         ["beta", "new-users", "2026-W47", "empty", "", [], 0, NOW]],
        column_names=columns,
    )  # fmt: skip
    assert ask(h, queries.report_state, "acme", "warning", "2026-W47") == "sent"
    assert ask(h, queries.report_state, "acme", "new-users", "2026-W47") is None  # beta's
    assert ask(h, queries.report_state, "beta", "new-users", "2026-W47") == "empty"
    assert ask(h, queries.report_state, "acme", "warning", "2026-W48") is None


def test_the_aliases_to_erase_with_an_address(history: History) -> None:
    # al1: its alias now; al2 and link: its aliases once, their records already erased; not
    # al3 (a user now) nor al4 (beta's). The forms are lowercase, the history as written.
    assert ask(history, queries.aliases_to_erase, "acme", ["ann@acme.example"]) == [
        "al1@acme.example",
        "al2@acme.example",
        "link@acme2.example",
    ]
    assert ask(history, queries.aliases_to_erase, "acme", ["bob@acme.example"]) == []
    assert ask(history, queries.aliases_to_erase, "beta", ["ann@acme.example"]) == [
        "al4@beta.example"
    ]


def test_tenant_tables_are_every_table_with_a_tenant_column(history: History) -> None:
    assert ask(history, queries.tenant_tables) == [
        "address_activity",
        "address_state",
        "mail_events",
        "report_log",
        "state_changes",
        "tenant_daily",
        "tenants",
    ]


def test_counting_a_tenants_rows_counts_only_its_own(history: History) -> None:
    assert ask(history, queries.count_tenant_rows, "mail_events", "acme") == 9
    assert ask(history, queries.count_tenant_rows, "mail_events", "beta") == 3
    assert ask(history, queries.count_tenant_rows, "state_changes", "nobody") == 0


@pytest.fixture
def erasable(clickhouse: Any) -> History:
    """Ann of acme, named by an alias and a user, and the same address at beta; changed by the
    tests that use it."""
    h = fresh(clickhouse)
    h.add(
        ADDRESS_STATE,
        snapshot("acme", "Ann@acme.example", AddressStatus.USER, NOW),
        snapshot("acme", "al1@acme.example", AddressStatus.ALIAS, NOW, primary="Ann@acme.example"),
        snapshot("acme", "bob@acme.example", AddressStatus.USER, NOW,
                 aliases=("ANN@acme.example", "b2@acme.example")),
        snapshot("beta", "ann@acme.example", AddressStatus.ALIAS, NOW, primary="ann@acme.example"),
    )  # fmt: skip
    h.add(
        STATE_CHANGES,
        change("acme", "Ann@acme.example", AddressStatus.USER, IN_WEEK),
        change("acme", "al1@acme.example", AddressStatus.ALIAS, IN_WEEK, primary=ANN),
        change("beta", "ann@acme.example", AddressStatus.USER, IN_WEEK),
    )  # fmt: skip
    h.add(
        MAIL,
        delivered("acme", "ann@acme.example", MAIL_DAY),
        delivered("acme", "ANN@acme.example", MAIL_DAY),
        delivered("beta", "ann@acme.example", MAIL_DAY),
    )
    return h


def _rows(h: History, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
    return h.client.query(f"SELECT {columns} FROM {h.layout.name(table)} "
                          "ORDER BY ALL").result_rows  # fmt: skip


def test_an_address_rows_are_deleted_and_counted_once(erasable: History) -> None:
    ann = parse_address("Ann@acme.example")
    key, forms = ann.record_key("acme"), sorted({ann.display.lower(), ann.normalized})
    deleted = {table: ask(erasable, queries.delete_address_rows, table, "acme", key, forms)
               for table in queries.ADDRESS_ROWS}  # fmt: skip
    assert deleted == {"address_state": 1, "state_changes": 1, "mail_events": 2,
                       "address_activity": 1}  # fmt: skip
    again = {table: ask(erasable, queries.delete_address_rows, table, "acme", key, forms)
             for table in queries.ADDRESS_ROWS}  # fmt: skip
    assert set(again.values()) == {0}
    # Beta's ann and acme's other addresses stay.
    assert [r[0] for r in _rows(erasable, "address_state", "tenant_id, address")] == [
        "acme",
        "acme",
        "beta",
    ]
    assert _rows(erasable, "mail_events", "tenant_id") == [("beta",)]
    assert _rows(erasable, "state_changes", "tenant_id, address") == [
        ("acme", "al1@acme.example"),
        ("beta", "ann@acme.example"),
    ]


def test_rows_naming_an_address_forget_it(erasable: History) -> None:
    forms = ["ann@acme.example"]
    named = {table: ask(erasable, queries.unname_address, table, "acme", forms)
             for table in queries.NAMING_ROWS}  # fmt: skip
    assert named == {"address_state": 2, "state_changes": 1}
    state = _rows(erasable, "address_state", "tenant_id, address, primary, aliases")
    assert state == [
        ("acme", "Ann@acme.example", "", []),
        ("acme", "al1@acme.example", "", []),
        ("acme", "bob@acme.example", "", ["b2@acme.example"]),
        ("beta", "ann@acme.example", "ann@acme.example", []),  # beta's alias still names it
    ]
    assert _rows(erasable, "state_changes", "tenant_id, address, primary") == [
        ("acme", "Ann@acme.example", ""),
        ("acme", "al1@acme.example", ""),
        ("beta", "ann@acme.example", ""),
    ]
    again = {table: ask(erasable, queries.unname_address, table, "acme", forms)
             for table in queries.NAMING_ROWS}  # fmt: skip
    assert again == {"address_state": 0, "state_changes": 0}


def test_a_tenants_rows_are_deleted_and_counted(erasable: History) -> None:
    assert ask(erasable, queries.count_tenant_rows, "address_state", "acme") == 3
    assert ask(erasable, queries.delete_tenant_rows, "address_state", "acme") == 3
    assert ask(erasable, queries.count_tenant_rows, "address_state", "acme") == 0
    assert ask(erasable, queries.delete_tenant_rows, "address_state", "acme") == 0
    assert ask(erasable, queries.count_tenant_rows, "address_state", "beta") == 1


def test_addresses_by_status_count_every_tenants_live_records(history: History) -> None:
    assert ask(history, queries.addresses_by_status) == {
        "alias": 1,
        "discovered": 5,  # del@acme.example was removed
        "functional": 1,
        "invalid": 3,
        "user": 3,
    }
    assert ask(fresh(history.client), queries.addresses_by_status) == {}
