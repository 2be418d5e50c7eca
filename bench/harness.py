"""What every benchmark script does around its measurement: a scratch directory and a Kafka
(the one KAFKA_BOOTSTRAP names, or a local broker started for the run)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.platform.config import RuntimeConfig

Measure = Callable[[str, argparse.Namespace, Path], Awaitable[None]]


def run_with_kafka(measure: Measure, args: argparse.Namespace, heap: str | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    config = RuntimeConfig.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        if config.kafka_bootstrap:
            asyncio.run(measure(config.kafka_bootstrap, args, Path(tmp)))
            return
        options = {"heap": heap} if heap else {}
        with LocalKafka(Path(tmp) / "kafka", cache_dir=config.kafka_cache_dir, **options) as kafka:
            asyncio.run(measure(kafka.bootstrap, args, Path(tmp)))
