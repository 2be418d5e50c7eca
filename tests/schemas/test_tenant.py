from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from smtp_discovery.schemas.state import UserRole
from smtp_discovery.schemas.tenant import (
    BUILT_IN,
    Destination,
    DiscoverySettings,
    TempfailPolicy,
    TenantConfig,
    changed_settings,
    describe_errors,
    effective_settings,
    provider_own,
    validate_overrides,
)
from tests.schemas.samples import T0


def tenant(**kwargs: object) -> TenantConfig:
    base: dict[str, object] = {"tenant_id": "acme", "event_time": T0, "name": "Acme"}
    base.update(kwargs)
    return TenantConfig.model_validate(base)


def test_defaults_are_the_vendors_and_designs() -> None:
    s = DiscoverySettings()
    assert s.default_new_user_role is UserRole.END_USER
    assert s.inbound_detection_threshold == 3
    assert s.detection_period_days == 30
    assert s.notices_before_expiry == 3
    assert s.expired_addresses_default_to_new_user is False
    assert s.auto_add_detected_aliases is True
    assert s.auto_add_outbound_users is False
    assert s.report_new_users is True
    assert s.report_new_aliases is True
    assert s.report_include_admin_contact is True
    assert s.directory_sync_enabled is False
    assert s.positive_cache_ttl_s == 7 * 86400
    assert s.negative_cache_ttl_s == 2 * 3600
    assert s.tempfail_policy is TempfailPolicy.DEFER
    assert s.probe_sender == ""
    assert s.monitor_mode is False
    assert "marked invalid" in s.invalid_ndr_text


def test_recommended_values_are_published_in_the_json_schema() -> None:
    props = DiscoverySettings.model_json_schema()["properties"]
    assert props["inbound_detection_threshold"]["recommended"] == 3
    assert props["expired_addresses_default_to_new_user"]["recommended"] is False
    assert props["auto_add_detected_aliases"]["recommended"] is True
    assert all(p.get("description") for p in props.values())


def test_overrides_layer_on_provider_defaults() -> None:
    t = tenant(settings={"inbound_detection_threshold": 5})
    provider = DiscoverySettings(discovery_enabled=True, auto_add_detected_aliases=False)
    effective = t.effective_settings(provider)
    assert effective.inbound_detection_threshold == 5
    assert effective.discovery_enabled is True  # inherited from the provider
    assert effective.auto_add_detected_aliases is False
    # A provider change reaches tenants that did not override the setting.
    changed = provider.model_copy(update={"discovery_enabled": False})
    assert t.effective_settings(changed).discovery_enabled is False


def test_one_merge_of_provider_defaults_and_tenant_overrides() -> None:
    """``effective_settings`` is the merge every role uses (the views, the reports, through them
    the admin API): an override wins, a setting not overridden is the provider's default, the
    stored (JSON) form of a value is typed, a name that is no setting is ignored."""
    provider = DiscoverySettings(notices_before_expiry=5, monitor_mode=True)
    merged = effective_settings(
        provider,
        {"notices_before_expiry": 2, "default_new_user_role": "silent_user", "no_such": 1},
    )
    assert merged.notices_before_expiry == 2  # the override wins over the provider's 5
    assert merged.monitor_mode is True  # not overridden: the provider's default
    assert merged.detection_period_days == BUILT_IN.detection_period_days  # set by neither
    assert merged.default_new_user_role is UserRole.SILENT_USER
    assert not hasattr(merged, "no_such")
    assert effective_settings(provider, {}) == provider
    with pytest.raises(ValidationError):
        effective_settings(provider, {"notices_before_expiry": 0})
    # A tenant's record merges by the same function, and refuses an unknown name when written.
    t = tenant(settings={"notices_before_expiry": 2})
    assert t.effective_settings(provider) == effective_settings(provider, t.settings)
    with pytest.raises(ValidationError, match="unknown setting"):
        tenant(settings={"no_such": 1})


def test_overrides_are_coerced_to_their_types() -> None:
    assert validate_overrides({"default_new_user_role": "silent_user"}) == {
        "default_new_user_role": UserRole.SILENT_USER
    }


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            {"inbound_detection_threshold": 0},
            "inbound_detection_threshold: Input should be greater than or equal to 1",
        ),
        ({"notices_before_expiry": 53}, "notices_before_expiry"),
        ({"default_new_user_role": "admin"}, "default_new_user_role"),
        ({"tempfail_policy": "bounce"}, "tempfail_policy"),
        ({"no_such_setting": 1}, "unknown setting(s): no_such_setting"),
        ({"invalid_ndr_text": "two\r\nlines"}, "single line"),
        ({"probe_sender": "not an address"}, "probe sender"),
    ],
)
def test_bad_overrides_get_a_sentence_naming_the_setting(overrides: dict, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        tenant(settings=overrides)
    assert fragment in "; ".join(describe_errors(err.value))


def test_domains_are_normalised_and_unique() -> None:
    t = tenant(domains=["Example.COM", "bücher.example"])
    assert t.domains == ("example.com", "xn--bcher-kva.example")
    assert t.owns_domain("example.com")
    with pytest.raises(ValidationError, match="listed twice"):
        tenant(domains=["example.com", "EXAMPLE.com"])
    with pytest.raises(ValidationError, match="invalid domain"):
        tenant(domains=["bad_domain.example"])
    with pytest.raises(ValidationError, match="address literal"):
        tenant(domains=["[192.0.2.1]"])


def test_outbound_ranges_accept_cidr_strings() -> None:
    t = tenant(outbound_ranges=["192.0.2.7/24", "2001:db8::/32"])
    assert ipaddress.ip_address("192.0.2.200") in t.outbound_ranges[0]
    with pytest.raises(ValidationError, match="invalid outbound range"):
        tenant(outbound_ranges=["192.0.2.0/33"])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "static"}, "needs a host"),
        ({"kind": "mx"}, "needs a domain"),
        ({"kind": "static", "host": "mx.example", "domain": "example"}, "not a domain"),
        ({"kind": "static", "host": "bad host"}, "invalid host"),
        ({"kind": "static", "host": "mx.example", "port": 0}, "greater than or equal to 1"),
    ],
)
def test_destination_validation(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Destination(**kwargs)


def test_destinations_accept_ip_hosts() -> None:
    assert Destination(host="192.0.2.25", port=2525).port == 2525


def test_tenant_ids_are_restricted() -> None:
    for bad in ("", "Acme", "a:b", "-acme", "a" * 64, "__provider__"):
        with pytest.raises(ValidationError, match="tenant id"):
            tenant(tenant_id=bad)


def test_the_built_in_settings_are_the_vendor_s_recommended_values() -> None:
    """A provider default reset with null takes the built-in value: for every setting the
    vendor recommends a value for, that is the recommended value."""
    for name, field in DiscoverySettings.model_fields.items():
        recommended = (field.json_schema_extra or {}).get("recommended")  # type: ignore[union-attr]
        if recommended is not None:
            assert getattr(BUILT_IN, name) == recommended, name


def test_changing_settings_sets_resets_and_keeps_by_one_rule() -> None:
    own = {"dha_max_rejections": 50, "monitor_mode": True}
    assert changed_settings({"dha_max_rejections": None, "dha_window_s": 60}, own) == {
        "monitor_mode": True, "dha_window_s": 60}  # fmt: skip
    with pytest.raises(ValueError, match="unknown setting"):
        changed_settings({"colour": None}, own)
    with pytest.raises(ValueError, match="dha_window_s"):
        changed_settings({"dha_window_s": 0}, own)
    assert provider_own(BUILT_IN.model_copy(update={"dha_window_s": 60})) == {"dha_window_s": 60}
