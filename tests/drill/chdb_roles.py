"""The drill's stand-in for compose's ``clickhouse``, ``sink`` and ``admin`` services: one
process holding chDB with the sink and the admin API, as ``smtp-discovery up`` holds them
(chDB allows one process per data path, so the two roles cannot be two processes here).

    python -m tests.drill.chdb_roles ADMIN_ENV_JSON      # serve until SIGTERM
    python -m tests.drill.chdb_roles --dump OUT_JSON     # the rows the drill compares, then exit

The process's environment is compose's ``sink`` service's (its Kafka login, its ops endpoint);
ADMIN_ENV_JSON holds compose's ``admin`` service's (its own login, listen address and token key),
so each role still logs in to Kafka as its own principal. Production code is reused as is: the
sink's ``Sink``, the admin role's ``serve_admin`` and the process's ``role_process``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from smtp_discovery.admin.run import serve_admin
from smtp_discovery.platform.clickhouse import connect
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import client_options
from smtp_discovery.platform.ops import OpsServer
from smtp_discovery.platform.stopping import role_process
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.run import sink_settings
from smtp_discovery.sinks.sink import Sink

QUERIES = {
    # Every row, times left out: the two runs happen minutes apart on the machine's clock.
    "state_changes": "SELECT event_id, tenant_id, address, from_status, to_status, reason, actor "
    "FROM {db}.state_changes",
    "mail_events": "SELECT event_id, tenant_id, address, type, reply_code, verdict "
    "FROM {db}.mail_events",
    "tenant_daily": "SELECT tenant_id, sum(messages), sum(clean_messages), "
    "sum(outbound_messages), sum(new_pending), sum(new_discovered), sum(new_users), "
    "sum(new_aliases), sum(new_invalid) FROM {db}.tenant_daily GROUP BY tenant_id",
    "address_state": "SELECT record_key, status, is_deleted FROM {db}.address_state FINAL",
}


async def serve(admin_env: dict[str, str]) -> None:
    sink_config = RuntimeConfig.from_env()
    admin_config = RuntimeConfig.from_env(admin_env)
    async with role_process("drill chdb roles", sink_config.stop_timeout_s) as stopper:
        client = await asyncio.to_thread(connect, sink_config.effective_clickhouse_url)
        await asyncio.to_thread(migrate, client, sink_config.analytics_layout)
        sink = Sink(
            client_options(sink_config),
            client,
            sink_config.analytics_layout,
            sink_config.topics,
            sink_settings(sink_config),
        )
        admin_ready = asyncio.Event()
        ops = OpsServer(sink.metrics(), ready=lambda: sink.ready.is_set() and admin_ready.is_set())
        await stopper.serve_ops(ops, sink_config.ops_listen)
        roles = [
            asyncio.create_task(sink.run(stopper.event), name="sink"),
            asyncio.create_task(
                serve_admin(
                    admin_config, client_options(admin_config), client, stopper.event, admin_ready
                ),
                name="admin",
            ),
        ]
        await asyncio.wait(roles, return_when=asyncio.FIRST_COMPLETED)
        stopper.event.set()  # one role ended (a failure, or the stop): the other ends too
        for task in roles:
            await task  # surfaces a role's failure


def dump(out: Path) -> None:
    config = RuntimeConfig.from_env()
    client = connect(config.effective_clickhouse_url)
    db = config.analytics_layout.database
    rows: dict[str, Any] = {
        name: [list(row) for row in client.query(sql.format(db=db)).result_rows]
        for name, sql in QUERIES.items()
    }
    out.write_text(json.dumps(rows, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("admin_env", nargs="?", type=Path)
    parser.add_argument("--dump", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if args.dump:
        dump(args.dump)
        return
    asyncio.run(serve(json.loads(args.admin_env.read_text())))


if __name__ == "__main__":
    main()
