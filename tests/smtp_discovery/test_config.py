from __future__ import annotations

import re
from pathlib import Path

import pytest

from smtp_discovery.platform.config import VARIABLES, RuntimeConfig
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
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        RuntimeConfig.from_env(env)
    assert fragment in err.value.message
    assert err.value.exit_code == 2


def test_secrets_are_masked() -> None:
    config = RuntimeConfig.from_env(
        {"KAFKA_SASL_PASSWORD": "hunter2", "CLICKHOUSE_URL": "https://u:hunter2@ch:8443/db"}
    )
    shown = config.redacted()
    assert "hunter2" not in repr(config)
    assert "hunter2" not in " ".join(shown.values())
    assert shown["KAFKA_SASL_PASSWORD"] == "***"


def test_every_variable_maps_to_a_field_and_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    for var in VARIABLES:
        assert var.field in RuntimeConfig.model_fields
        assert var.env in documented, f"{var.env} is missing from the README's table"
    assert documented == {v.env for v in VARIABLES}, "run scripts/readme-config-table"
