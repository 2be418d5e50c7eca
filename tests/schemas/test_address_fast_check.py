"""The quick acceptance of plain addresses never accepts what the full parser refuses, so a
contract that takes the quick path accepts and rejects exactly what it did before."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from smtp_discovery.schemas.address import AddressError, is_plain_address, parse_address
from smtp_discovery.schemas.base import MailAddress

pieces = st.sampled_from(
    ["a", "Z", "9", ".", "..", "@", "-", "--", "xn--", "XN--", "+t", "_", "'", "!", "~", '"',
     " ", "\t", "\n", "\x00", "<", ">", "[", "]", "ü", "é", "\\", "%", "a" * 30, "b" * 63,
     "c" * 64, "bücher", "xn--bcher-kva", "xn--zz", "1.2.3.4", ":"]
)  # fmt: skip


def addresses() -> Any:
    plain = st.builds(
        lambda local, labels: f"{local}@{'.'.join(labels)}",
        st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,70}", fullmatch=True),
        st.lists(st.from_regex(r"[A-Za-z0-9-]{1,66}", fullmatch=True), min_size=1, max_size=5),
    )
    return plain | st.lists(pieces, max_size=14).map("".join)


def parses(text: str) -> bool:
    try:
        parse_address(text)
    except AddressError:
        return False
    return True


@settings(max_examples=4000)
@given(addresses())
@example("a" * 64 + "@b.example")
@example("a" * 65 + "@b.example")
@example("a@" + "b" * 63 + ".example")
@example("a@" + "b" * 64 + ".example")
@example("a@" + ".".join(["b" * 63] * 4))
@example("a@xn--zz.example")
@example("a@b-.example")
@example("a.@b.example")
def test_what_the_quick_check_accepts_the_parser_accepts(text: str) -> None:
    if is_plain_address(text):
        assert parses(text), text


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("user0@t0.example", True),
        ("First.Last+tag@Example.COM", True),
        ("a@localhost", True),
        ("a@xn--bcher-kva.example", False),  # an A-label: IDNA's checks decide
        ("a..b@c.example", False),
        ('"quoted"@c.example', False),
        ("<a@b.example>", False),
        ("bücher@b.example", False),
        ("a@b.example.", False),
    ],
)
def test_the_quick_check_takes_plain_addresses_and_leaves_the_rest_to_the_parser(
    text: str, plain: bool
) -> None:
    assert is_plain_address(text) is plain


def test_a_contract_address_is_accepted_and_refused_as_the_parser_says() -> None:
    adapter = TypeAdapter(MailAddress)
    assert adapter.validate_python("First.Last@Example.COM") == "First.Last@Example.COM"
    assert adapter.validate_python("a@xn--bcher-kva.example") == "a@xn--bcher-kva.example"
    for bad in ("a" * 65 + "@b.example", "a@b..example", "a@xn--zz.example", "no-at-sign"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)
