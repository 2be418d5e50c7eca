"""The operator CLI: the API's validation and publishing, from a terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import smtp_discovery.admin.cli
from smtp_discovery.cli import main
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.topics import TopicNames

pytestmark = pytest.mark.kafka


@pytest.fixture
def env(kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    prefix = f"c{unique}."
    asyncio.run(
        ensure_topics(
            {"bootstrap_servers": kafka_bootstrap},
            partitions=2,
            replication=1,
            specs=TopicNames(prefix).specs(),
        )
    )
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("DISCOVERY_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "data"))  # empty: no token key
    return prefix


def test_tenants_tokens_and_settings_from_the_terminal(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        main(
            [
                "tenant",
                "add",
                "acme",
                "--name",
                "Acme",
                "--domain",
                "acme.example",
                "--destination",
                "mx.acme.example:2525/5",
                "--destination",
                "mx:acme.example/20",
                "--outbound",
                "192.0.2.0/24",
                "--tech-contact",
                "it@acme.example",
            ]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert '"port": 2525' in shown and '"kind": "mx"' in shown
    assert main(["tenant", "add", "other", "--name", "O", "--domain", "ACME.example"]) == 1
    assert "domain_taken: acme.example is registered by another tenant" in capsys.readouterr().err
    assert main(["tenant", "set", "acme", "discovery_enabled=true", "dha_window_s=300"]) == 0
    assert '"overridden": true' in capsys.readouterr().out
    assert main(["tenant", "set", "acme", "dha_window_s=0"]) == 1
    assert "invalid_settings: dha_window_s" in capsys.readouterr().err
    assert main(["tenant", "list"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["acme", "Acme"]
    for extra in ("beta", "gamma"):
        assert main(["tenant", "add", extra, "--name", extra.title()]) == 0
    capsys.readouterr()
    monkeypatch.setattr(smtp_discovery.admin.cli, "LIST_PAGE", 2)  # three tenants: two pages
    assert main(["tenant", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "acme", "beta", "gamma"]  # fmt: skip
    assert main(["tenant", "list", "--limit", "1"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["acme"]
    assert main(["tenant", "list", "--search", "GAM"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["gamma"]
    assert main(["tenant", "list", "--limit", "0"]) == 1
    assert "--limit must be at least 1" in capsys.readouterr().err
    # Kafka access alone mints nothing: a token is signed with the admin role's key.
    assert main(["token", "create", "--operator"]) == 2  # a configuration error
    assert "no admin token key at " in capsys.readouterr().err
    assert main(["token", "init-key"]) == 0
    key_path = tmp_path / "data" / "admin-token.key"
    assert capsys.readouterr().out.startswith(f"made the admin token key {key_path}")
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert main(["token", "create", "--tenant", "acme", "--label", "console"]) == 0
    bearer = capsys.readouterr().out.strip()
    assert bearer.startswith("sd_")
    token_id = bearer.split("_")[1]
    assert main(["token", "list", "--tenant", "acme"]) == 0
    listed = capsys.readouterr().out
    assert listed.split()[:2] == [token_id, "acme"] and "console" in listed
    assert bearer.split("_", 2)[2] not in listed, "never the secret"
    assert main(["token", "rotate", token_id]) == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated.startswith(f"sd_{token_id}_") and rotated != bearer
    assert main(["token", "revoke", token_id]) == 0
    assert f"{token_id}: revoked" in capsys.readouterr().out
    assert main(["token", "list", "--tenant", "acme"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["token", "create", "--tenant", "nobody"]) == 1
    users = tmp_path / "users.csv"
    users.write_text("address,first_name,surname\nann@acme.example,Ann,Lee\nbad,,\n")
    assert main(["users", "import", "acme", str(users)]) == 1
    captured = capsys.readouterr()
    assert "1 users queued, 1 rows refused" in captured.out and "row 3:" in captured.err


def test_without_kafka_or_a_running_up_the_commands_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path))
    for command in (["tenant", "list"], ["cache", "clear", "acme"]):
        assert main(command) != 0
        assert f"no `smtp-discovery up` is running on {tmp_path}" in capsys.readouterr().err
