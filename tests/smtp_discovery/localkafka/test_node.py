"""Pure parts of the local Kafka: configuration text, ids, and the errors for missing tools."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smtp_discovery.localkafka import jars, node
from smtp_discovery.localkafka.cluster import new_cluster_id
from smtp_discovery.localkafka.node import NodePorts, render_properties
from smtp_discovery.platform.errors import MissingToolError
from smtp_discovery.platform.kafka_login import KafkaLogin


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_single_node_properties() -> None:
    ports = NodePorts(broker=19092, controller=19093)
    props = _props(
        render_properties(
            node_id=1, ports=ports, voters={1: ports}, log_dir=Path("/d"), replication=1
        )
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "CLIENT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "CLIENT://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == "CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert props["auto.create.topics.enable"] == "false"


def test_three_node_properties_replicate_with_min_isr_two() -> None:
    voters = {n: NodePorts(broker=20000 + n, controller=21000 + n) for n in (1, 2, 3)}
    props = _props(
        render_properties(
            node_id=2, ports=voters[2], voters=voters, log_dir=Path("/d"), replication=3
        )
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:21001,2@127.0.0.1:21002,3@127.0.0.1:21003"
    )
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"


def test_cluster_ids_are_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_pom_names_the_broker_artifact() -> None:
    pom = jars.render_pom("4.1.1")
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<version>4.1.1</version>" in pom


def test_missing_maven_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(jars.shutil, "which", lambda _name: None)
    with pytest.raises(MissingToolError) as err:
        jars.resolve_kafka_classpath("4.1.1", tmp_path)
    assert "apt-get install maven" in err.value.message
    assert "KAFKA_BOOTSTRAP" in err.value.message


def test_cached_jars_need_no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    libs = tmp_path / "4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"jar")
    (tmp_path / "4.1.1" / "complete").write_text(jars.cache_stamp("4.1.1"))
    monkeypatch.setattr(jars.shutil, "which", lambda _name: None)
    assert jars.resolve_kafka_classpath("4.1.1", tmp_path) == [libs / "kafka_2.13-4.1.1.jar"]


def test_a_cache_resolved_for_other_artifacts_is_resolved_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An older project's cache (without Kafka's tools, say) is not taken as complete."""
    libs = tmp_path / "4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"jar")
    (tmp_path / "4.1.1" / "complete").write_text("4.1.1\n")
    monkeypatch.setattr(jars.shutil, "which", lambda _name: None)
    with pytest.raises(MissingToolError):  # it goes to Maven again
        jars.resolve_kafka_classpath("4.1.1", tmp_path)


def test_a_login_locks_every_listener_and_acls_need_the_super_user() -> None:
    login = KafkaLogin("smtp-discovery", "pw")
    ports = node.NodePorts(broker=19092, controller=19093)
    props = dict(
        line.split("=", 1)
        for line in node.render_properties(node_id=1, ports=ports, voters={1: ports},
                                           log_dir=Path("/tmp/x"), replication=1, login=login,
                                           authorize=True).splitlines()
    )  # fmt: skip
    assert props["listener.security.protocol.map"] == (
        "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert (
        'username="smtp-discovery"' in props["listener.name.client.scram-sha-512.sasl.jaas.config"]
    )
    assert 'user_smtp-discovery="pw"' in props["listener.name.controller.plain.sasl.jaas.config"]
    assert props["super.users"] == "User:smtp-discovery"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert repr(login) == "KafkaLogin('smtp-discovery')", "never the password"


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", "/nonexistent/jdk")
    with pytest.raises(MissingToolError) as err:
        node.find_java()
    assert "openjdk-17-jre-headless" in err.value.message
    assert "KAFKA_BOOTSTRAP" in err.value.message


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(MissingToolError, match="Java 11"):
        node.find_java()
