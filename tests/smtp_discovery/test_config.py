from __future__ import annotations

import re
import runpy
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from smtp_discovery.cli import main
from smtp_discovery.platform.config import (
    KAFKA_FIELDS,
    SECTIONS,
    VARIABLES,
    AdminSettings,
    ClickHouseSettings,
    CommonSettings,
    IngestSettings,
    KafkaSettings,
    PolicySettings,
    ReportSettings,
    RuntimeConfig,
    SettingsSection,
    SinkSectionSettings,
    WorkerSettings,
    setting,
)
from smtp_discovery.platform.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_mode(tmp_path: Path) -> None:
    config = RuntimeConfig.from_env({"DISCOVERY_DATA_DIR": str(tmp_path)})
    assert config.embedded_kafka
    assert config.effective_clickhouse_url == f"chdb://{tmp_path / 'clickhouse'}"
    assert config.topic_partitions == 12


def test_values_are_read_and_validated() -> None:
    config = RuntimeConfig.from_env(
        {
            "KAFKA_BOOTSTRAP": " k1:9092, k2:9092 ",
            "CLICKHOUSE_URL": "http://ch:8123/db",
            "DISCOVERY_TOPIC_PARTITIONS": "48",
            "DISCOVERY_TOPIC_REPLICATION": "3",
        }
    )
    assert config.kafka_bootstrap == "k1:9092,k2:9092"
    assert not config.embedded_kafka
    assert (config.topic_partitions, config.topic_replication) == (48, 3)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"KAFKA_BOOTSTRAP": "no-port"}, "KAFKA_BOOTSTRAP: 'no-port' is not host:port"),
        ({"DISCOVERY_TOPIC_PARTITIONS": "many"}, "DISCOVERY_TOPIC_PARTITIONS"),
        ({"DISCOVERY_LOG_LEVEL": "LOUD"}, "DISCOVERY_LOG_LEVEL"),
        ({"DISCOVERY_KAFKA_VERSION": "3.9.0"}, "DISCOVERY_KAFKA_VERSION"),
        ({"DISCOVERY_ADMIN_LISTEN": "nowhere"}, "DISCOVERY_ADMIN_LISTEN: 'nowhere' is not host"),
        ({"DISCOVERY_REPORT_SMARTHOST": "x"}, "DISCOVERY_REPORT_SMARTHOST: 'x' is not host:port"),
        (
            {"DISCOVERY_INGEST_TLS_CERT": "/c.pem"},
            "DISCOVERY_INGEST_TLS_CERT and DISCOVERY_INGEST_",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        RuntimeConfig.from_env(env)
    assert fragment in err.value.message
    assert err.value.exit_code == 2


def test_every_bad_value_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        RuntimeConfig.from_env({"DISCOVERY_TOPIC_PARTITIONS": "0", "DISCOVERY_INGEST_NODES": "x"})
    assert err.value.message.startswith("invalid configuration: ")
    assert "DISCOVERY_TOPIC_PARTITIONS: " in err.value.message
    assert "DISCOVERY_INGEST_NODES: " in err.value.message


def test_only_declared_variables_are_read_and_blank_means_default() -> None:
    config = RuntimeConfig.from_env(
        {
            "kafka_bootstrap": "k1:9092",  # a field name is no variable
            "discovery_topic_partitions": "3",  # nor is a variable in the wrong case
            "DISCOVERY_TOPIC_PREFIX": "   ",
            "DISCOVERY_SOMETHING_ELSE": "x",
        }
    )
    assert config.kafka_bootstrap is None
    assert config.topic_partitions == 12
    assert config.topic_prefix == ""


def test_constructing_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "k1:9092")
    monkeypatch.setenv("DISCOVERY_TOPIC_PARTITIONS", "7")
    monkeypatch.setenv("DISCOVERY_INGEST_LISTEN", "0.0.0.0:25")
    for config in (RuntimeConfig(), RuntimeConfig.model_validate({})):
        assert (config.kafka_bootstrap, config.topic_partitions) == (None, 12)
    assert IngestSettings().ingest_listen == "127.0.0.1:2525"
    from_env = RuntimeConfig.from_env()
    assert (from_env.kafka_bootstrap, from_env.topic_partitions) == ("k1:9092", 7)
    assert IngestSettings.from_env().ingest_listen == "0.0.0.0:25"


def test_fields_are_set_by_name_in_code(tmp_path: Path) -> None:
    config = RuntimeConfig(data_dir=tmp_path, topic_prefix="staging.")
    assert config.token_key_path == tmp_path / "admin-token.key"
    assert config.topics.prefix == "staging."
    validated = RuntimeConfig.model_validate({"ingest_listen": "0.0.0.0:25", "ingest_nodes": 3})
    assert (validated.ingest_listen, validated.ingest_nodes) == ("0.0.0.0:25", 3)
    copy = validated.model_copy(update={"kafka_bootstrap": "k1:9092"})
    assert (copy.kafka_bootstrap, copy.ingest_nodes) == ("k1:9092", 3)
    with pytest.raises(ValidationError):
        RuntimeConfig(no_such_setting=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RuntimeConfig(topic_partitions=0)
    with pytest.raises(ValidationError):
        config.topic_prefix = "other."  # type: ignore[misc]


def test_a_section_reads_only_its_own_variables() -> None:
    ingest = IngestSettings.from_env({"DISCOVERY_INGEST_NODES": "4", "KAFKA_BOOTSTRAP": "no-port"})
    assert ingest.ingest_nodes == 4
    assert not hasattr(ingest, "kafka_bootstrap")
    with pytest.raises(ConfigError, match="DISCOVERY_INGEST_NODES"):
        IngestSettings.from_env({"DISCOVERY_INGEST_NODES": "0"})


def test_every_field_has_one_variable_and_a_description() -> None:
    assert RuntimeConfig.model_fields, "no settings"
    for name, field in RuntimeConfig.model_fields.items():
        env = field.validation_alias
        assert isinstance(env, str), f"{name}: one environment variable, declared with setting()"
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*[A-Z0-9]", env), f"{name}: {env!r}"
        assert field.description and field.description.strip(), f"{name} has no description"
        assert isinstance(field.json_schema_extra, dict), name
        assert isinstance(field.json_schema_extra.get("secret"), bool), name
    fields = [v.field for v in RuntimeConfig.variables()]
    assert sorted(fields) == sorted(RuntimeConfig.model_fields), "each field listed once"
    assert RuntimeConfig.variables() == VARIABLES


def test_no_two_fields_share_a_variable() -> None:
    counts = Counter(v.env for v in RuntimeConfig.variables())
    assert [env for env, count in counts.items() if count > 1] == []
    assert len(counts) == len(RuntimeConfig.model_fields)


def test_runtime_config_is_the_sections_and_nothing_else() -> None:
    assert (
        KafkaSettings,
        ClickHouseSettings,
        CommonSettings,
        IngestSettings,
        PolicySettings,
        WorkerSettings,
        SinkSectionSettings,
        ReportSettings,
        AdminSettings,
    ) == SECTIONS
    owners = Counter(name for section in SECTIONS for name in section.model_fields)
    assert [name for name, count in owners.items() if count > 1] == []
    assert set(owners) == set(RuntimeConfig.model_fields), "declare settings in a section"
    assert all(section.section_title for section in SECTIONS)
    assert tuple(KafkaSettings.model_fields) == KAFKA_FIELDS


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.__name__)
def test_each_section_holds_only_its_own_prefix(section: type[SettingsSection]) -> None:
    """A variable lives in the section with the longest prefix it starts with."""
    assert section.variables(), f"{section.__name__} declares no setting"
    for var in section.variables():
        assert var.env.startswith(section.variable_prefix), var.env
        longest = max(
            (s.variable_prefix for s in SECTIONS if var.env.startswith(s.variable_prefix)),
            key=len,
        )
        assert section.variable_prefix == longest, f"{var.env} belongs where {longest} does"


@pytest.mark.parametrize(
    ("section", "prefix", "only"),
    [
        (KafkaSettings, "KAFKA_", True),
        (ClickHouseSettings, "CLICKHOUSE_", True),
        (IngestSettings, "DISCOVERY_INGEST_", True),
        (WorkerSettings, "DISCOVERY_STREAMS_", False),
        (SinkSectionSettings, "DISCOVERY_SINK_", False),
        (ReportSettings, "DISCOVERY_REPORT_", True),
        (AdminSettings, "DISCOVERY_ADMIN_", True),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value),
)
def test_a_prefix_belongs_to_its_section(
    section: type[SettingsSection], prefix: str, only: bool
) -> None:
    with_prefix = {v.env for v in RuntimeConfig.variables() if v.env.startswith(prefix)}
    own = {v.env for v in section.variables()}
    assert with_prefix, prefix
    assert with_prefix <= own, f"{sorted(with_prefix - own)} belong in {section.__name__}"
    if only:
        assert own == with_prefix, f"{sorted(own - with_prefix)} don't start with {prefix}"


def test_secrets_are_masked() -> None:
    config = RuntimeConfig.from_env(
        {
            "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD": "hunter2",
            "CLICKHOUSE_URL": "https://u:hunter2@ch:8443/db",
        }
    )
    shown = config.redacted()
    assert "hunter2" not in repr(config)
    assert "hunter2" not in " ".join(shown.values())
    assert shown["KAFKA_SASL_PASSWORD"] == "***"
    assert shown["CLICKHOUSE_URL"] == "https://u:***@ch:8443/db"
    assert shown["KAFKA_SASL_USERNAME"] == "alice"
    assert list(shown) == [v.env for v in VARIABLES]
    assert {v.env for v in VARIABLES if v.secret} == {"KAFKA_SASL_PASSWORD", "CLICKHOUSE_URL"}
    assert KafkaSettings(kafka_sasl_password="hunter2").redacted()["KAFKA_SASL_PASSWORD"] == "***"


class _Vault(SettingsSection):
    """A section of this test's own."""

    section_title = "Vault"
    variable_prefix = "TEST_VAULT_"

    vault_token: str | None = setting("TEST_VAULT_TOKEN", "A token.", secret=True, default=None)
    vault_user: str = setting("TEST_VAULT_USER", "A user.", default="nobody")


def test_a_setting_declared_secret_is_never_shown() -> None:
    vault = _Vault.from_env({"TEST_VAULT_TOKEN": "s3cret", "TEST_VAULT_USER": "alice"})
    assert vault.vault_token == "s3cret"
    assert "s3cret" not in repr(vault)
    assert vault.redacted() == {"TEST_VAULT_TOKEN": "***", "TEST_VAULT_USER": "alice"}
    assert [(v.env, v.secret, v.section) for v in _Vault.variables()] == [
        ("TEST_VAULT_TOKEN", True, "Vault"),
        ("TEST_VAULT_USER", False, "Vault"),
    ]
    assert _Vault().redacted()["TEST_VAULT_TOKEN"] == ""


def test_as_environment_is_read_back_by_from_env(tmp_path: Path) -> None:
    login = RuntimeConfig(
        kafka_bootstrap="k1:9092",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ingest",
        kafka_sasl_password="pw",
        kafka_ssl_cafile=tmp_path / "ca.pem",
    )
    env = login.as_environment(*KAFKA_FIELDS)
    assert set(env) == {v.env for v in KafkaSettings.variables()}
    back = RuntimeConfig.from_env(env)
    assert {f: getattr(back, f) for f in KAFKA_FIELDS} == {
        f: getattr(login, f) for f in KAFKA_FIELDS
    }
    assert "KAFKA_SASL_PASSWORD" not in RuntimeConfig().as_environment(*KAFKA_FIELDS)


def test_config_command_prints_every_variable_by_section(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headings = [line.removeprefix("# ") for line in lines if line.startswith("# ")]
    names = [line.partition("=")[0] for line in lines if line and not line.startswith("#")]
    assert headings == [section.section_title for section in SECTIONS]
    assert names == [v.env for v in VARIABLES]


def test_every_variable_maps_to_a_field_and_is_documented_in_the_readme() -> None:
    readme = (ROOT / "docs" / "configuration.md").read_text()
    documented = re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE)
    for var in VARIABLES:
        assert var.field in RuntimeConfig.model_fields
        assert var.env in documented, f"{var.env} is missing from docs/configuration.md's table"
    assert sorted(documented) == sorted(v.env for v in VARIABLES), "run scripts/config-table"


def test_the_readme_tables_are_generated_from_the_declarations() -> None:
    script = runpy.run_path(str(ROOT / "scripts" / "config-table"))
    block = script["render"]()
    for section in SECTIONS:
        assert f"\n### {section.section_title}\n" in block
    for var in VARIABLES:
        assert f"| `{var.env}` |" in block and var.description in block
    assert block in (ROOT / "docs" / "configuration.md").read_text(), "run scripts/config-table"
