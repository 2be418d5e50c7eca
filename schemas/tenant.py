"""Tenant configuration and discovery settings, published to the compacted ``discovery.tenants``.

Settings resolve in two layers: the provider-wide defaults (one record on the tenants topic) and a
tenant's overrides (only the settings it changed). A tenant that never touched a setting follows
the provider's default when the provider changes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from smtp_discovery.schemas.address import AddressError, normalize_domain, parse_address
from smtp_discovery.schemas.base import Contract, Envelope, MailAddress, Message, new_event_id
from smtp_discovery.schemas.state import UserRole

PROVIDER_DEFAULTS_KEY = "__provider__"
"""Key of the provider-wide defaults record on ``discovery.tenants`` (never a valid tenant id)."""


class TempfailPolicy(StrEnum):
    DEFER = "defer"
    """Answer 451 4.4.3: the sender retries later."""
    ACCEPT_IF_KNOWN = "accept_if_known"
    """Accept when the address is already known (pending or discovered), otherwise defer."""


def _single_line(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("must be a single line of text")
    return value


def _probe_sender(value: str) -> str:
    if value in ("", "<>"):
        return ""
    try:
        parse_address(value, smtputf8=False)
    except AddressError as exc:
        raise ValueError(f"probe sender must be empty (<>) or an address: {exc.message}") from None
    return value


ReplyText = Annotated[str, Field(min_length=1, max_length=400), AfterValidator(_single_line)]


def _setting(default: Any, description: str, recommended: Any = None, **constraints: Any) -> Any:
    extra = {"recommended": recommended} if recommended is not None else None
    return Field(default=default, description=description, json_schema_extra=extra, **constraints)


class DiscoverySettings(Contract):
    """Every per-tenant setting with its provider default (docs/design.md, "Per-tenant
    settings")."""

    discovery_enabled: bool = _setting(
        False, "SMTP Discovery relays mail for unknown recipients verified by a callout."
    )
    default_new_user_role: UserRole = _setting(
        UserRole.END_USER,
        "Role given to users created automatically: end user (can log in) or silent user "
        "(receives digests, cannot log in).",
    )
    inbound_detection_threshold: int = _setting(
        3,
        "Clean messages an address must receive within the detection period to be discovered.",
        recommended=3,
        ge=1,
        le=1000,
    )
    detection_period_days: int = _setting(
        30, "Length of the inbound detection window in days.", ge=1, le=365
    )
    notices_before_expiry: int = _setting(
        3,
        "Weekly notices about a discovered address before it expires.",
        recommended=3,
        ge=1,
        le=52,
    )
    expired_addresses_default_to_new_user: bool = _setting(
        False,
        "An expired discovered address becomes a user (otherwise it is marked invalid). "
        "May create accounts and affect billing.",
        recommended=False,
    )
    auto_add_detected_aliases: bool = _setting(
        True,
        "Link simple aliases (same local part in another domain, or local+tag) to their user.",
        recommended=True,
    )
    auto_add_outbound_users: bool = _setting(
        False,
        "An unregistered sender seen on outbound mail from the tenant's IPs becomes a user. "
        "May create accounts and affect billing.",
        recommended=False,
    )
    report_new_users: bool = _setting(
        True, "Weekly report of users created in the previous week.", recommended=True
    )
    report_new_aliases: bool = _setting(
        True, "Weekly report of aliases created in the previous week.", recommended=True
    )
    report_include_admin_contact: bool = _setting(
        True, "Send the reports to the Admin Contact as well as the Tech Contact.", recommended=True
    )
    directory_sync_enabled: bool = _setting(
        False,
        "A directory (LDAP/Azure) sync owns the user list: discovery is off for the tenant.",
    )
    probe_sender: Annotated[str, AfterValidator(_probe_sender)] = _setting(
        "", "MAIL FROM of callouts; empty means the null sender <>.", max_length=256
    )
    callout_connect_timeout_s: float = _setting(
        10.0, "Seconds to wait for a destination to answer a connection.", gt=0, le=300
    )
    callout_command_timeout_s: float = _setting(
        30.0, "Seconds to wait for each callout command's reply.", gt=0, le=600
    )
    positive_cache_ttl_s: int = _setting(
        7 * 86400, "Seconds a successful verification is reused.", ge=0, le=90 * 86400
    )
    negative_cache_ttl_s: int = _setting(
        2 * 3600, "Seconds a rejected verification is reused.", ge=0, le=30 * 86400
    )
    tempfail_policy: TempfailPolicy = _setting(
        TempfailPolicy.DEFER, "What to do when no destination gives a definite answer."
    )
    monitor_mode: bool = _setting(
        False, "Log what would be rejected and reject nothing (for onboarding)."
    )
    catch_all_detection: bool = _setting(
        True, "Probe a random local part daily to detect destinations that accept anything."
    )
    dha_max_rejections: int = _setting(
        20,
        "Rejected recipients per client IP within the DHA window before slowing it.",
        ge=1,
        le=100_000,
    )
    dha_window_s: int = _setting(
        600, "Sliding window for directory-harvest counting, in seconds.", ge=1, le=86400
    )
    invalid_ndr_text: ReplyText = _setting(
        "Recipient address rejected: the address is marked invalid by the administrator",
        "Reply text for mail to an address on the Marked Invalid list.",
    )
    unknown_recipient_text: ReplyText = _setting(
        "Recipient address rejected: user unknown",
        "Reply text for a recipient that does not exist.",
    )
    relay_denied_text: ReplyText = _setting(
        "Relaying denied", "Reply text for a recipient in a domain no tenant registered."
    )


SETTING_NAMES = frozenset(DiscoverySettings.model_fields)


def validate_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Check a tenant's overrides: known names and valid values, each error in one sentence."""
    unknown = sorted(set(overrides) - SETTING_NAMES)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        merged = DiscoverySettings.model_validate(overrides)
    except ValidationError as exc:
        raise ValueError("; ".join(describe_errors(exc))) from None
    return {name: getattr(merged, name) for name in overrides}


BUILT_IN = DiscoverySettings()
"""The vendor's values: what a provider default is until the provider changes it."""


def effective_settings(
    defaults: DiscoverySettings, overrides: Mapping[str, Any]
) -> DiscoverySettings:
    """The one merge of the two layers: the settings a tenant runs with. Each of its
    ``overrides`` wins; every setting it did not override is the provider's default
    (``defaults``), so a provider change reaches it. The overrides are checked and typed as the
    contract checks them (a stored ``"silent_user"`` becomes ``UserRole.SILENT_USER``; an invalid
    value raises ``ValidationError``). A name that is no setting is ignored, as the contract
    ignores fields it does not know; a tenant's record refuses one when it is written
    (``validate_overrides``)."""
    return DiscoverySettings.model_validate({**defaults.model_dump(), **overrides})


def changed_settings(changes: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The one rule for changing settings, at the provider's level and at a tenant's: each
    named setting takes its new value, and ``None`` removes what this level set, so the level
    below applies again (the built-in vendor value under the provider defaults, the provider
    default under a tenant's override); the settings not named stay. ``own`` is what this
    level sets now; the result is what it sets after, checked. Raises ValueError."""
    unknown = sorted(set(changes) - SETTING_NAMES)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    return validate_overrides({k: v for k, v in {**own, **changes}.items() if v is not None})


def provider_own(defaults: DiscoverySettings) -> dict[str, Any]:
    """What the provider set: its defaults that differ from the built-in vendor values."""
    return {
        name: getattr(defaults, name)
        for name in DiscoverySettings.model_fields
        if getattr(defaults, name) != getattr(BUILT_IN, name)
    }


def describe_errors(exc: ValidationError) -> list[str]:
    """A ValidationError as one sentence per problem, naming the field: for APIs and the CLI."""
    sentences = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "value"
        message = error["msg"].removeprefix("Value error, ")
        sentences.append(f"{where}: {message}")
    return sentences


class Destination(Contract):
    """Where a tenant's mail goes: a static host, or the MX hosts of a delivery domain."""

    kind: Literal["static", "mx"] = "static"
    host: str | None = Field(default=None, max_length=255)
    domain: str | None = Field(default=None, max_length=255)
    port: int = Field(default=25, ge=1, le=65535)
    priority: int = Field(default=10, ge=0, le=65535, description="Lower is tried first.")

    @model_validator(mode="after")
    def _shape(self) -> Destination:
        if self.kind == "static":
            if not self.host:
                raise ValueError("a static destination needs a host")
            _check_host(self.host)
            if self.domain:
                raise ValueError("a static destination takes a host, not a domain")
        else:
            if not self.domain:
                raise ValueError("an mx destination needs a domain")
            if self.host:
                raise ValueError("an mx destination takes a domain, not a host")
            _check_host(self.domain)
        return self


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        normalize_domain(host)
    except AddressError as exc:
        raise ValueError(f"invalid host {host!r}: {exc.message}") from None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TenantConfig(Envelope):
    """One tenant: what it owns, where its mail goes, who to tell, and its setting overrides."""

    type: Literal["tenant"] = "tenant"
    name: str = Field(min_length=1, max_length=200)
    domains: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = ()
    outbound_ranges: tuple[IPNetwork, ...] = ()
    tech_contact: MailAddress | None = None
    admin_contact: MailAddress | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="Overrides only.")
    verification_cache_epoch: int = Field(
        default=0, ge=0, description="Bumped to make every ingest node drop its cached callouts."
    )
    revision: int = Field(
        default=0, ge=0, description="Bumped by every write: the version an edit was based on."
    )

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalized = []
        for domain in value:
            try:
                canonical = normalize_domain(domain)
            except AddressError as exc:
                raise ValueError(f"invalid domain {domain!r}: {exc.message}") from None
            if canonical.startswith("["):
                raise ValueError(f"{domain!r} is an address literal, not a domain")
            if canonical in normalized:
                raise ValueError(f"domain {canonical!r} is listed twice")
            normalized.append(canonical)
        return tuple(normalized)

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return validate_overrides(value)

    @field_validator("outbound_ranges", mode="before")
    @classmethod
    def _ranges(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            out = []
            for item in value:
                try:
                    out.append(
                        ipaddress.ip_network(item, strict=False) if isinstance(item, str) else item
                    )
                except ValueError as exc:
                    raise ValueError(f"invalid outbound range {item!r}: {exc}") from None
            return tuple(out)
        return value

    def effective_settings(self, defaults: DiscoverySettings) -> DiscoverySettings:
        """This tenant's overrides on the provider ``defaults`` (``effective_settings``)."""
        return effective_settings(defaults, self.settings)

    def owns_domain(self, domain: str) -> bool:
        return domain in self.domains

    def kafka_key(self) -> bytes:
        return self.tenant_id.encode("utf-8")


class ProviderDefaults(Message):
    """Provider-wide defaults for every setting, kept under PROVIDER_DEFAULTS_KEY."""

    type: Literal["provider_defaults"] = "provider_defaults"
    settings: DiscoverySettings = Field(default_factory=DiscoverySettings)
    revision: int = Field(
        default=0, ge=0, description="Bumped by every write: the version an edit was based on."
    )

    def kafka_key(self) -> bytes:
        return PROVIDER_DEFAULTS_KEY.encode("utf-8")


Revisable = TypeVar("Revisable", TenantConfig, ProviderDefaults)


def revised(record: Revisable, at: datetime, **changes: Any) -> Revisable:
    """The next version of a tenants-topic record: a new identity and the next revision."""
    return record.model_copy(
        update={**changes, "event_id": new_event_id(), "event_time": at,
                "revision": record.revision + 1}
    )  # fmt: skip


TenantsTopicValue = Annotated[TenantConfig | ProviderDefaults, Field(discriminator="type")]
