from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_discovery.schemas.address import (
    MAX_DOMAIN_OCTETS,
    MAX_LOCAL_OCTETS,
    AddressError,
    display_form,
    normalize_domain,
    parse_address,
)


class TestForms:
    def test_plain_address_keeps_display_and_normalises_for_matching(self) -> None:
        a = parse_address("First.Last@Example.COM")
        assert a.local == "First.Last"
        assert a.domain == "example.com"
        assert a.normalized == "first.last@example.com"
        assert a.display == "First.Last@example.com"
        assert not a.is_subaddress

    def test_angle_brackets_are_a_path(self) -> None:
        assert parse_address("<bob@example.com>").normalized == "bob@example.com"

    @pytest.mark.parametrize("text", ["<bob@example.com", "bob@example.com>"])
    def test_unbalanced_brackets(self, text: str) -> None:
        with pytest.raises(AddressError) as err:
            parse_address(text)
        assert err.value.code == "syntax"

    def test_subaddress_has_base_and_tag(self) -> None:
        a = parse_address("First.Last+News@example.com")
        assert a.is_subaddress
        assert a.tag == "News"
        assert a.base_local == "first.last"
        assert a.base == "first.last@example.com"

    def test_leading_plus_is_not_a_subaddress(self) -> None:
        a = parse_address("+1234@example.com")
        assert not a.is_subaddress
        assert a.base_local == "+1234"

    def test_empty_tag_is_a_subaddress(self) -> None:
        a = parse_address("bob+@example.com")
        assert a.tag == ""
        assert a.base_local == "bob"

    def test_quoted_local_part_that_needs_no_quotes_equals_the_unquoted_one(self) -> None:
        assert (
            parse_address('"John"@example.com').normalized
            == parse_address("john@example.com").normalized
        )

    def test_quoted_local_part_with_space_and_escape(self) -> None:
        a = parse_address(r'"john \"jd\" doe"@example.com')
        assert a.quoted
        assert a.local == r'"john \"jd\" doe"'
        assert a.normalized_local == r'"john \"jd\" doe"'

    def test_quoted_local_part_with_plus_has_a_quoted_base(self) -> None:
        a = parse_address('"a b+tag"@example.com')
        assert a.tag == "tag"
        assert a.base_local == '"a b"'

    def test_idna_domain_is_kept_as_a_labels(self) -> None:
        a = parse_address("user@Bücher.Example")
        assert a.domain == "xn--bcher-kva.example"
        assert a.domain_unicode == "bücher.example"
        assert parse_address("user@xn--bcher-kva.example").normalized == a.normalized

    def test_smtputf8_local_part(self) -> None:
        a = parse_address("Jürgen@example.com", smtputf8=True)
        assert a.needs_smtputf8
        assert a.normalized_local == "jürgen"

    def test_smtputf8_local_part_without_the_extension_is_refused(self) -> None:
        with pytest.raises(AddressError) as err:
            parse_address("jürgen@example.com", smtputf8=False)
        assert err.value.code == "smtputf8_required"
        assert err.value.enhanced_status == "5.6.7"

    def test_unicode_local_parts_compare_after_nfc(self) -> None:
        composed = parse_address("j\u00fcrgen@example.com")
        decomposed = parse_address("ju\u0308rgen@example.com")
        assert composed.normalized == decomposed.normalized

    def test_address_literals(self) -> None:
        assert parse_address("a@[192.0.2.1]").domain == "[192.0.2.1]"
        assert parse_address("a@[IPv6:2001:DB8::0:1]").domain == "[IPv6:2001:db8::1]"
        with pytest.raises(AddressError):
            parse_address("a@[300.1.1.1]")

    def test_relay_hacks_are_flagged(self) -> None:
        assert parse_address("user%other.example@example.com").has_relay_hack
        assert parse_address("other!user@example.com").has_relay_hack
        # Quotes hide nothing: Postfix resolves dequoted addresses by default (and the tenant's
        # server trusts us), so "user@elsewhere"@ours would be relayed onwards.
        assert parse_address('"user%x"@example.com').has_relay_hack
        assert parse_address('"user@elsewhere.example"@example.com').has_relay_hack
        assert not parse_address('"first last"@example.com').has_relay_hack

    def test_route_key_groups_aliases_across_domains_and_subaddresses(self) -> None:
        keys = {
            parse_address(x).route_key("acme")
            for x in [
                "First.Last@d1.example",
                "first.last@D2.example",
                "first.last+news@d1.example",
            ]
        }
        assert keys == {"acme:first.last"}
        assert parse_address("first.last@d1.example").route_key("other") == "other:first.last"

    def test_record_key_is_per_address(self) -> None:
        a = parse_address("first.last+news@d1.example")
        assert a.record_key("acme") == "acme:first.last+news@d1.example"


class TestLimits:
    def test_local_part_of_64_octets_is_accepted_65_is_not(self) -> None:
        parse_address("a" * MAX_LOCAL_OCTETS + "@example.com")
        with pytest.raises(AddressError) as err:
            parse_address("a" * (MAX_LOCAL_OCTETS + 1) + "@example.com")
        assert err.value.code == "local_too_long"

    def test_local_part_limit_counts_octets_not_characters(self) -> None:
        with pytest.raises(AddressError) as err:
            parse_address("ü" * 33 + "@example.com")  # 66 octets, 33 characters
        assert err.value.code == "local_too_long"

    def test_path_of_256_octets_is_accepted_257_is_not(self) -> None:
        # <local@domain>: 2 brackets + 64 + 1 + domain; labels of 63 keep the domain valid.
        domain = ".".join(["d" * 63, "e" * 63, "f" * 61])  # 189 octets
        ok = "a" * 64 + "@" + domain  # 254 octets + 2 brackets = 256
        parse_address(f"<{ok}>")
        with pytest.raises(AddressError) as err:
            parse_address("<" + "a" + ok + ">")
        assert err.value.code in ("path_too_long", "local_too_long")
        longer_domain = domain + "g"
        with pytest.raises(AddressError) as err:
            parse_address("a" * 64 + "@" + longer_domain)
        assert err.value.code == "path_too_long"

    def test_domain_over_255_octets(self) -> None:
        domain = ".".join(["a" * 63] * 4) + ".b"  # 257 octets
        with pytest.raises(AddressError) as err:
            normalize_domain(domain)
        assert err.value.code == "domain_too_long"
        exactly_255 = ".".join(["a" * 63] * 4)
        assert len(exactly_255) == MAX_DOMAIN_OCTETS
        assert normalize_domain(exactly_255.upper()) == exactly_255

    def test_label_over_63_octets(self) -> None:
        with pytest.raises(AddressError) as err:
            parse_address("a@" + "x" * 64 + ".example")
        assert err.value.code == "label_too_long"


class TestRejections:
    @pytest.mark.parametrize(
        ("text", "code"),
        [
            ("", "empty"),
            ("<>", "empty"),
            ("no-at-sign", "syntax"),
            ("@example.com", "source_route"),
            ("<@a.example,@b.example:user@c.example>", "source_route"),
            ("a..b@example.com", "syntax"),
            (".a@example.com", "syntax"),
            ("a.@example.com", "syntax"),
            ("a b@example.com", "syntax"),
            ("a@b@example.com", "syntax"),
            ("a@", "syntax"),
            ("a@-example.com", "syntax"),
            ("a@example-.com", "syntax"),
            ("a@exa_mple.com", "syntax"),
            ("a@example..com", "syntax"),
            ('"unterminated@example.com', "syntax"),
            ('"a"b@example.com', "syntax"),
            ("a\x00b@example.com", "syntax"),
            ("a@example.com\r\nRCPT TO:<x@y>", "syntax"),
            ("a@xn--zz.example", "idna"),
            ("a@\u2603\u2603--.example", "idna"),
        ],
    )
    def test_specific_code(self, text: str, code: str) -> None:
        with pytest.raises(AddressError) as err:
            parse_address(text)
        assert err.value.code == code
        assert err.value.message

    def test_source_route_maps_to_a_policy_status(self) -> None:
        with pytest.raises(AddressError) as err:
            parse_address("<@relay.example:user@victim.example>")
        assert err.value.enhanced_status == "5.7.1"


# ---- property-based invariants ----------------------------------------------------------------

atext = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*-/=?^_`{|}~")
)
atom = st.text(atext, min_size=1, max_size=10)
dot_local = st.lists(atom, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 40)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)
tag = st.text(atext, max_size=8)


def _swapcase_ascii(text: str) -> str:
    return "".join(ch.swapcase() if ch.isascii() else ch for ch in text)


@given(dot_local, domain)
def test_normalisation_is_idempotent(local: str, dom: str) -> None:
    a = parse_address(f"{local}@{dom}")
    assert parse_address(a.normalized).normalized == a.normalized


@given(dot_local, domain)
def test_case_does_not_change_identity_but_display_keeps_it(local: str, dom: str) -> None:
    a = parse_address(f"{local}@{dom}")
    b = parse_address(f"{_swapcase_ascii(local)}@{dom.upper()}")
    assert a.normalized == b.normalized
    assert b.local == _swapcase_ascii(local)


@given(dot_local, tag, domain, domain)
def test_subaddress_and_other_domains_share_the_route_key(
    local: str, t: str, d1: str, d2: str
) -> None:
    base = parse_address(f"{local}@{d1}")
    if "+" in local or local.endswith("."):
        return
    sub = parse_address(f"{local}+{t}@{d2}")
    assert sub.route_key("t1") == base.route_key("t1")
    assert sub.base_local == base.normalized_local


@given(dot_local, domain)
def test_quoting_an_unquoted_local_part_changes_nothing(local: str, dom: str) -> None:
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    assert (
        parse_address(f'"{escaped}"@{dom}').normalized == parse_address(f"{local}@{dom}").normalized
    )


@given(st.text(min_size=1, max_size=80), domain)
def test_any_text_either_parses_within_limits_or_raises_address_error(local: str, dom: str) -> None:
    try:
        a = parse_address(f"{local}@{dom}")
    except AddressError as exc:
        assert exc.code
        return
    assert len(a.local.encode()) <= MAX_LOCAL_OCTETS
    assert parse_address(a.normalized).normalized == a.normalized


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("alice@xn--kln-sna.example", "alice@köln.example"),
        ("XN--KLN-SNA", "köln"),
        ("@xn--kln-sna", "@köln"),
        ("alice@köln.example", "alice@köln.example"),
        ("xn--zz.example", "xn--zz.example"),  # not a valid A-label: left alone
        ("alice", "alice"),
    ],
)
def test_a_search_in_a_labels_finds_what_is_shown_in_u_labels(typed: str, shown: str) -> None:
    assert display_form(typed) == shown


def test_both_forms_of_an_international_address_are_one_mailbox() -> None:
    u_label = parse_address("alice@köln.example")
    a_label = parse_address("Alice@XN--KLN-SNA.example")
    assert u_label.record_key("t") == a_label.record_key("t")
    assert u_label.route_key("t") == a_label.route_key("t")
    assert (u_label.display, a_label.display) == ("alice@köln.example", "Alice@köln.example")
    assert u_label.mailbox == "alice@xn--kln-sna.example"
