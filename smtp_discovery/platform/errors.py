"""Errors an operator can act on: each carries one sentence and the CLI exit code for it."""

from __future__ import annotations


class OperatorError(Exception):
    """Something the operator must fix; the CLI prints the sentence and exits with ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(OperatorError):
    exit_code = 2


class MissingToolError(OperatorError):
    """A program the embedded mode needs (Java, Maven) is not installed."""

    exit_code = 3


class InfrastructureError(OperatorError):
    """Kafka or ClickHouse could not be started, reached or set up."""

    exit_code = 4
