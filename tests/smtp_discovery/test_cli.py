"""The console script as an operator runs it: exit codes, sentences, and `up` for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smtp_discovery.cli import main
from smtp_discovery.schemas.topics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smtp_discovery.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_configuration_exits_2_with_a_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCOVERY_TOPIC_PARTITIONS", "0")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smtp-discovery: invalid configuration: DISCOVERY_TOPIC_PARTITIONS")


def test_topics_ensure_without_a_cluster_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    assert main(["topics", "ensure"]) == 2
    assert "set KAFKA_BOOTSTRAP or pass --bootstrap" in capsys.readouterr().err


def test_topics_list_prints_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list"]) == 0
    out = capsys.readouterr().out
    for spec in REGISTRY:
        assert spec.name in out


def test_config_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKHOUSE_URL", "https://u:topsecret@ch.example:8443/db")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "topsecret" not in out
    assert "CLICKHOUSE_URL=https://u:***@ch.example:8443/db" in out


@pytest.mark.kafka
def test_topics_ensure_on_a_cluster_twice(kafka_bootstrap: str) -> None:
    first = _cli("topics", "ensure", "--partitions", "4", env={"KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert first.returncode == 0, first.stderr
    for spec in REGISTRY:
        assert f"{spec.name}: created" in first.stdout or f"{spec.name}: exists" in first.stdout
    second = _cli("topics", "ensure", "--partitions", "4", env={"KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(": exists") == len(REGISTRY)
    mismatch = _cli(
        "topics", "ensure", "--partitions", "5", env={"KAFKA_BOOTSTRAP": kafka_bootstrap}
    )
    assert mismatch.returncode == 1
    assert "discovery.mail: mismatch - has 4 partitions, the registry wants 5" in mismatch.stdout
