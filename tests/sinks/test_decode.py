"""The sink's fast decoder accepts and refuses exactly what the contracts do, and what it accepts
becomes the same row: on the contract samples, and on values fuzzed from them."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from smtp_discovery.schemas.codec import decode_all, encode
from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
    CalloutVerified,
    CatchAllChecked,
    MailEventBase,
    OutboundSent,
    RecipientDelivered,
)
from smtp_discovery.schemas.state import (
    AddressState,
    AddressStateSnapshot,
    StateChange,
)
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, STATE_CHANGES
from smtp_discovery.sinks import decode
from smtp_discovery.sinks.columns import SOURCES
from smtp_discovery.sinks.decode import FAST_DECODERS, decode_batch
from tests.schemas.samples import SAMPLES

MIRRORS: list[tuple[type[Any], type[BaseModel]]] = [
    (decode.StateChangeFast, StateChange),
    (decode.AddressStateFast, AddressState),
    (decode.AddressStateSnapshotFast, AddressStateSnapshot),
    (decode.CalloutVerifiedFast, CalloutVerified),
    (decode.CalloutRejectedFast, CalloutRejected),
    (decode.CalloutTempfailedFast, CalloutTempfailed),
    (decode.RecipientDeliveredFast, RecipientDelivered),
    (decode.OutboundSentFast, OutboundSent),
    (decode.CatchAllCheckedFast, CatchAllChecked),
]


def topic_of(sample: BaseModel) -> str | None:
    if isinstance(sample, StateChange):
        return STATE_CHANGES
    if isinstance(sample, AddressStateSnapshot):
        return ADDRESS_STATE
    if isinstance(sample, MailEventBase):
        return MAIL
    return None


MIRRORED = [(topic_of(s), s) for s in SAMPLES if topic_of(s) is not None]


def rows(topic: str, key: bytes, messages: list[Any]) -> list[list[Any]]:
    taken = SOURCES[topic].taken(0)
    for offset, message in enumerate(messages):
        taken.add(key, message, offset)
    return taken.columns


def same_outcome(topic: str, value: bytes) -> None:
    """The fast decoder and the contract agree on ``value``: both refuse it, or both accept it
    and it becomes the same row."""
    fast, fast_failed = decode_batch(topic, [value])
    slow, slow_failed = decode_all(topic, [value])
    assert fast_failed.keys() == slow_failed.keys(), value
    if not slow_failed:
        assert rows(topic, b"t:k", fast) == rows(topic, b"t:k", slow), value


def test_every_mirror_has_its_contracts_fields() -> None:
    """A field added to a contract and not to its mirror would be refused or dropped."""
    for mirror, contract in MIRRORS:
        fields = set(mirror.__struct_fields__) | ({"type"} if hasattr(mirror, "type") else set())
        assert fields == set(contract.model_fields), mirror.__name__


def test_every_high_volume_topic_has_a_mirror() -> None:
    assert set(FAST_DECODERS) == {STATE_CHANGES, ADDRESS_STATE, MAIL, MAIL_SETTLED}


def test_the_samples_give_the_same_rows_and_most_take_the_fast_path() -> None:
    fast_path = 0
    for topic, sample in MIRRORED:
        assert topic is not None
        value = encode(sample)
        same_outcome(topic, value)
        try:
            FAST_DECODERS[topic].decode(value)
            fast_path += 1
        except msgspec.ValidationError:
            pass  # an IPv6 client: the contract decodes it
    assert fast_path >= len(MIRRORED) - 1


def test_values_the_mirror_declines_are_decoded_by_the_contract() -> None:
    (delivered,) = [s for _, s in MIRRORED if isinstance(s, RecipientDelivered)]
    international = delivered.model_copy(
        update={"address": "jörg@bücher.example", "client_ip": "2001:db8::1"}
    )
    decoded, failed = decode_batch(MAIL, [encode(delivered), encode(international)])
    assert not failed
    assert [type(m) for m in decoded] == [RecipientDelivered, RecipientDelivered]
    assert str(decoded[1].client_ip) == "2001:db8::1"


TIMES = [
    "2026-11-02T09:30:00Z",
    "2026-11-02T09:30:00+02:00",
    "2026-11-02T09:30:00",
    "2026-11-02 09:30:00Z",
    "2026-11-02T09:30:00.123456Z",
    "2026-11-02",
    "1700000000",
    "2026-11-02T24:00:00Z",
    "2026-11-02t09:30:00z",
    "2026-02-30T09:30:00Z",
    "2026-11-02T09:30:00.1234567Z",
    "2026-11-02T09:30Z",
    1700000000,
    1.7e9,
]
NEAR: dict[str, list[Any]] = {
    "tenant_id": ["acme", "Acme", "acme\n", "a" * 63, "a" * 64, "-acme", "acme_1", "\u0663", ""],
    "address": [
        "user@example.com",
        "User@Example.COM",
        "jörg@bücher.example",
        "a@xn--bcher-kva.example",
        "a@b",
        "a..b@example.com",
        '"a b"@example.com',
        "a@example.com\n",
        "x" * 65 + "@e.com",
        "a@[192.0.2.1]",
        "@example.com",
    ],
    "client_ip": [
        "192.0.2.1",
        "192.0.2.01",
        "256.0.0.1",
        "::1",
        "::ffff:192.0.2.1",
        "2001:DB8::1",
        "192.0.2.1\n",
        "1.2.3",
        3232235777,
    ],
    "enhanced_status": ["5.1.1", "5.1.1\n", "5.\u0661.1", "4.999.999", "5.1000.1", None],
    "reason": [
        "threshold",
        "admin:delete",
        "admin:nope",
        "expired",
        "import",
        "reply_4xx",
        "timeout",
        "THRESHOLD",
        "admin:",
        "",
    ],
    "status": ["pending", "discovered", "user", "PENDING", "alias", "gone"],
    "role": ["end_user", "silent_user", "END_USER", None, ""],
    "type": [
        "callout_verified",
        "callout_rejected",
        "callout_tempfailed",
        "recipient_delivered",
        "outbound_sent",
        "catch_all_checked",
        "state_change",
        "address_state",
        "x",
    ],
    "verdict": ["clean", "not_clean", "CLEAN", None],
    "reply_code": [250, 299, 300, 450, 499, 550, 599, 600, "550", 550.0, 550.5, True, None],
    "version": [1, 0, -1, 2**63, 2**64, "3", 3.0, True],
    "latency_ms": [0, 0.5, -0.1, "1.5", 1e308, None],
}
for name in ("event_time", "status_since", "discovered_at"):
    NEAR[name] = TIMES
for name in ("primary", "aliases", "alias_candidates"):
    NEAR[name] = [*NEAR["address"], [], ["a@example.com", "jörg@bücher.example"], ["a@b"]]
for name in ("status_reason", "discovered_reason"):
    NEAR[name] = NEAR["reason"]
for name in ("from_status", "to_status"):
    NEAR[name] = [*NEAR["status"], None]

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from([v for values in NEAR.values() for v in values]),
    st.lists(st.sampled_from(["a@example.com", "jörg@bücher.example", "x", 1]), max_size=3),
)


@st.composite
def fuzzed(draw: st.DrawFn) -> tuple[str, bytes]:
    """A sample's JSON with a few fields replaced, removed or added (nested ones too)."""
    topic, sample = draw(st.sampled_from(MIRRORED))
    assert topic is not None
    data = json.loads(encode(sample))
    targets = [data]
    if isinstance(data.get("record"), dict):
        targets.append(data["record"])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = draw(st.sampled_from(targets))
        name = draw(st.sampled_from([*target, "extra"]))
        if draw(st.integers(min_value=0, max_value=5)) == 0 and name != "event_id":
            # (without an id the contract makes up a new one each time it decodes the value)
            target.pop(name, None)
        else:
            near = NEAR.get(name)
            if near and draw(st.booleans()):
                target[name] = draw(st.sampled_from(near))
            else:
                target[name] = draw(ODD_VALUES)
    text = json.dumps(data, ensure_ascii=draw(st.booleans()))
    return topic, text.encode("utf-8")


def test_every_near_value_in_every_field_of_every_sample() -> None:
    """Each field of each sample (the record's too) set to each value near its valid ones."""
    for topic, sample in MIRRORED:
        assert topic is not None
        data = json.loads(encode(sample))
        for target in (data, data.get("record")):
            if not isinstance(target, dict):
                continue
            for name in [n for n in target if n in NEAR]:
                kept = target[name]
                for value in NEAR[name]:
                    target[name] = value
                    same_outcome(topic, json.dumps(data).encode())
                target[name] = kept


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed())
def test_fuzzed_values_are_refused_or_accepted_as_the_contract_does(
    case: tuple[str, bytes],
) -> None:
    topic, value = case
    same_outcome(topic, value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([STATE_CHANGES, ADDRESS_STATE, MAIL]))
def test_bytes_that_are_not_a_message_are_refused_as_the_contract_does(
    value: bytes, topic: str
) -> None:
    same_outcome(topic, value)
