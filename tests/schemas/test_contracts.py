from __future__ import annotations

import json
import typing
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from smtp_discovery.schemas.codec import MessageDecodeError, decode, encode
from smtp_discovery.schemas.mail import RecipientDelivered
from smtp_discovery.schemas.state import AddressStateSnapshot, StateChange
from smtp_discovery.schemas.topics import REGISTRY, Cleanup, KeyKind, topic
from tests.schemas.samples import SAMPLES, T0


def _members(value_type: object) -> list[type[BaseModel]]:
    """The concrete models a topic carries (unwrapping Annotated unions)."""
    if typing.get_origin(value_type) is typing.Annotated:
        value_type = typing.get_args(value_type)[0]
    args = typing.get_args(value_type)
    return list(args) if args else [value_type]  # type: ignore[list-item]


def _topic_of(model: BaseModel) -> str:
    for spec in REGISTRY:
        if type(model) in _members(spec.value_type):
            return spec.name
    raise AssertionError(f"{type(model).__name__} is on no topic")


def test_every_model_on_every_topic_has_a_sample() -> None:
    sampled = {type(s) for s in SAMPLES}
    carried = {m for spec in REGISTRY for m in _members(spec.value_type)}
    assert carried - sampled == set(), "add a sample for each new message model"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip_through_json(sample: BaseModel) -> None:
    data = encode(sample)
    decoded = decode(_topic_of(sample), data)
    assert type(decoded) is type(sample)
    assert decoded == sample
    assert encode(decoded) == data


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_every_message_has_the_envelope(sample: BaseModel) -> None:
    payload = json.loads(encode(sample))
    assert payload["schema_version"] >= 1
    assert payload["event_id"]
    assert datetime.fromisoformat(payload["event_time"]).tzinfo is not None
    if type(sample).__name__ != "ProviderDefaults" and type(sample).__name__ != "DeadLetter":
        assert payload["tenant_id"] == "acme"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_unknown_future_fields_are_tolerated(sample: BaseModel) -> None:
    payload = json.loads(encode(sample))
    payload["field_from_the_future"] = {"nested": [1, 2, 3]}
    payload["schema_version"] = 7
    decoded = decode(_topic_of(sample), json.dumps(payload).encode())
    assert type(decoded) is type(sample)
    assert decoded.event_id == sample.event_id  # type: ignore[attr-defined]


def test_event_ids_are_unique_by_default() -> None:
    events = [
        RecipientDelivered(
            tenant_id="acme",
            event_time=T0,
            address="a@example.com",
            verdict="clean",
            message_id="m",
            client_ip="192.0.2.1",
        )
        for _ in range(1000)
    ]
    assert len({e.event_id for e in events}) == 1000


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"{not json", "not valid UTF-8 JSON"),
        (b"[]", "value"),
        (b'{"type": "recipient_delivered"}', "tenant_id"),
        (b'{"type": "no_such_event"}', "no_such_event"),
    ],
)
def test_malformed_messages_are_typed_errors(payload: bytes, fragment: str) -> None:
    with pytest.raises(MessageDecodeError) as err:
        decode("discovery.mail", payload)
    assert err.value.topic == "discovery.mail"
    assert fragment in err.value.reason


def test_invalid_field_values_name_the_field() -> None:
    payload = json.loads(encode(SAMPLES[3]))
    payload["address"] = "not an address"
    payload["event_time"] = "2026-11-02T09:30:00"  # no time zone
    with pytest.raises(MessageDecodeError) as err:
        decode("discovery.mail", json.dumps(payload).encode())
    assert "address" in err.value.reason
    assert "time zone" in err.value.reason


def test_tombstones_only_on_compacted_topics() -> None:
    assert decode("discovery.address-state", None) is None
    assert decode("discovery.tenants", None) is None
    with pytest.raises(MessageDecodeError):
        decode("discovery.mail", None)


def test_unknown_topic_is_a_decode_error() -> None:
    with pytest.raises(MessageDecodeError):
        decode("discovery.nope", b"{}")


def test_messages_are_frozen() -> None:
    with pytest.raises(ValidationError):
        SAMPLES[0].tenant_id = "other"  # type: ignore[misc]


class TestRegistry:
    def test_compacted_topics(self) -> None:
        compacted = {s.name for s in REGISTRY if s.cleanup is Cleanup.COMPACT}
        assert compacted == {
            "discovery.address-state",
            "discovery.tenants",
            "discovery.admin-tokens",
        }

    def test_dead_letter_topic_exists(self) -> None:
        assert topic("discovery.dead-letter").key is KeyKind.ORIGINAL

    def test_address_topics_are_co_partitioned(self) -> None:
        for name in (
            "discovery.mail",
            "discovery.commands",
            "discovery.address-state",
            "discovery.state-changes",
            "discovery.command-results",
        ):
            assert topic(name).partition_count(24) == 24

    def test_configs_follow_replication(self) -> None:
        assert topic("discovery.mail").configs(3)["min.insync.replicas"] == "2"
        assert topic("discovery.mail").configs(1)["min.insync.replicas"] == "1"
        assert topic("discovery.tenants").configs(3)["cleanup.policy"] == "compact"

    def test_unknown_topic_names_the_known_ones(self) -> None:
        with pytest.raises(KeyError, match=r"discovery\.mail"):
            topic("nope")


class TestKeys:
    def test_mail_events_are_keyed_by_route_key(self) -> None:
        assert SAMPLES[0].kafka_key() == b"acme:first.last"  # type: ignore[attr-defined]

    def test_snapshots_are_keyed_per_address(self) -> None:
        snapshot = next(s for s in SAMPLES if isinstance(s, AddressStateSnapshot))
        assert snapshot.kafka_key() == b"acme:first.last+news@example.com"
        assert snapshot.route_key() == "acme:first.last"

    def test_state_changes_share_the_route_key(self) -> None:
        change = next(s for s in SAMPLES if isinstance(s, StateChange))
        assert change.kafka_key() == b"acme:first.last"


class _SmartUnion(BaseModel):
    """The client address as pydantic's default union reads it."""

    ip: IPv4Address | IPv6Address


@settings(max_examples=300, deadline=None)
@example("0.0.0.0")
@example("255.255.255.255")
@example("01.2.3.4")
@example("1.2.3.04")
@example("256.1.1.1")
@example("1.2.3.4\n")
@example(" 1.2.3.4")
@example("1.2.3")
@example("1.2.3.4.5")
@example("\u0661.\u0662.\u0663.\u0664")  # Arabic-Indic digits
@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.text(alphabet="0123456789.", max_size=16),
        st.ip_addresses(v=6).map(lambda a: a.exploded),
        st.integers(min_value=-1, max_value=2**129).map(str),
        st.text(alphabet="0123456789abcdef.:%/x -", max_size=45),
        st.text(max_size=20),
    )
)
def test_a_client_address_reads_as_the_default_union_would_read_it(text: str) -> None:
    """The contract reads a canonical IPv4 text itself, then tries IPv4 and then IPv6
    (``schemas.mail.ClientIp``), which is faster than pydantic's default union: every text it
    accepts comes out as the same address of the same class, and every text it refuses the
    default refuses too (near misses of the canonical form included)."""
    payload = json.dumps({"ip": text})
    try:
        expected: IPv4Address | IPv6Address | None = _SmartUnion.model_validate_json(payload).ip
    except ValidationError:
        expected = None
    sample = RecipientDelivered(tenant_id="t0", address="a@t0.example", event_time=T0,
                                verdict="clean", message_id="m", client_ip="192.0.2.1")  # fmt: skip
    raw = sample.model_dump(mode="json") | {"client_ip": text}
    try:
        got: IPv4Address | IPv6Address | None = RecipientDelivered.model_validate_json(
            json.dumps(raw)
        ).client_ip
    except ValidationError:
        got = None
    assert (type(got), got) == (type(expected), expected)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.ip_addresses(), st.integers(min_value=0, max_value=2**128 - 1)))
def test_a_client_address_object_is_kept_as_the_default_union_keeps_it(value: object) -> None:
    """Ingest builds events from address objects (and an integer is an address too)."""
    expected = _SmartUnion(ip=value).ip  # type: ignore[arg-type]
    got = RecipientDelivered(tenant_id="t0", address="a@t0.example", event_time=T0,
                             verdict="clean", message_id="m", client_ip=value)  # fmt: skip
    assert (type(got.client_ip), got.client_ip) == (type(expected), expected)
