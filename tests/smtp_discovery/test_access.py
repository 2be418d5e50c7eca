"""The least Kafka ACLs of each role: the docs' table is the code's, and no role may write
what it has no business writing."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtp_discovery.cli import main
from smtp_discovery.platform.access import ROLES, acl_commands, grants, render_table
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.schemas.topics import ADMIN_TOKENS, COMMANDS, REGISTRY, TENANTS

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_table_is_the_code_table() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    start = docs.index("<!-- acl-table")
    table = docs[docs.index("\n", start) + 1 : docs.index("<!-- /acl-table -->")].strip()
    assert table == render_table(RuntimeConfig()), (
        "docs/operations.md's ACL table is stale: paste platform.access.render_table()"
    )


def _writers(config: RuntimeConfig, topic: str) -> set[str]:
    return {
        role
        for role in ROLES
        for g in grants(role, config)
        if g.resource == "topic" and g.name == topic and "Write" in g.operations
    }


def test_only_the_admin_role_writes_tenants_and_tokens_and_ingest_no_commands() -> None:
    config = RuntimeConfig(topic_prefix="staging.")
    assert _writers(config, "staging." + TENANTS) == {"admin"}
    assert _writers(config, "staging." + ADMIN_TOKENS) == {"admin"}
    assert _writers(config, "staging." + COMMANDS) == {"admin", "worker"}
    every_topic = {config.topics(spec.name) for spec in REGISTRY}
    named = {g.name for r in ROLES for g in grants(r, config) if g.resource == "topic"}
    assert {n for n in named if not n.startswith(config.streams_app_id)} <= every_topic


def test_acl_commands_name_each_role_principal_and_the_cli_checks_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = RuntimeConfig()
    lines = acl_commands(config, {r: f"User:p-{r}" for r in ROLES})
    named = " ".join(lines)
    for role in ROLES:
        for grant in grants(role, config):
            assert f"--{grant.resource}" in named and (grant.resource == "cluster"
                                                       or f" {grant.name}" in named)  # fmt: skip
    assert any("User:p-worker" in line and "--resource-pattern-type prefixed" in line
               for line in lines)  # fmt: skip
    assert main(["topics", "acls", "--principal", "sink=User:s1"]) == 0
    out = capsys.readouterr().out
    assert "--allow-principal User:s1 --operation Read --topic discovery.state-changes" in out
    assert "--allow-principal User:smtp-discovery-ingest" in out
    assert main(["topics", "acls", "--principal", "nobody=User:x"]) == 2
    assert "is not ROLE=User:NAME" in capsys.readouterr().err
