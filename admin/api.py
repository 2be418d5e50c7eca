"""The admin HTTP API (``/v1``): tenants and settings for operators; the Discovered and Marked
Invalid lists, actions, users, reports and history for a tenant's admins.

Writes are published: tenants and provider defaults to ``discovery.tenants`` (their source of
truth), actions to ``discovery.commands`` (answered 202 with command ids; the streams topology
applies them and the status endpoint reports the result). Reads come from the views and from
ClickHouse, through the queries of ``sinks.queries``. Every tenant route checks the token's
tenant first.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError

from smtp_discovery.admin import errors
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.erasure import erase_address
from smtp_discovery.admin.errors import ApiError, quoted
from smtp_discovery.admin.limits import (
    MAX_IMPORT_BYTES,
    UNAUTHENTICATED,
    RequestLimits,
    authenticated,
)
from smtp_discovery.admin.offboarding import remove_tenant
from smtp_discovery.admin.overview import router as overview
from smtp_discovery.admin.tokens import Principal, TokenInfo, new_token
from smtp_discovery.jobs.render import FORMATS, as_csv
from smtp_discovery.jobs.reports import Kind, Tenant, build
from smtp_discovery.platform.tenant_writes import Change, WriteContended
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.address import AddressError, parse_address
from smtp_discovery.schemas.admin import AdminToken
from smtp_discovery.schemas.calendar import Week
from smtp_discovery.schemas.commands import (
    AddAlias,
    CreateFunctional,
    CreateUser,
    DeleteAddress,
    ImportUser,
    MarkInvalid,
    RemoveInvalid,
)
from smtp_discovery.schemas.state import UserRole
from smtp_discovery.schemas.tenant import (
    DiscoverySettings,
    ProviderDefaults,
    TenantConfig,
    changed_settings,
    provider_own,
    revised,
)
from smtp_discovery.schemas.topics import ADMIN_TOKENS, COMMANDS
from smtp_discovery.sinks import queries

MAX_BATCH = 1000


# ---- authentication ---------------------------------------------------------------------------


def context(request: Request) -> AdminContext:
    return request.app.state.context  # type: ignore[no-any-return]


Context = Annotated[AdminContext, Depends(context)]


async def principal(
    request: Request, ctx: Context, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """The caller ``admin.limits.RequestLimits`` authenticated from ``authorization`` before the
    body was read (the header is declared here so that the OpenAPI document shows it). Its
    token's use is recorded, at most hourly, for the token list."""
    found = authenticated(request.scope)
    if found is None:  # only without the middleware: refuse rather than trust
        raise ApiError(401, "unauthenticated", UNAUTHENTICATED)
    ctx.record_use(found)
    return found


Caller = Annotated[Principal, Depends(principal)]
Search = Annotated[str, Query(max_length=200)]
Page = Annotated[int, Query(ge=1, le=100_000)]
PerPage = Annotated[int, Query(ge=1, le=500)]
"""The query parameters every list (tenants, discovered, invalid) pages and searches with."""


def operator(caller: Caller) -> Principal:
    if not caller.operator:
        raise ApiError(403, "operators_only", "this needs a provider operator's token")
    return caller


Operator = Annotated[Principal, Depends(operator)]


def tenant_of(ctx: AdminContext, caller: Principal, tenant_id: str) -> TenantConfig:
    if not caller.may_see(tenant_id):
        raise ApiError(403, "other_tenant", "this token belongs to another tenant")
    tenant = ctx.tenants.tenant(tenant_id)
    if tenant is None:
        raise ApiError(404, "unknown_tenant", f"no tenant {quoted(tenant_id)}")
    return tenant


# ---- models -----------------------------------------------------------------------------------


class TenantBody(BaseModel):
    """A tenant as operators write it; validated by the same contract the topic carries."""

    name: str
    domains: list[str] = []
    destinations: list[dict[str, Any]] = []
    outbound_ranges: list[str] = []
    tech_contact: str | None = None
    admin_contact: str | None = None
    settings: dict[str, Any] = {}


class NewTenant(TenantBody):
    tenant_id: str


class UserFields(BaseModel):
    address: str
    first_name: str = Field(default="", max_length=100)
    surname: str = Field(default="", max_length=100)


class Action(BaseModel):
    action: Literal[
        "create_user", "create_functional", "mark_invalid", "remove_invalid", "add_alias"
    ]
    addresses: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    users: list[UserFields] = Field(default=[], description="Names per address (create_user).")
    role: UserRole | None = None
    primary: str | None = Field(default=None, description="The user to alias to (add_alias).")


# ---- helpers ----------------------------------------------------------------------------------


def _tenant_config(
    directory: TenantDirectory, clock: datetime, tenant_id: str, body: TenantBody,
    previous: TenantConfig | None,
) -> TenantConfig:  # fmt: skip
    """The tenant as ``body`` describes it, the next revision of ``previous``."""
    try:
        tenant = TenantConfig.model_validate(
            {
                **body.model_dump(),
                "tenant_id": tenant_id,
                "event_time": clock,
                "verification_cache_epoch": previous.verification_cache_epoch if previous else 0,
                "revision": previous.revision + 1 if previous else 1,
            }
        )
    except ValidationError as exc:
        raise ApiError(422, "invalid_tenant", errors.problems(exc.errors())) from None
    for domain in tenant.domains:
        owner = directory.tenant_for_domain(domain)
        if owner is not None and owner.tenant_id != tenant_id:
            # A domain the contract validated (at most 255 octets, no control characters).
            raise ApiError(409, "domain_taken", f"{domain} is registered by another tenant")
    return tenant


def _etag(revision: int) -> str:
    return f'"{revision}"'


def _check_match(if_match: str | None, revision: int, what: str) -> None:
    """``If-Match``: write only if the client saw the current revision (RFC 9110 13.1.1).
    Without the header the write is unconditional, but still made on the current version."""
    if if_match is None:
        return
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if "*" in tags or _etag(revision) in tags:
        return
    raise ApiError(
        412,
        "changed_meanwhile",
        f"{what} changed since you read it (it is at revision {revision} now): "
        "read it again, then make your change on what you read",
    )


async def _write_tenants(ctx: AdminContext, change: Change, response: Response) -> Any:
    """The one record ``change`` decides, written; its revision becomes the answer's ETag."""
    try:
        (record,) = await ctx.tenant_writer.write(change)
    except WriteContended as exc:
        raise ApiError(503, "busy", f"{exc}; try again") from None
    response.headers["ETag"] = _etag(record.revision)
    return record


IfMatch = Annotated[str | None, Header(description="An ETag from a read: write only over it.")]


def _address(text: str) -> str:
    try:
        return parse_address(text).display
    except AddressError as exc:
        message = f"{quoted(text)}: {errors.clipped(exc.message)}"
        raise ApiError(422, "invalid_address", message) from None


def _in_tenant(tenant: TenantConfig, address: str) -> str:
    parsed = parse_address(_address(address))
    if parsed.domain not in tenant.domains:
        raise ApiError(
            422,
            "foreign_domain",
            f"{quoted(address)} is not in a registered domain of {tenant.name}",
        )
    return parsed.display


def _tenant_view(ctx: AdminContext, tenant: TenantConfig) -> dict[str, Any]:
    return {
        **tenant.model_dump(mode="json", exclude={"schema_version", "event_id", "type"}),
        "effective_settings": ctx.tenants.settings(tenant.tenant_id).model_dump(mode="json"),  # type: ignore[union-attr]
    }


def _settings_view(effective: DiscoverySettings, overrides: dict[str, Any]) -> dict[str, Any]:
    """Each setting's value, whether this level set it (``overridden``: a tenant's override of
    the provider default, or a provider default changed from the built-in vendor value), the
    vendor's recommended value and its description."""
    fields = DiscoverySettings.model_fields
    return {
        name: {
            "value": getattr(effective, name),
            "overridden": name in overrides,
            "recommended": (fields[name].json_schema_extra or {}).get("recommended"),  # type: ignore[union-attr]
            "description": fields[name].description,
        }
        for name in fields
    }


# ---- routes -----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1")


@router.get("/tenants", tags=["tenants"])
async def list_tenants(
    ctx: Context,
    caller: Caller,
    q: Search = "",
    page: Page = 1,
    per_page: PerPage = 50,
) -> dict[str, Any]:
    """The tenants this token may see, in id order, a page at a time; ``q`` keeps those whose
    id, name or a domain contains it (ignoring case)."""
    found = ctx.tenants.find(q, only=caller.tenant_id)
    start = (page - 1) * per_page
    return {"total": len(found), "page": page, "per_page": per_page,
            "items": [_tenant_view(ctx, t) for t in found[start : start + per_page]]}  # fmt: skip


@router.post("/tenants", status_code=201, tags=["tenants"])
async def create_tenant(
    body: NewTenant, ctx: Context, caller: Operator, response: Response
) -> dict[str, Any]:
    def change(directory: TenantDirectory) -> list[TenantConfig]:
        if directory.tenant(body.tenant_id) is not None:
            raise ApiError(
                409, "tenant_exists", f"tenant {quoted(body.tenant_id)} exists; PUT to change it"
            )
        return [_tenant_config(directory, ctx.clock.now(), body.tenant_id, body, None)]

    tenant = await _write_tenants(ctx, change, response)
    return _tenant_view(ctx, tenant)


@router.get("/tenants/{tenant_id}", tags=["tenants"])
async def get_tenant(
    tenant_id: str, ctx: Context, caller: Caller, response: Response
) -> dict[str, Any]:
    tenant = tenant_of(ctx, caller, tenant_id)
    response.headers["ETag"] = _etag(tenant.revision)
    return _tenant_view(ctx, tenant)


@router.put("/tenants/{tenant_id}", tags=["tenants"])
async def update_tenant(
    tenant_id: str,
    body: TenantBody,
    ctx: Context,
    caller: Operator,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    tenant_of(ctx, caller, tenant_id)

    def change(directory: TenantDirectory) -> list[TenantConfig]:
        current = _current(directory, tenant_id)
        _check_match(if_match, current.revision, f"tenant {quoted(tenant_id)}")
        return [_tenant_config(directory, ctx.clock.now(), tenant_id, body, current)]

    tenant = await _write_tenants(ctx, change, response)
    return _tenant_view(ctx, tenant)


def _current(directory: TenantDirectory, tenant_id: str) -> TenantConfig:
    current = directory.tenant(tenant_id)
    if current is None:
        raise ApiError(404, "unknown_tenant", f"no tenant {quoted(tenant_id)}")
    return current


@router.get("/settings/defaults", tags=["settings"])
async def get_defaults(ctx: Context, caller: Caller, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = _etag(ctx.tenants.defaults_revision)
    return _settings_view(ctx.tenants.defaults, provider_own(ctx.tenants.defaults))


@router.put("/settings/defaults", tags=["settings"])
async def set_defaults(
    body: dict[str, Any],
    ctx: Context,
    caller: Operator,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Change provider defaults: the named settings change, a null resets one to the built-in
    vendor value, the others stay (``schemas.tenant.changed_settings``)."""

    def change(directory: TenantDirectory) -> list[ProviderDefaults]:
        _check_match(if_match, directory.defaults_revision, "the provider defaults")
        own = _changed(body, provider_own(directory.defaults))
        revision = directory.defaults_revision + 1
        settings = DiscoverySettings.model_validate(own)
        return [ProviderDefaults(event_time=ctx.clock.now(), settings=settings, revision=revision)]

    defaults = await _write_tenants(ctx, change, response)
    return _settings_view(defaults.settings, provider_own(defaults.settings))


def _changed(body: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    try:
        return changed_settings(body, own)
    except ValueError as exc:
        raise ApiError(422, "invalid_settings", errors.clipped(str(exc))) from None


@router.get("/tenants/{tenant_id}/settings", tags=["settings"])
async def get_settings(
    tenant_id: str, ctx: Context, caller: Caller, response: Response
) -> dict[str, Any]:
    tenant = tenant_of(ctx, caller, tenant_id)
    response.headers["ETag"] = _etag(tenant.revision)
    return _settings_view(ctx.tenants.settings(tenant_id), tenant.settings)  # type: ignore[arg-type]


@router.patch("/tenants/{tenant_id}/settings", tags=["settings"])
async def change_settings(
    tenant_id: str,
    body: dict[str, Any],
    ctx: Context,
    caller: Caller,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Set overrides; a null value removes the override (the provider default applies) by the
    same rule as the provider defaults (``schemas.tenant.changed_settings``)."""
    tenant_of(ctx, caller, tenant_id)

    def change(directory: TenantDirectory) -> list[TenantConfig]:
        current = _current(directory, tenant_id)
        _check_match(if_match, current.revision, f"the settings of {quoted(tenant_id)}")
        return [revised(current, ctx.clock.now(), settings=_changed(body, current.settings))]

    tenant = await _write_tenants(ctx, change, response)
    return _settings_view(ctx.tenants.settings(tenant_id), tenant.settings)  # type: ignore[arg-type]


@router.get("/tenants/{tenant_id}/discovered", tags=["lists"])
async def discovered(
    tenant_id: str,
    ctx: Context,
    caller: Caller,
    weeks: Annotated[int, Query(ge=1, le=52)] = 3,
    q: Search = "",
    sort: queries.DiscoveredSort = "discovered_at",
    order: queries.Order = "desc",
    page: Page = 1,
    per_page: PerPage = 50,
) -> dict[str, Any]:
    tenant = tenant_of(ctx, caller, tenant_id)
    settings = ctx.tenants.settings(tenant_id)
    assert settings is not None
    since = ctx.clock.now() - timedelta(weeks=weeks)
    offset = (page - 1) * per_page
    found = await ctx.ask(queries.discovered_page, tenant_id, since=since, search=q,
                       sort=sort, order=order, limit=per_page, offset=offset)  # fmt: skip
    schedule = ctx.schedule
    now = ctx.clock.now()
    items = []
    for row in found.rows:
        at = row.discovered_at
        ends, left = (
            schedule.expiry(at, settings.notices_before_expiry, now) if at else (None, None)
        )
        items.append(
            {
                "address": row.address,
                "discovered_at": at,
                "discovered_how": row.discovered_reason,
                "first_seen": row.first_seen,
                "last_seen": row.last_seen,
                "messages": row.messages,
                "clean_messages": row.clean_messages,
                "notices_left": left,
                "expires_at": ends,
            }
        )
    return {"tenant": tenant.tenant_id, "total": found.total, "page": page, "per_page": per_page,
            "items": items}  # fmt: skip


@router.get("/tenants/{tenant_id}/invalid", tags=["lists"])
async def invalid_list(
    tenant_id: str,
    ctx: Context,
    caller: Caller,
    q: Search = "",
    page: Page = 1,
    per_page: PerPage = 50,
) -> dict[str, Any]:
    tenant_of(ctx, caller, tenant_id)
    found = await ctx.ask(queries.invalid_page, tenant_id, search=q, limit=per_page,
                       offset=(page - 1) * per_page)  # fmt: skip
    return {
        "total": found.total,
        "items": [{"address": r.address, "since": r.since, "reason": r.reason} for r in found.rows],
    }


@router.get("/tenants/{tenant_id}/users", tags=["users"])
async def users(
    tenant_id: str,
    ctx: Context,
    caller: Caller,
    q: Annotated[str, Query(max_length=200, description="Address or name, for typeahead")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[dict[str, Any]]:
    tenant_of(ctx, caller, tenant_id)
    found = await ctx.ask(queries.users_matching, tenant_id, search=q, limit=limit)
    return [
        {"address": u.address, "first_name": u.first_name, "surname": u.surname,
         "status": u.status, "role": u.role or None}
        for u in found
    ]  # fmt: skip


@router.get("/tenants/{tenant_id}/accounts", tags=["users"])
async def accounts(
    tenant_id: str,
    ctx: Context,
    caller: Caller,
    q: Annotated[str, Query(max_length=200, description="Address, name or an alias's user")] = "",
    status: Annotated[
        queries.AccountStatus | None, Query(description="Only these; none: all three")
    ] = None,
    page: Page = 1,
    per_page: PerPage = 50,
) -> dict[str, Any]:
    """The Users list: the tenant's users, functional accounts and aliases (each with its
    user), by address, a page at a time."""
    tenant = tenant_of(ctx, caller, tenant_id)
    statuses = (status,) if status else queries.ACCOUNT_STATUSES
    found = await ctx.ask(queries.accounts_page, tenant_id, search=q, statuses=statuses,
                       limit=per_page, offset=(page - 1) * per_page)  # fmt: skip
    items = [
        {"address": a.address, "status": a.status, "role": a.role or None,
         "first_name": a.first_name, "surname": a.surname, "primary": a.primary or None,
         "aliases": a.aliases, "since": a.since, "reason": a.reason}
        for a in found.rows
    ]  # fmt: skip
    return {"tenant": tenant.tenant_id, "total": found.total, "page": page, "per_page": per_page,
            "items": items}  # fmt: skip


@router.post("/tenants/{tenant_id}/actions", status_code=202, tags=["actions"])
async def act(tenant_id: str, body: Action, ctx: Context, caller: Caller) -> dict[str, Any]:
    """Apply one action to many addresses: one command each, answered with their ids."""
    tenant = tenant_of(ctx, caller, tenant_id)
    names = {_address(u.address).lower(): u for u in body.users}
    common = {"tenant_id": tenant_id, "event_time": ctx.clock.now(), "actor": caller.actor}
    commands = []
    for raw in body.addresses:
        address = _in_tenant(tenant, raw)
        fields = {**common, "address": address}
        if body.action == "create_user":
            person = names.get(address.lower())
            commands.append(CreateUser(**fields, role=body.role,
                                       first_name=person.first_name if person else "",
                                       surname=person.surname if person else ""))  # fmt: skip
        elif body.action == "create_functional":
            commands.append(CreateFunctional(**fields))
        elif body.action == "mark_invalid":
            commands.append(MarkInvalid(**fields))
        elif body.action == "remove_invalid":
            commands.append(RemoveInvalid(**fields))
        else:
            if not body.primary:
                raise ApiError(422, "primary_required", "add_alias needs the user (primary)")
            try:
                commands.append(AddAlias(**fields, primary=_in_tenant(tenant, body.primary)))
            except ValidationError as exc:
                raise ApiError(422, "invalid_alias", errors.problems(exc.errors())) from None
    await ctx.publish(COMMANDS, commands)
    return {"commands": [{"address": c.address, "command_id": c.event_id} for c in commands]}


@router.get("/tenants/{tenant_id}/commands/{command_id}", tags=["actions"])
async def command_status(
    tenant_id: str, command_id: str, ctx: Context, caller: Caller
) -> dict[str, Any]:
    tenant_of(ctx, caller, tenant_id)
    result = ctx.results.get(command_id)
    if result is None or result.tenant_id != tenant_id:
        return {"command_id": command_id, "status": "pending"}
    return {
        "command_id": command_id,
        "status": result.outcome,
        "address": result.address,
        "reason_code": result.reason_code,
        "message": result.message,
    }


@router.post("/tenants/{tenant_id}/users/import", status_code=202, tags=["users"])
async def import_users(
    tenant_id: str, request: Request, ctx: Context, caller: Caller
) -> dict[str, Any]:
    """CSV (text/csv body) with a header: address, first_name, surname, role."""
    tenant = tenant_of(ctx, caller, tenant_id)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_IMPORT_BYTES:
            raise ApiError(413, "too_large", f"import at most {MAX_IMPORT_BYTES} bytes at a time")
    text = bytes(body).decode("utf-8-sig", "replace")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "address" not in reader.fieldnames:
        raise ApiError(422, "invalid_csv", "the CSV needs a header row with an address column")
    commands, problems = [], []
    for row_number, row in enumerate(reader, start=2):
        try:
            address = _in_tenant(tenant, (row.get("address") or "").strip())
            role = (row.get("role") or "").strip() or None
            commands.append(ImportUser(tenant_id=tenant_id, event_time=ctx.clock.now(),
                                       actor=caller.actor, address=address,
                                       first_name=(row.get("first_name") or "").strip(),
                                       surname=(row.get("surname") or "").strip(),
                                       role=role))  # fmt: skip
        except ApiError as exc:
            problems.append({"row": row_number, "message": exc.message})
        except ValidationError as exc:
            problems.append({"row": row_number, "message": errors.problems(exc.errors())})
        if len(commands) + len(problems) > 100_000:
            raise ApiError(413, "too_many_rows", "import at most 100,000 rows at a time")
    if commands:
        await ctx.publish(COMMANDS, commands)
    return {
        "accepted": [{"address": c.address, "command_id": c.event_id} for c in commands],
        "errors": problems,
    }


@router.delete("/tenants/{tenant_id}/users/{address}", status_code=202, tags=["users"])
async def delete_user(tenant_id: str, address: str, ctx: Context, caller: Caller) -> dict[str, Any]:
    tenant = tenant_of(ctx, caller, tenant_id)
    command = DeleteAddress(tenant_id=tenant_id, event_time=ctx.clock.now(), actor=caller.actor,
                            address=_in_tenant(tenant, address))  # fmt: skip
    await ctx.publish(COMMANDS, [command])
    return {"command_id": command.event_id}


@router.post("/tenants/{tenant_id}/verification-cache/clear", tags=["users"])
async def clear_cache(
    tenant_id: str, ctx: Context, caller: Caller, response: Response
) -> dict[str, Any]:
    tenant_of(ctx, caller, tenant_id)

    def change(directory: TenantDirectory) -> list[TenantConfig]:
        current = _current(directory, tenant_id)
        epoch = current.verification_cache_epoch + 1
        return [revised(current, ctx.clock.now(), verification_cache_epoch=epoch)]

    tenant = await _write_tenants(ctx, change, response)
    return {"verification_cache_epoch": tenant.verification_cache_epoch}


@router.get("/tenants/{tenant_id}/reports/{kind}", tags=["reports"])
async def report(
    tenant_id: str,
    kind: Kind,
    ctx: Context,
    caller: Caller,
    week: Annotated[str | None, Query(pattern=r"^\d{4}-W\d{2}$")] = None,
    format: Literal["json", "csv", "text", "html"] = "json",
) -> Response:
    """A weekly report as it is sent: ``html`` and ``text`` are the mail's two parts (the same
    function renders them), ``json`` adds its summary to the rows, ``csv`` is the rows only."""
    config = tenant_of(ctx, caller, tenant_id)
    schedule = ctx.schedule
    try:
        covered = Week.parse(week) if week else schedule.latest_slot(ctx.clock.now())[1]
    except ValueError as exc:
        raise ApiError(422, "invalid_week", errors.clipped(str(exc))) from None
    if not 1970 <= covered.year <= 2299:  # beyond DateTime64 (to 2299) its query failed: a 500
        raise ApiError(422, "invalid_week", f"{covered}: reports cover weeks of 1970 to 2299")
    settings = ctx.tenants.settings(tenant_id)
    assert settings is not None
    who = Tenant(tenant_id, config.name, config.tech_contact or "", config.admin_contact or "",
                 settings)  # fmt: skip
    built = await ctx.ask(build, who, kind, covered, schedule)
    if format == "csv":
        filename = f"{tenant_id}-{kind}-{covered}.csv"
        return Response(
            as_csv(built),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    media = {"json": "application/json", "text": "text/plain", "html": "text/html"}[format]
    return Response(FORMATS[format](built, ctx.presentation), media_type=f"{media}; charset=utf-8")


@router.delete("/tenants/{tenant_id}", tags=["tenants"])
async def remove_tenant_route(
    tenant_id: Annotated[str, Path(max_length=64)],
    ctx: Context,
    caller: Operator,
    dry_run: Annotated[bool, Query(description="Only say what would go.")] = False,
) -> dict[str, Any]:
    """Offboard a tenant (``admin.offboarding``): its mail stops at once, its tokens are revoked
    and its state erased from the topics, the worker's tables and ClickHouse. ``dry_run`` says
    what will go. Safe to run again: a 504 ``erasure_incomplete`` means run it again to finish;
    a tenant already removed from the tenants topic is finished."""
    return await remove_tenant(ctx, tenant_id, caller.actor, dry_run=dry_run)


class ErasureRequest(BaseModel):
    address: str = Field(max_length=512, description="The address to erase everywhere.")


@router.post("/tenants/{tenant_id}/erasures", tags=["data protection"])
async def erase(
    tenant_id: str, body: ErasureRequest, ctx: Context, caller: Operator
) -> dict[str, Any]:
    """Erase one address everywhere the system keeps it (``admin.erasure``): done when this
    answers; a 504 ``erasure_incomplete`` means run it again to finish. Logged by a hash."""
    tenant = tenant_of(ctx, caller, tenant_id)
    address = _in_tenant(tenant, body.address)
    done = await erase_address(ctx, tenant, address, caller.actor)
    return done.view()


class NewToken(BaseModel):
    tenant_id: str | None = Field(default=None, description="None: a provider operator's token.")
    label: str = Field(default="", max_length=200, description="What the token is for.")


def _token_view(info: TokenInfo) -> dict[str, Any]:
    return {"token_id": info.token_id, "tenant_id": info.tenant_id, "label": info.label,
            "created": info.created, "last_used": info.last_used}  # fmt: skip


def _signing_key(ctx: AdminContext) -> bytes:
    if ctx.token_key is None:
        raise ApiError(503, "no_token_key", "this API holds no token key: it cannot sign tokens")
    return ctx.token_key


def _token_of(ctx: AdminContext, caller: Principal, token_id: str) -> AdminToken:
    """A published token the caller may manage: an operator any, a tenant admin their
    tenant's (an operator's token is beyond every tenant admin)."""
    record = ctx.tokens.record(token_id)
    if record is None:
        raise ApiError(404, "unknown_token", f"no token {quoted(token_id)}")
    if not caller.operator and record.tenant_id != caller.tenant_id:
        raise ApiError(403, "other_tenant", "this token belongs to another tenant")
    return record


@router.get("/tokens", tags=["tokens"])
async def list_tokens(
    ctx: Context,
    caller: Caller,
    tenant: Annotated[str | None, Query(max_length=64, description="Only this tenant's.")] = None,
) -> dict[str, Any]:
    """The tokens the caller may manage: an operator's, every token (or one tenant's); a tenant
    admin's, their tenant's. Never a secret."""
    if not caller.operator:
        if tenant is not None and tenant != caller.tenant_id:
            raise ApiError(403, "other_tenant", "this token belongs to another tenant")
        tenant = caller.tenant_id
    items = [_token_view(info) for info in ctx.tokens.listing(tenant)]
    return {"total": len(items), "items": items}


@router.post("/tokens", status_code=201, tags=["tokens"])
async def create_token(body: NewToken, ctx: Context, caller: Operator) -> dict[str, Any]:
    """A new token; its secret is in this answer only."""
    if body.tenant_id is not None:
        tenant_of(ctx, caller, body.tenant_id)
    bearer, record = new_token(body.tenant_id, body.label, key=_signing_key(ctx))
    await ctx.publish(ADMIN_TOKENS, [record])
    return {"token": bearer, "token_id": record.token_id, "tenant_id": record.tenant_id,
            "label": record.label, "created": record.event_time}  # fmt: skip


@router.post("/tokens/{token_id}/rotate", tags=["tokens"])
async def rotate_token(token_id: str, ctx: Context, caller: Operator) -> dict[str, Any]:
    """A new secret for the token (same id, tenant and label); the old one stops working on
    every replica as soon as it reads the new record."""
    record = _token_of(ctx, caller, token_id)
    bearer, fresh = new_token(record.tenant_id, record.label, key=_signing_key(ctx),
                              token_id=record.token_id)  # fmt: skip
    await ctx.publish(ADMIN_TOKENS, [fresh])
    return {"token": bearer, "token_id": fresh.token_id, "tenant_id": fresh.tenant_id,
            "label": fresh.label, "created": fresh.event_time}  # fmt: skip


@router.delete("/tokens/{token_id}", tags=["tokens"])
async def revoke_token(token_id: str, ctx: Context, caller: Caller) -> dict[str, Any]:
    """Revoke a token: a tombstone on the tokens topic; every replica refuses it once it has
    read it (seconds)."""
    record = _token_of(ctx, caller, token_id)
    await ctx.revoke(record.token_id)
    return {"revoked": record.token_id}


@router.get("/tenants/{tenant_id}/history", tags=["reports"])
async def history(
    tenant_id: str,
    ctx: Context,
    caller: Caller,
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
) -> list[dict[str, Any]]:
    tenant_of(ctx, caller, tenant_id)
    since = (ctx.clock.now() - timedelta(days=days)).date()
    found = await ctx.ask(queries.daily_counts, tenant_id, since)
    return [{"day": d.day, **d.counts} for d in found]


API_HEADERS = {
    # Tenant data: no cache may keep it, and no browser may guess another type for it.
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # A report previewed as HTML comes from the console's origin: nothing in it may run, load
    # or be framed (its styles are inline).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


def create_app(ctx: AdminContext, *, docs: bool = False) -> FastAPI:
    """The API and the console. ``docs``: serve Swagger UI at /docs, a page that loads its
    scripts from a public CDN onto this origin, so only when the operator asks for it."""
    app = FastAPI(
        title="smtp-discovery admin API",
        version="1",
        description="Tenants, settings, discovered addresses and their management.",
        docs_url="/docs" if docs else None,
        redoc_url=None,
    )
    app.state.context = ctx
    errors.install(app)
    # Added first, so inside ``count_responses``: its refusals are counted and carry API_HEADERS.
    # The context is looked up per request: a test may set it after the app is made.
    app.add_middleware(
        RequestLimits, authenticate=lambda bearer: app.state.context.tokens.authenticate(bearer)
    )

    @app.middleware("http")
    async def count_responses(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        current = getattr(request.app.state, "context", None)
        if current is not None:
            current.responses[f"{response.status_code // 100}xx"] += 1
        if request.url.path.startswith("/v1/"):
            for name, value in API_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    app.include_router(router)
    app.include_router(overview, dependencies=[Depends(operator)])  # operators' figures
    from smtp_discovery.admin.console import (
        router as console,  # the web console: pages calling this API
    )

    app.include_router(console)
    return app
