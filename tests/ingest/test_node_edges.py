"""Outbound relaying, STARTTLS, a real sending MTA (swaks) and the metrics endpoint."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import urllib.request
from pathlib import Path

import pytest

from smtp_discovery.localkafka.node import free_port
from smtp_discovery.schemas.mail import OutboundSent
from smtp_discovery.schemas.state import AddressStatus
from tests.ingest.harness import running_ingest, state, tenant
from tests.ingest.postfix import PostfixServer

pytestmark = pytest.mark.kafka

MESSAGE = b"From: alice@a.example\r\nSubject: out\r\n\r\nHello.\r\n"


async def test_outbound_mail_from_the_tenants_server_goes_to_the_smarthost(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    strict = postfix_servers["strict"]
    acme = tenant(
        "acme", ["a.example"], strict.port, outbound_ranges=(ipaddress.ip_network("127.0.0.0/8"),)
    )
    before = len(strict.delivered("carol@b.example"))
    env = {"DISCOVERY_INGEST_SMARTHOST": f"127.0.0.1:{strict.port}"}
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], env=env) as ingest:
        async with ingest.client() as smtp:
            await smtp.sendmail("Alice@a.example", ["carol@b.example"], MESSAGE)
            refused = await smtp.execute_command(b"MAIL FROM:<eve@elsewhere.example>")
            bounce = await smtp.execute_command(b"MAIL FROM:<>")
        (event,) = await ingest.events(1)
    assert isinstance(event, OutboundSent)
    assert (event.tenant_id, event.address, event.recipient_count) == ("acme", "Alice@a.example", 1)
    assert str(event.client_ip) == "127.0.0.1"
    assert (refused.code, refused.message[:5]) == (550, "5.7.1")
    assert (bounce.code, bounce.message[:5]) == (550, "5.7.1")
    assert len(await strict.wait_delivered("carol@b.example", before + 1)) == before + 1


async def test_without_a_smarthost_only_internal_outbound_mail_is_relayed(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    strict = postfix_servers["strict"]
    acme = tenant(
        "acme", ["a.example"], strict.port, outbound_ranges=(ipaddress.ip_network("127.0.0.1/32"),)
    )
    before = len(strict.delivered("bob@a.example"))
    async with running_ingest(kafka_bootstrap, tmp_path, [acme]) as ingest:
        async with ingest.client() as smtp:
            await smtp.ehlo()
            await smtp.execute_command(b"MAIL FROM:<alice@a.example>")
            external = await smtp.execute_command(b"RCPT TO:<someone@elsewhere.example>")
            await smtp.rset()
            await smtp.sendmail("alice@a.example", ["bob@a.example"], MESSAGE)
        (event,) = await ingest.events(1)
    assert (external.code, external.message[:5]) == (550, "5.7.1")
    assert isinstance(event, OutboundSent) and event.address == "alice@a.example"
    assert len(await strict.wait_delivered("bob@a.example", before + 1)) == before + 1


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=ingest.test", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_starttls_is_offered_and_can_be_required(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    strict = postfix_servers["strict"]
    acme = tenant("acme", ["a.example"], strict.port)
    cert, key = _certificate(tmp_path)
    env = {
        "DISCOVERY_INGEST_TLS_CERT": str(cert),
        "DISCOVERY_INGEST_TLS_KEY": str(key),
        "DISCOVERY_INGEST_REQUIRE_TLS": "true",
    }
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    before = len(strict.delivered("alice@a.example"))
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states, env=env) as ingest:
        async with ingest.client() as smtp:
            await smtp.ehlo()
            assert smtp.supports_extension("starttls")
            plain = await smtp.execute_command(b"MAIL FROM:<sender@outside.example>")
            await smtp.starttls(validate_certs=False)
            await smtp.sendmail("sender@outside.example", ["alice@a.example"], MESSAGE)
    assert (plain.code, plain.message) == (530, "Must issue a STARTTLS command first")
    delivered = await strict.wait_delivered("alice@a.example", before + 1)
    assert b"with ESMTPS id" in delivered[-1]


async def test_swaks_delivers_through_the_node(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    strict = postfix_servers["strict"]
    acme = tenant("acme", ["a.example"], strict.port)
    before = len(strict.delivered("bob@a.example"))
    async with running_ingest(kafka_bootstrap, tmp_path, [acme]) as ingest:
        result = await asyncio.to_thread(
            subprocess.run,
            [
                "swaks", "--server", f"127.0.0.1:{ingest.port}", "--from", "s@outside.example",
                "--to", "bob@a.example", "--helo", "swaks.example", "--body", "from swaks",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:]
        rejected = await asyncio.to_thread(
            subprocess.run,
            ["swaks", "--server", f"127.0.0.1:{ingest.port}", "--to", "nobody@a.example"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rejected.returncode != 0 and "550 5.1.1" in rejected.stdout
    delivered = await strict.wait_delivered("bob@a.example", before + 1)
    assert b"from swaks" in delivered[-1]


async def test_metrics_are_served_for_prometheus(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    acme = tenant("acme", ["a.example"], postfix_servers["strict"].port)
    port = free_port()
    env = {"DISCOVERY_OPS_LISTEN": f"127.0.0.1:{port}"}
    async with running_ingest(
        kafka_bootstrap, tmp_path, [acme], env=env, serve_metrics=True
    ) as ingest:
        async with ingest.client() as smtp:
            await smtp.mail("sender@outside.example")
            await smtp.execute_command(b"RCPT TO:<nobody@a.example>")
        url = f"http://127.0.0.1:{port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    text = body.decode()
    assert (
        'smtp_discovery_ingest_rcpt_decisions_total{outcome="reject",reason="unknown"} 1.0' in text
    )
    assert "smtp_discovery_ingest_callout_latency_seconds_count" in text
    assert "smtp_discovery_ingest_spool_depth_bytes 0.0" in text


async def test_an_idle_client_is_disconnected(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    acme = tenant("acme", ["a.example"], postfix_servers["strict"].port)
    env = {"DISCOVERY_INGEST_IDLE_TIMEOUT_S": "0.5"}
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], env=env) as ingest:
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
        assert (await reader.readline()).startswith(b"220 ")
        # Say nothing; the node must hang up (EOF) well before this deadline.
        assert await asyncio.wait_for(reader.read(), timeout=30) == b""
        writer.close()


@pytest.mark.parametrize(("trusted", "admitted"), [("127.0.0.0/8", True), ("10.0.0.0/8", False)])
async def test_a_proxy_header_is_believed_only_from_a_trusted_balancer(
    kafka_bootstrap: str,
    tmp_path: Path,
    postfix_servers: dict[str, PostfixServer],
    trusted: str,
    admitted: bool,
) -> None:
    acme = tenant("acme", ["a.example"], postfix_servers["strict"].port)
    env = {"DISCOVERY_INGEST_PROXY_PROTOCOL": "true", "DISCOVERY_INGEST_PROXY_TRUSTED": trusted}
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], env=env) as ingest:
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
        writer.write(b"PROXY TCP4 203.0.113.5 127.0.0.1 40000 25\r\n")
        await writer.drain()
        greeting = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
    assert greeting.startswith(b"220 ") is admitted
