"""The address lifecycle as pure functions: (group of records, settings, message) -> outcome.

No Faust, no Kafka, no clock reads: every time comes from the message, so the same messages in
the same order always give the same records, transitions and ids, whether they are played live,
replayed after a crash, or run by a test. docs/design.md, "The address lifecycle", is the
specification.

A *group* is every record that shares the message's route key (tenant + base local part): the
address itself and any address that could be its alias. The worker keeps groups on one
partition, so everything a rule needs is local.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple, Protocol

from smtp_discovery.schemas.address import Address, parse_address
from smtp_discovery.schemas.base import SCHEMA_VERSION
from smtp_discovery.schemas.calendar import expires_at
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
from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
    CalloutVerified,
    CatchAllChecked,
    OutboundSent,
    RecipientDelivered,
)
from smtp_discovery.schemas.state import (
    SETTLED_STATUSES,
    AddressRecord,
    AddressStateSnapshot,
    AddressStatus,
    StateChange,
    UserRole,
    same_state,
    state_of,
)
from smtp_discovery.schemas.tenant import DiscoverySettings, TenantConfig
from smtp_discovery.streams import aliases, window

S = AddressStatus
ID_NAMESPACE = uuid.UUID("6f1c62de-3d1b-4a8e-9a57-5b1f0c7e2a10")
WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Policy:
    """Engine constants that are not per-tenant settings."""

    late_grace: timedelta = timedelta(days=2)
    """Clean messages older than the record's newest event by more than this are dropped."""
    prune_pending_after: timedelta = timedelta(days=30)
    """A pending record with no activity for this long is removed."""
    remembered_event_ids: int = 20
    """How many applied event ids a record keeps to ignore redelivered events."""


class Context(NamedTuple):
    """What the rules know of a message's tenant; one per message (a named tuple, as
    ``journal.Entry`` says why)."""

    tenant: TenantConfig
    settings: DiscoverySettings
    policy: Policy = Policy()

    @property
    def discovering(self) -> bool:
        """Mail events may create and advance records only while discovery is on and no
        directory sync owns the user list."""
        return self.settings.discovery_enabled and not self.settings.directory_sync_enabled


@dataclass
class Outcome:
    """What one message changed. ``records`` maps record keys to new records (None: removed)."""

    records: dict[str, AddressRecord | None] = field(default_factory=dict)
    changes: list[StateChange] = field(default_factory=list)
    results: list[CommandResult] = field(default_factory=list)
    messages: list[Tick | AliasRequest | AliasGrant | AliasRelease] = field(default_factory=list)
    skipped: str | None = None
    """Why a message changed nothing, for metrics and logs (None when it changed something)."""
    published: dict[str, AddressRecord | None] = field(default_factory=dict)
    """The records whose *state* changed (None: removed): what ``discovery.address-state``
    hears of. A record whose traffic alone changed (a counted message) is not here."""

    @property
    def must_confirm(self) -> bool:
        """Every output is acknowledged before the tables are written: a redelivered message
        finds nothing changed only once its outputs are in Kafka. Outputs are rare (a change
        of state, a command), so waiting for them costs the common path nothing."""
        return bool(self.changes or self.results or self.messages or self.published)

    def snapshots(self) -> list[tuple[str, AddressStateSnapshot | None]]:
        """The compacted-topic outputs: (record key, snapshot or None for a tombstone)."""
        out: list[tuple[str, AddressStateSnapshot | None]] = []
        for key, record in self.published.items():
            if record is None:
                out.append((key, None))
                continue
            out.append(
                (
                    key,
                    # Records are built here from validated parts: skip validating them again.
                    AddressStateSnapshot.model_construct(
                        schema_version=SCHEMA_VERSION,
                        type="address_state",
                        event_id=derived_id("snapshot", key, record.version),
                        tenant_id=record.tenant_id,
                        event_time=record.status_since
                        if record.last_seen is None
                        else max(record.status_since, record.last_seen),
                        address=record.address,
                        record=state_of(record),
                    ),
                )
            )
        return out


class _Work:
    """The mutable working copy of one group while one message is applied."""

    def __init__(self, group: Mapping[str, AddressRecord], ctx: Context) -> None:
        self.before = group
        self.group = dict(group)
        self.ctx = ctx
        self.outcome = Outcome()

    def finish(self) -> Outcome:
        """The outcome, with the records whose state (not just traffic) changed marked for
        publishing: a record created and removed by the same message was never published."""
        outcome = self.outcome
        for key, record in outcome.records.items():
            before = self.before.get(key)
            if record is None:
                if before is not None:
                    outcome.published[key] = None
            elif before is None or not same_state(before, record):
                outcome.published[key] = record
        if not (outcome.records or outcome.results or outcome.messages):
            outcome.skipped = outcome.skipped or "no_change"
        return outcome

    @property
    def tenant_id(self) -> str:
        return self.ctx.tenant.tenant_id

    def get(self, key: str) -> AddressRecord | None:
        return self.group.get(key)

    def put(self, key: str, record: AddressRecord) -> None:
        self.group[key] = record
        self.outcome.records[key] = record

    def remove(self, key: str) -> None:
        self.group.pop(key, None)
        self.outcome.records[key] = None

    def set_alias(self, primary_key: str, alias_norm: str, *, linked: bool, at: datetime) -> None:
        """Add the alias to (or remove it from) a primary in this group; no-op if already so."""
        primary = self.get(primary_key)
        if primary is None or (alias_norm in primary.aliases) == linked:
            return
        others = tuple(a for a in primary.aliases if a != alias_norm)
        self.put(
            primary_key,
            primary.model_copy(
                update={
                    "aliases": (*others, alias_norm) if linked else others,
                    "version": next_version(primary.version, at),
                }
            ),
        )

    def release(self, primary: str, alias: str, at: datetime, cause: str) -> None:
        """Tell a primary on another partition that ``alias`` is no longer its alias."""
        self.outcome.messages.append(
            AliasRelease(
                event_id=derived_id("release", cause, 0),
                tenant_id=self.tenant_id,
                event_time=at,
                address=primary,
                alias=alias,
            )
        )

    def change(
        self,
        key: str,
        before: AddressRecord | None,
        after: AddressRecord | None,
        *,
        reason: str,
        at: datetime,
        actor: str = "system",
        causes: tuple[str, ...] = (),
    ) -> None:
        """Store ``after`` (None removes) and record the transition when the status changed."""
        if after is None:
            assert before is not None
            self.remove(key)
            version = next_version(before.version, at)
        else:
            self.put(key, after)
            version = after.version
        unchanged = (
            before is not None
            and after is not None
            and (before.status, before.primary, before.role)
            == (after.status, after.primary, after.role)
        )
        if unchanged:
            return
        display = (after or before).address  # type: ignore[union-attr]
        self.outcome.changes.append(
            StateChange(
                event_id=derived_id("change", key, version),
                tenant_id=self.tenant_id,
                event_time=at,
                address=display,
                from_status=before.status if before else None,
                to_status=after.status if after else None,
                reason=reason,
                actor=actor,
                cause_event_ids=causes,
                version=version,
                role=after.role if after else None,
                primary=after.primary if after else None,
            )
        )

    def result(
        self,
        command: Any,
        *,
        ok: bool,
        at: datetime,
        code: str | None = None,
        message: str = "",
        command_id: str | None = None,
        command_type: str | None = None,
        address: str | None = None,
    ) -> None:
        cid = command_id or command.event_id
        self.outcome.results.append(
            CommandResult(
                event_id=derived_id("result", f"{cid}:{'applied' if ok else code}", 0),
                tenant_id=self.tenant_id,
                event_time=at,
                address=address or command.address,
                command_id=cid,
                command_type=command_type or command.type,
                outcome="applied" if ok else "rejected",
                reason_code=code,
                message=message if not ok else (message or "applied"),
            )
        )


def derived_id(kind: str, key: str, version: int) -> str:
    """Ids of outputs are derived from what caused them, so a replay repeats them exactly."""
    return uuid.uuid5(ID_NAMESPACE, f"{kind}:{key}:{version}").hex


def next_version(previous: int | None, at: datetime) -> int:
    """Monotonic per record, and across a record's removal and re-creation as long as event
    time moves forward: the version ClickHouse's ReplacingMergeTree keeps the newest row by."""
    micros = int(at.timestamp() * 1_000_000)
    return max((previous or 0) + 1, micros)


# ---- time-driven transitions -------------------------------------------------------------------


class Timed(Protocol):
    """What time-driven transitions depend on (an AddressRecord, or the timer's lean copy)."""

    @property
    def status(self) -> AddressStatus: ...
    @property
    def status_since(self) -> datetime: ...
    @property
    def discovered_at(self) -> datetime | None: ...
    @property
    def last_seen(self) -> datetime | None: ...


def expiry_deadline(record: Timed, settings: DiscoverySettings) -> datetime | None:
    """When a discovered address expires (``schemas.calendar.expires_at``)."""
    if record.status is not S.DISCOVERED or record.discovered_at is None:
        return None
    return expires_at(record.discovered_at, settings.notices_before_expiry)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


def due_at(record: Timed, settings: DiscoverySettings, policy: Policy) -> datetime | None:
    """The next moment a time-driven transition applies to the record, if any."""
    if record.status is S.DISCOVERED:
        return expiry_deadline(record, settings)
    if record.status is S.PENDING:
        return (record.last_seen or record.status_since) + policy.prune_pending_after
    return None


def _apply_all_due(work: _Work, at: datetime) -> None:
    """Due transitions of every record in the group, as of the newest event time it has seen."""
    for key in list(work.group):
        record = work.group[key]
        _apply_due(work, key, max(at, record.last_seen) if record.last_seen else at)


def _apply_due(work: _Work, key: str, now: datetime) -> None:
    """Apply transitions whose time has come, as of their own deadline (not ``now``), so the
    result is the same whichever message or tick notices them first."""
    record = work.get(key)
    if record is None:
        return
    deadline = due_at(record, work.ctx.settings, work.ctx.policy)
    if deadline is None or deadline > now:
        return
    if record.status is S.PENDING:
        work.change(key, record, None, reason="pruned", at=deadline)
        return
    settings = work.ctx.settings
    if settings.expired_addresses_default_to_new_user:
        after = _with(record, S.USER, deadline, "expired", role=settings.default_new_user_role)
    else:
        after = _with(record, S.INVALID, deadline, "expired")
    work.change(key, record, after, reason="expired", at=deadline)


# ---- record construction ----------------------------------------------------------------------


def _with(
    record: AddressRecord,
    status: AddressStatus,
    at: datetime,
    reason: str,
    **fields: Any,
) -> AddressRecord:
    updates: dict[str, Any] = {
        "status": status,
        "status_since": at,
        "status_reason": reason,
        "version": next_version(record.version, at),
    }
    if status is not S.USER:
        updates.update(role=None, aliases=())
    if status is not S.ALIAS:
        updates["primary"] = None
    if status is S.DISCOVERED and record.discovered_at is None:
        updates.update(discovered_at=at, discovered_reason=reason)
    if status in (S.USER, S.FUNCTIONAL, S.ALIAS, S.INVALID):
        updates["alias_candidates"] = ()
    updates.update(fields)
    return record.model_copy(update=updates)


def _seen_until(record: AddressRecord, at: datetime) -> datetime:
    """The record's last seen time once a message of time ``at`` is counted (a late one does
    not move it back)."""
    return at if record.last_seen is None else max(record.last_seen, at)


def _touch(
    record: AddressRecord, at: datetime, event_id: str, policy: Policy, **fields: Any
) -> AddressRecord:
    ids = (*record.applied_event_ids, event_id)[-policy.remembered_event_ids :]
    last_seen = _seen_until(record, at)
    first_seen = at if record.first_seen is None else min(record.first_seen, at)
    updates: dict[str, Any] = {
        "applied_event_ids": ids,
        "last_seen": last_seen,
        "first_seen": first_seen,
        "version": next_version(record.version, at),
    }
    updates.update(fields)
    return record.model_copy(update=updates)


def _new_record(
    address: Address,
    tenant_id: str,
    status: AddressStatus,
    at: datetime,
    reason: str,
    **fields: Any,
) -> AddressRecord:
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "address": fields.pop("display", address.display),
        "status": status,
        "status_since": at,
        "status_reason": reason,
        "version": next_version(None, at),
    }
    if status is S.DISCOVERED:
        values.update(discovered_at=at, discovered_reason=reason)
    values.update(fields)
    return AddressRecord(**values)


# ---- entry point --------------------------------------------------------------------------------


def apply(group: Mapping[str, AddressRecord], message: Any, ctx: Context) -> Outcome:
    """Apply one message to the group of records sharing its route key."""
    work = _Work(group, ctx)
    _apply(work, message, ctx)
    return work.finish()


def _apply(work: _Work, message: Any, ctx: Context) -> None:
    address = parse_address(message.address)
    key = address.record_key(ctx.tenant.tenant_id)
    mail = is_mail(message)
    if address.domain not in ctx.tenant.domains and not isinstance(
        message, (AliasRelease, AliasRequest, AliasGrant, Tick)
    ):
        if mail:
            work.outcome.skipped = "domain_not_registered"
            return
        work.result(
            message,
            ok=False,
            at=message.event_time,
            code="domain_not_registered",
            message=f"{address.domain_unicode} is not a registered domain of {ctx.tenant.name}",
        )
        return
    # Lazy time: what was due before this message happens first, at its own deadline.
    _apply_all_due(work, message.event_time)
    if mail and _predates(work.get(key), message.event_time, ctx.policy):
        # Older than the record itself (beyond grace): it belonged to a previous incarnation of
        # the address (pruned or removed since), so it says nothing about this one.
        work.outcome.skipped = "predates_record"
        return
    if mail and _duplicate(work, key, message):
        return
    if mail and _settled(work.get(key)):
        # Users, functional accounts, aliases and invalid addresses are the admins' business:
        # mail to or from them changes nothing (and costs no write: most traffic is theirs).
        work.outcome.skipped = "settled"
        return
    handler = _HANDLERS.get(type(message))
    if handler is None:
        raise TypeError(f"no rule for {type(message).__name__}")
    handler(work, key, address, message)
    # A late message can move a deadline earlier (a corrected discovery day): catch up to the
    # newest event time the group has seen.
    _apply_all_due(work, message.event_time)


def is_mail(message: Any) -> bool:
    return isinstance(
        message,
        (CalloutVerified, CalloutRejected, CalloutTempfailed, RecipientDelivered, OutboundSent),
    )


def _settled(record: AddressRecord | None) -> bool:
    return record is not None and record.status in SETTLED_STATUSES


def _predates(record: AddressRecord | None, at: datetime, policy: Policy) -> bool:
    return (
        record is not None
        and record.first_seen is not None
        and at < record.first_seen - policy.late_grace
    )


def _duplicate(work: _Work, key: str, message: Any) -> bool:
    """A redelivered message changes nothing: its outputs were acknowledged before its
    record was written (``Outcome.must_confirm``)."""
    record = work.get(key)
    if record is None or not _remembers(record, message.event_id, message.event_time):
        return False
    work.outcome.skipped = "duplicate"
    return True


def _remembers(record: AddressRecord, event_id: str, at: datetime) -> bool:
    """The record applied this event: one of its recent events, or a clean message it counted
    (kept for as long as the message's day can count, whatever came after it). A counted
    message's id is kept under the day of its event time, which its redelivery carries too:
    only that day's ids are searched (a day holds up to the threshold's number of them)."""
    return event_id in record.applied_event_ids or event_id in record.clean_ids.get(
        window.day_of(at), ()
    )


# ---- mail events --------------------------------------------------------------------------------


def _discover_new(
    work: _Work, key: str, address: Address, event: Any, *, outbound: bool
) -> AddressRecord | None:
    """A newly seen address: an alias of a user, discovered (outbound, ambiguous alias), a user
    (outbound auto-add), or pending. Returns the new record (None when nothing may be created)."""
    ctx = work.ctx
    if not ctx.discovering:
        work.outcome.skipped = "discovery_off"
        return None
    at = event.event_time
    base = {
        "first_seen": at,
        "last_seen": at,
        "applied_event_ids": (event.event_id,),
        "display": event.address,
    }
    found = (
        aliases.candidates(address, work.group.values(), ctx.tenant.domains)
        if ctx.settings.auto_add_detected_aliases
        else []
    )
    causes = (event.event_id,)
    if len(found) == 1:
        primary = found[0]
        record = _new_record(
            address, work.tenant_id, S.ALIAS, at, "alias_detected", primary=primary.address, **base
        )
        work.change(key, None, record, reason="alias_detected", at=at, causes=causes)
        _link_on_primary(work, primary, record, at)
        return record
    if len(found) > 1:
        record = _new_record(
            address,
            work.tenant_id,
            S.DISCOVERED,
            at,
            "alias_detected",
            alias_candidates=tuple(r.address for r in found),
            **base,
        )
        work.change(key, None, record, reason="alias_detected", at=at, causes=causes)
        return record
    if outbound and ctx.settings.auto_add_outbound_users:
        record = _new_record(
            address,
            work.tenant_id,
            S.USER,
            at,
            "outbound",
            role=ctx.settings.default_new_user_role,
            **base,
        )
        work.change(key, None, record, reason="outbound", at=at, causes=causes)
    elif outbound:
        record = _new_record(address, work.tenant_id, S.DISCOVERED, at, "outbound", **base)
        work.change(key, None, record, reason="outbound", at=at, causes=causes)
    else:
        record = _new_record(address, work.tenant_id, S.PENDING, at, "verified", **base)
        work.change(key, None, record, reason="verified", at=at, causes=causes)
    return record


def _link_on_primary(
    work: _Work, primary: AddressRecord, alias: AddressRecord, at: datetime
) -> None:
    primary_key = parse_address(primary.address).record_key(work.tenant_id)
    work.set_alias(primary_key, parse_address(alias.address).normalized, linked=True, at=at)


def _on_callout_verified(work: _Work, key: str, address: Address, event: CalloutVerified) -> None:
    record = work.get(key)
    if record is None:
        if event.catch_all:
            work.outcome.skipped = "catch_all"
            return
        _discover_new(work, key, address, event, outbound=False)
        return
    work.put(key, _touch(record, event.event_time, event.event_id, work.ctx.policy))


def _on_callout_rejected(work: _Work, key: str, address: Address, event: CalloutRejected) -> None:
    record = work.get(key)
    if record is None or record.status not in (S.PENDING, S.DISCOVERED):
        work.outcome.skipped = "not_applicable"
        return
    work.change(
        key,
        record,
        None,
        reason="destination_rejected",
        at=event.event_time,
        causes=(event.event_id,),
    )


def _on_callout_tempfailed(
    work: _Work, key: str, address: Address, event: CalloutTempfailed
) -> None:
    work.outcome.skipped = "tempfail"


def _on_catch_all_checked(work: _Work, key: str, address: Address, event: CatchAllChecked) -> None:
    """About the tenant's server, for the reports: no address state."""
    work.outcome.skipped = "tenant_fact"


def _on_delivered(work: _Work, key: str, address: Address, event: RecipientDelivered) -> None:
    record = work.get(key)
    at = event.event_time
    ctx = work.ctx
    created: AddressRecord | None = None
    if record is None:
        if event.catch_all:
            work.outcome.skipped = "catch_all"
            return
        created = _discover_new(work, key, address, event, outbound=False)
        if created is None or event.verdict != "clean" or created.status is not S.PENDING:
            return
        record = created
        last_seen = record.last_seen
    else:
        if event.verdict != "clean":
            work.put(key, _touch(record, at, event.event_id, ctx.policy))
            return
        newest = record.last_seen or record.status_since
        if at < newest - ctx.policy.late_grace:
            work.put(
                key,
                _touch(
                    record, newest, event.event_id, ctx.policy, late_dropped=record.late_dropped + 1
                ),
            )
            return
        last_seen = _seen_until(record, at)  # as _touch below sets it
    day = window.day_of(at)
    newest_day = window.day_of(last_seen or at)
    period = ctx.settings.detection_period_days
    threshold = ctx.settings.inbound_detection_threshold
    buckets, ids = window.add_clean(
        record.clean_by_day, record.clean_ids, day, event.event_id, threshold
    )
    keep = period + ctx.policy.late_grace.days + 1
    counted = {
        "clean_by_day": window.prune(buckets, newest_day, keep),
        "clean_ids": window.prune(ids, newest_day, keep),
    }
    # One copy of the record per message: touched (a known address) and counted at once.
    touched = (
        record.model_copy(update=counted)
        if created is not None
        else _touch(record, at, event.event_id, ctx.policy, **counted)
    )
    if touched.status is S.DISCOVERED and touched.discovered_reason == "threshold":
        work.put(key, _correct_discovery_day(touched, day, period, threshold, at))
        return
    crossing = None
    if touched.status is S.PENDING and ctx.discovering:
        crossing = window.first_crossing(touched.clean_by_day, day, period, threshold)
    if crossing is None:
        work.put(key, touched)
        return
    discovered_at = at if crossing == day else max(at, _start_of(crossing))
    after = _with(touched, S.DISCOVERED, discovered_at, "threshold")
    work.change(key, record, after, reason="threshold", at=discovered_at, causes=(event.event_id,))


def _correct_discovery_day(
    record: AddressRecord, day: date, period: int, threshold: int, at: datetime
) -> AddressRecord:
    """A late message may show the threshold was reached on an earlier day than the message
    that completed it in arrival order: move the discovery to that day (no new transition), so
    the discovery day — and the expiry deadline derived from it — do not depend on arrival
    order. Only windows that include the late message can change, hence ``since=day``."""
    assert record.discovered_at is not None
    crossing = window.first_crossing(record.clean_by_day, day, period, threshold)
    if crossing is None or crossing >= record.discovered_at.date():
        return record
    moved = at if crossing == day else _start_of(crossing)
    return record.model_copy(update={"discovered_at": moved})


def _on_outbound(work: _Work, key: str, address: Address, event: OutboundSent) -> None:
    record = work.get(key)
    ctx = work.ctx
    at = event.event_time
    if record is None:
        _discover_new(work, key, address, event, outbound=True)
        return
    touched = _touch(record, at, event.event_id, ctx.policy)
    causes = (event.event_id,)
    if record.status in (S.PENDING, S.DISCOVERED) and ctx.discovering:
        if ctx.settings.auto_add_outbound_users:
            after = _with(touched, S.USER, at, "outbound", role=ctx.settings.default_new_user_role)
            work.change(key, record, after, reason="outbound", at=at, causes=causes)
            return
        if record.status is S.PENDING:
            after = _with(touched, S.DISCOVERED, at, "outbound")
            work.change(key, record, after, reason="outbound", at=at, causes=causes)
            return
    work.put(key, touched)


# ---- admin commands ----------------------------------------------------------------------------

_MANAGED_TEXT = {
    S.USER: "is a user",
    S.FUNCTIONAL: "is a functional account",
    S.ALIAS: "is an alias",
    S.INVALID: "is marked invalid",
    S.PENDING: "is pending",
    S.DISCOVERED: "is discovered",
}


def _reject(work: _Work, command: Any, code: str, message: str) -> None:
    work.result(command, ok=False, at=command.event_time, code=code, message=message)
    work.outcome.skipped = f"rejected:{code}"


def _command_preamble(work: _Work, key: str, command: Any) -> tuple[bool, AddressRecord | None]:
    record = work.get(key)
    if _duplicate(work, key, command):
        # Only applied commands are remembered: say so again (same result id as the first time).
        work.result(command, ok=True, at=command.event_time)
        return False, record
    return True, record


def _unlink_from_primary(work: _Work, record: AddressRecord, at: datetime) -> None:
    """An alias stops being one: its primary forgets it (here, or on the primary's partition)."""
    if record.status is not S.ALIAS or record.primary is None:
        return
    primary = parse_address(record.primary)
    alias_norm = parse_address(record.address).normalized
    primary_key = primary.record_key(work.tenant_id)
    if work.get(primary_key) is not None:
        work.set_alias(primary_key, alias_norm, linked=False, at=at)
        return
    work.release(record.primary, record.address, at, f"{primary_key}|{alias_norm}|{record.version}")


def _managed_change(
    work: _Work,
    key: str,
    address: Address,
    command: Any,
    status: AddressStatus,
    reason: str,
    **fields: Any,
) -> None:
    """Move an address to ``status`` on an admin's (or import's) word, creating it if needed."""
    record = work.get(key)
    at = command.event_time
    causes = (command.event_id,)
    if record is None:
        after = _new_record(
            address,
            work.tenant_id,
            status,
            at,
            reason,
            display=command.address,
            applied_event_ids=(command.event_id,),
            **fields,
        )
        work.change(key, None, after, reason=reason, at=at, actor=command.actor, causes=causes)
    else:
        _unlink_from_primary(work, record, at)
        touched = record.model_copy(
            update={
                "applied_event_ids": (*record.applied_event_ids, command.event_id)[
                    -work.ctx.policy.remembered_event_ids :
                ]
            }
        )
        after = _with(touched, status, at, reason, **fields)
        work.change(key, record, after, reason=reason, at=at, actor=command.actor, causes=causes)
    work.result(command, ok=True, at=at)


def _has_aliases(work: _Work, command: Any, record: AddressRecord | None, doing: str) -> bool:
    if record is not None and record.aliases:
        _reject(
            work,
            command,
            "has_aliases",
            f"{record.address} is the primary of {len(record.aliases)} alias(es) "
            f"({', '.join(record.aliases[:3])}); remove or re-link them before you {doing}",
        )
        return True
    return False


def _on_create_user(
    work: _Work, key: str, address: Address, command: CreateUser | ImportUser
) -> None:
    proceed, record = _command_preamble(work, key, command)
    if not proceed:
        return
    if record is not None and record.status is S.USER:
        _reject(work, command, "already_user", f"{record.address} is already a user")
        return
    role = command.role or work.ctx.settings.default_new_user_role
    reason = "import" if isinstance(command, ImportUser) else "admin:create_user"
    _managed_change(
        work,
        key,
        address,
        command,
        S.USER,
        reason,
        role=UserRole(role),
        first_name=command.first_name,
        surname=command.surname,
    )


def _on_create_functional(
    work: _Work, key: str, address: Address, command: CreateFunctional
) -> None:
    proceed, record = _command_preamble(work, key, command)
    if not proceed:
        return
    if record is not None and record.status is S.FUNCTIONAL:
        _reject(
            work, command, "already_functional", f"{record.address} is already a functional account"
        )
        return
    if _has_aliases(work, command, record, "make it a functional account"):
        return
    _managed_change(
        work,
        key,
        address,
        command,
        S.FUNCTIONAL,
        "admin:create_functional",
        first_name=command.display_name,
    )


def _on_mark_invalid(work: _Work, key: str, address: Address, command: MarkInvalid) -> None:
    proceed, record = _command_preamble(work, key, command)
    if not proceed:
        return
    if record is not None and record.status is S.INVALID:
        _reject(work, command, "already_invalid", f"{record.address} is already marked invalid")
        return
    if _has_aliases(work, command, record, "mark it invalid"):
        return
    _managed_change(work, key, address, command, S.INVALID, "admin:mark_invalid")


def _on_remove_invalid(work: _Work, key: str, address: Address, command: RemoveInvalid) -> None:
    proceed, record = _command_preamble(work, key, command)
    if not proceed:
        return
    if record is None or record.status is not S.INVALID:
        state = "is unknown" if record is None else _MANAGED_TEXT[record.status]
        _reject(
            work,
            command,
            "not_invalid",
            f"{command.address} {state}, not on the Marked Invalid list",
        )
        return
    _admin_remove(work, key, record, command, "admin:remove_invalid")


def _on_delete(work: _Work, key: str, address: Address, command: DeleteAddress) -> None:
    proceed, record = _command_preamble(work, key, command)
    if not proceed:
        return
    if record is None:
        _reject(work, command, "unknown_address", f"{command.address} is not known")
        return
    if _has_aliases(work, command, record, "delete it"):
        return
    _unlink_from_primary(work, record, command.event_time)
    _admin_remove(work, key, record, command, "admin:delete")


def _on_erase(work: _Work, key: str, address: Address, command: EraseAddress) -> None:
    """The record goes, whatever its status and aliases, and no state change is written: the
    history must not get the address back. Erasing what is not there succeeds (a re-run)."""
    proceed, record = _command_preamble(work, key, command)
    if not proceed:
        return
    if record is not None:
        _unlink_from_primary(work, record, command.event_time)
        work.remove(key)
    work.result(command, ok=True, at=command.event_time)


def _admin_remove(work: _Work, key: str, record: AddressRecord, command: Any, reason: str) -> None:
    at = command.event_time
    work.change(
        key, record, None, reason=reason, at=at, actor=command.actor, causes=(command.event_id,)
    )
    work.result(command, ok=True, at=at)


def _is_alias_of(record: AddressRecord | None, primary: Address) -> bool:
    return (
        record is not None
        and record.status is S.ALIAS
        and record.primary is not None
        and parse_address(record.primary).normalized == primary.normalized
    )


def _alias_blocked(
    work: _Work, command: Any, record: AddressRecord | None, primary: Address
) -> bool:
    if _is_alias_of(record, primary):
        assert record is not None
        _reject(
            work,
            command,
            "already_alias",
            f"{record.address} is already an alias of {record.primary}",
        )
        return True
    return _has_aliases(work, command, record, "make it an alias")


def _on_add_alias(work: _Work, key: str, address: Address, command: AddAlias) -> None:
    proceed, record = _command_preamble(work, key, command)
    if not proceed:
        return
    primary = parse_address(command.primary)
    if primary.domain not in work.ctx.tenant.domains:
        _reject(
            work,
            command,
            "primary_not_user",
            f"{command.primary} is not in a registered domain of {work.ctx.tenant.name}",
        )
        return
    if _alias_blocked(work, command, record, primary):
        return
    primary_key = primary.record_key(work.tenant_id)
    if primary.route_key(work.tenant_id) == address.route_key(work.tenant_id):
        local = work.get(primary_key)
        if local is None or local.status is not S.USER:
            _reject(work, command, "primary_not_user", f"{command.primary} is not a user")
            return
        _link(work, key, address, command, local.address, command.event_id, command.actor)
        return
    work.outcome.messages.append(
        AliasRequest(
            event_id=derived_id("alias-request", command.event_id, 0),
            tenant_id=work.tenant_id,
            event_time=command.event_time,
            address=command.primary,
            alias=command.address,
            command_id=command.event_id,
            actor=command.actor,
        )
    )


def _link(
    work: _Work,
    key: str,
    address: Address,
    command: Any,
    primary_display: str,
    command_id: str,
    actor: str,
) -> None:
    """Make the address an alias of a primary already known to be a user (and reserved there
    when remote)."""
    record = work.get(key)
    at = command.event_time
    primary = parse_address(primary_display)
    fields = {"primary": primary_display}
    if record is None:
        after = _new_record(
            address,
            work.tenant_id,
            S.ALIAS,
            at,
            "admin:add_alias",
            display=command.address,
            applied_event_ids=(command.event_id,),
            **fields,
        )
        work.change(
            key, None, after, reason="admin:add_alias", at=at, actor=actor, causes=(command_id,)
        )
    else:
        _unlink_from_primary(work, record, at)
        touched = record.model_copy(
            update={
                "applied_event_ids": (*record.applied_event_ids, command.event_id)[
                    -work.ctx.policy.remembered_event_ids :
                ]
            }
        )
        after = _with(touched, S.ALIAS, at, "admin:add_alias", **fields)
        work.change(
            key, record, after, reason="admin:add_alias", at=at, actor=actor, causes=(command_id,)
        )
    local_primary = work.get(primary.record_key(work.tenant_id))
    if local_primary is not None:
        _link_on_primary(work, local_primary, after, at)
    work.result(
        command,
        ok=True,
        at=at,
        command_id=command_id,
        command_type="add_alias",
        address=command.address,
    )


def _on_alias_request(work: _Work, key: str, address: Address, message: AliasRequest) -> None:
    """On the primary's partition: reserve the alias if the primary is a user, then grant."""
    record = work.get(key)
    at = message.event_time
    if record is None or record.status is not S.USER:
        work.result(
            message,
            ok=False,
            at=at,
            code="primary_not_user",
            message=f"{message.address} is not a user",
            command_id=message.command_id,
            command_type="add_alias",
            address=message.alias,
        )
        return
    work.set_alias(key, parse_address(message.alias).normalized, linked=True, at=at)
    work.outcome.messages.append(
        AliasGrant(
            event_id=derived_id("alias-grant", message.command_id, 0),
            tenant_id=work.tenant_id,
            event_time=at,
            address=message.alias,
            primary=record.address,
            command_id=message.command_id,
            actor=message.actor,
        )
    )


def _on_alias_grant(work: _Work, key: str, address: Address, message: AliasGrant) -> None:
    """On the alias's partition: link, unless the address changed meanwhile (then release)."""
    record = work.get(key)
    if _duplicate(work, key, message):
        return
    primary = parse_address(message.primary)
    if record is not None and record.aliases:
        work.result(
            message,
            ok=False,
            at=message.event_time,
            code="has_aliases",
            message=f"{record.address} became the primary of other aliases meanwhile",
            command_id=message.command_id,
            command_type="add_alias",
        )
        work.release(message.primary, message.address, message.event_time, message.command_id)
        return
    if _is_alias_of(record, primary):
        work.result(
            message,
            ok=True,
            at=message.event_time,
            command_id=message.command_id,
            command_type="add_alias",
        )
        return
    _link(work, key, address, message, message.primary, message.command_id, message.actor)


def _on_alias_release(work: _Work, key: str, address: Address, message: AliasRelease) -> None:
    record = work.get(key)
    alias_norm = parse_address(message.alias).normalized
    if record is None or alias_norm not in record.aliases:
        work.outcome.skipped = "not_applicable"
        return
    work.set_alias(key, alias_norm, linked=False, at=message.event_time)


def _on_tick(work: _Work, key: str, address: Address, message: Tick) -> None:
    """Everything due was applied before the handler ran; a tick carries nothing else."""


_HANDLERS: dict[type, Any] = {
    CalloutVerified: _on_callout_verified,
    CalloutRejected: _on_callout_rejected,
    CalloutTempfailed: _on_callout_tempfailed,
    CatchAllChecked: _on_catch_all_checked,
    RecipientDelivered: _on_delivered,
    OutboundSent: _on_outbound,
    CreateUser: _on_create_user,
    ImportUser: _on_create_user,
    CreateFunctional: _on_create_functional,
    MarkInvalid: _on_mark_invalid,
    RemoveInvalid: _on_remove_invalid,
    DeleteAddress: _on_delete,
    EraseAddress: _on_erase,
    AddAlias: _on_add_alias,
    AliasRequest: _on_alias_request,
    AliasGrant: _on_alias_grant,
    AliasRelease: _on_alias_release,
    Tick: _on_tick,
}
