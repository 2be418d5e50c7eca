"""Operator commands in a terminal, through the API's own routes (same validation, same
publishing): the CLI runs the app in-process with a token that exists only in this process."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import load_key, new_token
from smtp_discovery.jobs.render import Presentation
from smtp_discovery.platform.clickhouse import connect
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.errors import OperatorError
from smtp_discovery.platform.kafka import client_options
from smtp_discovery.platform.running import RunningSystem, data_dir_in_use, on_cluster

LIST_PAGE = 500
"""Tenants per request of ``tenant list``: a page at a time, printed as it comes."""


def add_parsers(sub: Any) -> None:
    sub.add_parser("admin", help="run the admin API and web console (needs KAFKA_BOOTSTRAP)")
    erase = sub.add_parser(
        "erase", help="erase one address everywhere it is kept (a data subject's request)"
    )
    erase.add_argument("address")
    erase.add_argument("--tenant", required=True, help="the address's tenant")
    token = sub.add_parser("token", help="admin API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="make a token (printed once)")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="a token for this tenant's admins")
    who.add_argument("--operator", action="store_true", help="a provider operator's token")
    create.add_argument("--label", default="", help="what the token is for")
    listing = token_sub.add_parser("list", help="the tokens: id, tenant, label, created, last used")
    listing.add_argument("--tenant", help="only this tenant's tokens")
    revoke = token_sub.add_parser("revoke", help="revoke a token (every admin API refuses it)")
    revoke.add_argument("token_id")
    rotate = token_sub.add_parser("rotate", help="a new secret for a token (printed once)")
    rotate.add_argument("token_id")
    token_sub.add_parser(
        "init-key",
        help="make the admin role's token key if it is missing (DISCOVERY_ADMIN_TOKEN_KEY_FILE; "
        "`up` makes its own)",
    )

    tenant = sub.add_parser("tenant", help="tenants (operators)")
    tenant_sub = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    add = tenant_sub.add_parser("add", help="register a tenant")
    add.add_argument("tenant_id")
    add.add_argument("--name", required=True)
    add.add_argument("--domain", action="append", default=[], help="repeat for each domain")
    add.add_argument(
        "--destination",
        action="append",
        default=[],
        help="host[:port][/priority], or mx:domain[/priority]; repeatable",
    )
    add.add_argument("--outbound", action="append", default=[], help="outbound IP range (CIDR)")
    add.add_argument("--tech-contact")
    add.add_argument("--admin-contact")
    listing = tenant_sub.add_parser(
        "list", help="the tenants, in id order, read a page at a time (never all at once)"
    )
    listing.add_argument("--search", default="", help="only those whose id, name or a domain "
                         "contains this")  # fmt: skip
    listing.add_argument("--limit", type=int, help="at most this many")
    show = tenant_sub.add_parser("show", help="one tenant with its effective settings")
    show.add_argument("tenant_id")
    remove = tenant_sub.add_parser(
        "remove", help="offboard a tenant: stop its mail, revoke its tokens, erase its state"
    )
    remove.add_argument("tenant_id")
    remove.add_argument("--dry-run", action="store_true", help="only say what would go")
    set_ = tenant_sub.add_parser("set", help="change settings: name=value ... (value null resets)")
    set_.add_argument("tenant_id")
    set_.add_argument("settings", nargs="+", metavar="NAME=VALUE")

    users = sub.add_parser("users", help="a tenant's users")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    imp = users_sub.add_parser("import", help="import users from a CSV file")
    imp.add_argument("tenant_id")
    imp.add_argument("file", type=Path, help="CSV with address, first_name, surname, role")


def _destination(text: str) -> dict[str, Any]:
    spec, _, priority = text.partition("/")
    out: dict[str, Any] = {"priority": int(priority)} if priority else {}
    if spec.startswith("mx:"):
        return {**out, "kind": "mx", "domain": spec[3:]}
    host, _, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
    return {**out, "kind": "static", "host": host, **({"port": int(port)} if port else {})}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@asynccontextmanager
async def api(
    config: RuntimeConfig, token_key: bytes | None = None, clickhouse: Any = None
) -> AsyncIterator[tuple[httpx.AsyncClient, AdminContext]]:
    config = on_cluster(config)
    options = client_options(config)
    ctx = AdminContext(options, config.topics, clickhouse, config.analytics_layout,
                       token_key=token_key, sink_group=config.sink_group,
                       streams_group=config.streams_app_id,
                       presentation=Presentation.of(config))  # fmt: skip
    await ctx.start()
    bearer, record = new_token(None, "cli", key=None)  # admitted here, never published
    ctx.tokens.admit(record)
    transport = httpx.ASGITransport(app=create_app(ctx))
    try:
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://cli",
            headers={"Authorization": f"Bearer {bearer}"},
        ) as client:
            yield client, ctx
    finally:
        await ctx.stop()


async def _token(client: httpx.AsyncClient, args: argparse.Namespace) -> int:
    command = args.token_command
    if command == "create":
        tenant = None if args.operator else args.tenant
        body = _check(await client.post("/v1/tokens", json={"tenant_id": tenant,
                                                            "label": args.label}))  # fmt: skip
        print(body["token"])
    elif command == "list":
        params = {"tenant": args.tenant} if args.tenant else {}
        body = _check(await client.get("/v1/tokens", params=params))
        for t in body["items"]:
            print(f"{t['token_id']:14} {t['tenant_id'] or '(operator)':20} "
                  f"created {t['created'][:19]}  last used {(t['last_used'] or 'never')[:19]:19}"
                  f"  {t['label']}")  # fmt: skip
    elif command == "revoke":
        body = _check(await client.delete(f"/v1/tokens/{args.token_id}"))
        print(f"{body['revoked']}: revoked (every admin API refuses it within seconds)")
    else:
        body = _check(await client.post(f"/v1/tokens/{args.token_id}/rotate"))
        print(body["token"])
    return 0


async def _erase(config: RuntimeConfig, args: argparse.Namespace) -> int:
    path, body = f"/v1/tenants/{args.tenant}/erasures", {"address": args.address}
    answer = await _with_clickhouse(config, "POST", path, body)
    rows = ", ".join(f"{table} {count}" for table, count in answer["rows"].items())
    print(f"erased (logged as {answer['subject']}): {answer['aliases']} aliases; rows {rows}")
    return 0


async def _remove(config: RuntimeConfig, args: argparse.Namespace) -> int:
    dry = "?dry_run=true" if args.dry_run else ""
    answer = await _with_clickhouse(config, "DELETE", f"/v1/tenants/{args.tenant_id}{dry}")
    rows = ", ".join(f"{table} {count}" for table, count in answer["rows"].items() if count)
    what = "would remove" if args.dry_run else "removed"
    record = "the tenant record" if answer["registered"] else "no tenant record (gone already)"
    print(
        f"{args.tenant_id}: {what} {record}, {answer['tokens']} tokens, "
        f"{answer['addresses']} addresses; rows {rows or 'none'}"
    )
    return 0


async def _with_clickhouse(config: RuntimeConfig, method: str, path: str, body: Any = None) -> Any:
    """A route that needs ClickHouse: through the running `up` when there is one (its chDB is
    its own), else in-process on the cluster's Kafka and ClickHouse server."""
    if not config.kafka_bootstrap and data_dir_in_use(config.data_dir):
        status, answer = await asyncio.to_thread(
            RunningSystem(config.data_dir).call, method, path, body, 600
        )
        if status >= 400:
            raise OperatorError(f"{answer['error']['code']}: {answer['error']['message']}")
        return answer
    clickhouse = await asyncio.to_thread(connect, config.effective_clickhouse_url)
    async with api(config, clickhouse=clickhouse) as (client, _ctx):
        return _check(await client.request(method, path, json=body, timeout=600))


def _check(response: httpx.Response) -> Any:
    body = response.json()
    if response.status_code >= 400:
        raise OperatorError(f"{body['error']['code']}: {body['error']['message']}")
    return body


async def run(config: RuntimeConfig, args: argparse.Namespace) -> int:
    if args.command == "token" and args.token_command == "init-key":
        path = config.token_key_path
        made = not path.exists()
        load_key(path, create=True)
        print(f"{'made' if made else 'kept'} the admin token key {path} (mode 0600)")
        return 0
    if args.command == "token":
        # Token commands are the admin role's: they need its key (Kafka access alone mints
        # nothing), and go through the API's own routes.
        key = load_key(config.token_key_path)
        async with api(config, token_key=key) as (client, _ctx):
            return await _token(client, args)
    if args.command == "erase":
        return await _erase(config, args)
    if args.command == "tenant" and args.tenant_command == "remove":
        return await _remove(config, args)
    if args.command == "cache":
        async with api(config) as (client, _ctx):
            path = f"/v1/tenants/{args.tenant}/verification-cache/clear"
            epoch = _check(await client.post(path))["verification_cache_epoch"]
        print(f"{args.tenant}: verification cache cleared (epoch {epoch})")
        return 0
    if args.command == "users":
        if not args.file.is_file():
            raise OperatorError(f"{args.file} is not a file")
        async with api(config) as (client, _ctx):
            body = _check(await client.post(
                f"/v1/tenants/{args.tenant_id}/users/import",
                content=args.file.read_bytes(), headers={"Content-Type": "text/csv"},
            ))  # fmt: skip
        for error in body["errors"]:
            print(f"row {error['row']}: {error['message']}", file=sys.stderr)
        print(f"{len(body['accepted'])} users queued, {len(body['errors'])} rows refused")
        return 1 if body["errors"] else 0
    async with api(config) as (client, _ctx):
        command = args.tenant_command
        if command == "add":
            payload = {
                "tenant_id": args.tenant_id, "name": args.name, "domains": args.domain,
                "destinations": [_destination(d) for d in args.destination],
                "outbound_ranges": args.outbound, "tech_contact": args.tech_contact,
                "admin_contact": args.admin_contact,
            }  # fmt: skip
            body = _check(await client.post("/v1/tenants", json=payload))
        elif command == "list":
            if args.limit is not None and args.limit < 1:
                raise OperatorError("--limit must be at least 1")
            left = args.limit
            per_page = LIST_PAGE if left is None else min(LIST_PAGE, left)
            page = 1
            while True:
                body = _check(await client.get("/v1/tenants", params={
                    "q": args.search, "page": page, "per_page": per_page}))  # fmt: skip
                for tenant in body["items"][:left]:
                    print(
                        f"{tenant['tenant_id']:20} {tenant['name']:30} "
                        f"{', '.join(tenant['domains'])}"
                    )
                if left is not None:
                    left -= len(body["items"])
                if page * per_page >= body["total"] or (left is not None and left <= 0):
                    return 0
                page += 1
        elif command == "show":
            body = _check(await client.get(f"/v1/tenants/{args.tenant_id}"))
        else:
            changes = {}
            for item in args.settings:
                name, sep, value = item.partition("=")
                if not sep:
                    raise OperatorError(f"{item!r} is not NAME=VALUE")
                changes[name] = None if value == "null" else _value(value)
            body = _check(
                await client.patch(f"/v1/tenants/{args.tenant_id}/settings", json=changes)
            )
    print(json.dumps(body, indent=2, default=str))
    return 0
