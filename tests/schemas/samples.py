"""One valid instance of every model that travels on a topic, for contract tests."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel

from smtp_discovery.schemas.admin import AdminToken, AdminTokenUsed
from smtp_discovery.schemas.commands import (
    AddAlias,
    AliasGrant,
    AliasRelease,
    AliasRequest,
    CommandResult,
    CreateFunctional,
    CreateUser,
    DeleteAddress,
    EraseAddress,
    ImportUser,
    MarkInvalid,
    RemoveInvalid,
    Tick,
)
from smtp_discovery.schemas.deadletter import DeadLetter, b64
from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
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
    state_of,
)
from smtp_discovery.schemas.tenant import (
    Destination,
    DiscoverySettings,
    ProviderDefaults,
    TenantConfig,
)

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
ADDR = "First.Last+News@Example.com"
COMMON = {"tenant_id": "acme", "event_time": T0, "address": ADDR}

RECORD = AddressRecord(
    tenant_id="acme",
    address=ADDR,
    status=AddressStatus.DISCOVERED,
    status_since=T0,
    status_reason="threshold",
    version=4,
    first_seen=T0,
    last_seen=T0,
    discovered_at=T0,
    discovered_reason="threshold",
    clean_by_day={date(2026, 11, 1): 2, date(2026, 11, 2): 1},
    alias_candidates=("first.last@a.example", "first.last@b.example"),
    applied_event_ids=("e1", "e2"),
)

SAMPLES: list[BaseModel] = [
    CalloutVerified(**COMMON, destination="mx.acme.example:25", reply_code=250, latency_ms=12.5),
    CalloutRejected(
        **COMMON,
        destination="mx.acme.example:25",
        reply_code=550,
        enhanced_status="5.1.1",
        reply_text="User unknown",
    ),
    CalloutTempfailed(
        **COMMON, destination="mx.acme.example:25", reason="reply_4xx", reply_code=450
    ),
    RecipientDelivered(
        **COMMON, verdict="clean", message_id="tx-1", client_ip="2001:db8::25", size=2048
    ),
    OutboundSent(**COMMON, message_id="tx-2", client_ip="192.0.2.10", recipient_count=3),
    CatchAllChecked(**COMMON, destination="mx.example.com:25", catch_all=True),
    AdminToken(event_time=T0, token_id="0a1b2c3d", tenant_id="acme", secret_sha256="0" * 64),
    AdminTokenUsed(event_time=T0, token_id="0a1b2c3d", tenant_id="acme"),
    CreateUser(
        **COMMON, actor="admin:tok1", first_name="First", surname="Last", role=UserRole.SILENT_USER
    ),
    CreateFunctional(**COMMON, actor="admin:tok1", display_name="Sales"),
    MarkInvalid(**COMMON, actor="admin:tok1"),
    RemoveInvalid(**COMMON, actor="admin:tok1"),
    AddAlias(**COMMON, actor="admin:tok1", primary="first.last@example.com"),
    DeleteAddress(**COMMON, actor="operator"),
    EraseAddress(**COMMON, actor="operator"),
    ImportUser(**COMMON, actor="admin:tok1", first_name="F", surname="L", batch_id="b1"),
    Tick(**COMMON),
    AliasRequest(**COMMON, alias="jdoe@example.com", command_id="c2", actor="admin:tok1"),
    AliasGrant(**COMMON, primary="first.last@example.com", command_id="c2", actor="admin:tok1"),
    AliasRelease(**COMMON, alias="jdoe@example.com"),
    CommandResult(
        **COMMON,
        command_id="c1",
        command_type="add_alias",
        outcome="rejected",
        reason_code="primary_not_user",
        message="the primary first.last@example.com is not a user",
    ),
    AddressStateSnapshot(**COMMON, record=state_of(RECORD)),
    StateChange(
        **COMMON,
        from_status=AddressStatus.PENDING,
        to_status=AddressStatus.DISCOVERED,
        reason="threshold",
        cause_event_ids=("e1", "e2", "e3"),
        version=4,
    ),
    TenantConfig(
        tenant_id="acme",
        event_time=T0,
        name="Acme Corp",
        domains=("Example.com", "Bücher.example"),
        destinations=(
            Destination(host="mx1.acme.example", priority=10),
            Destination(kind="mx", domain="acme.example", priority=20),
        ),
        outbound_ranges=("192.0.2.0/24", "2001:db8::/48"),
        tech_contact="tech@example.com",
        admin_contact="admin@example.com",
        settings={"inbound_detection_threshold": 5, "auto_add_outbound_users": True},
    ),
    ProviderDefaults(event_time=T0, settings=DiscoverySettings(discovery_enabled=True)),
    DeadLetter(
        event_time=T0,
        component="streams",
        source_topic="discovery.mail",
        partition=3,
        offset=42,
        key_b64=b64(b"acme:first.last"),
        value_b64=b64(b"\xff\xfe"),
        error_type="MessageDecodeError",
        error="discovery.mail: value is not valid UTF-8 JSON",
    ),
]
