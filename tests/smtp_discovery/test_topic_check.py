"""What `topics ensure` says of a topic it may not describe."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from smtp_discovery.platform.kafka import _check_existing
from smtp_discovery.schemas.topics import MAIL, topic


class Refusing:
    """An admin client whose principal has DescribeConfigs on the topic, but not Describe (the
    setup role's grants before they were fixed): the broker answers with no partitions."""

    def __init__(self) -> None:
        self.describes = 0

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.describes += 1
        return [{"topic": name, "error_code": 29, "partitions": []} for name in names]

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        entries = [("cleanup.policy", "delete")]
        return [SimpleNamespace(resources=[(0, "", 2, r.name, entries) for r in resources])]


async def test_a_topic_without_describe_is_named_as_such_at_once() -> None:
    admin = Refusing()
    (outcome,) = await _check_existing(admin, [topic(MAIL)], 6)  # type: ignore[arg-type]
    assert outcome.action == "mismatch"
    assert "needs Describe" in outcome.detail
    assert "TopicAuthorizationFailedError" in outcome.detail
    assert "partitions" not in outcome.detail  # not "has 0 partitions"
    assert admin.describes == 1  # a refusal is not waited out
