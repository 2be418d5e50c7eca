"""The embedded broker's credentials: one SASL/SCRAM login every role of `up` uses.

Made at the first start into the broker's directory (mode 0600), so that the boundary of the
embedded system is the Unix user who runs it: any other local process (another user's, or a
container sharing the host's loopback) can reach the port, but not read or write a topic.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from smtp_discovery.platform.errors import InfrastructureError

MECHANISM = "SCRAM-SHA-512"
"""For clients and between brokers. A KRaft controller cannot use SCRAM (its credentials live in
the metadata it serves), so the controller listener uses PLAIN with the same login."""

USERNAME = "smtp-discovery"


@dataclass(frozen=True, slots=True)
class KafkaLogin:
    username: str
    password: str

    def __repr__(self) -> str:  # never the password, in a log or a traceback
        return f"KafkaLogin({self.username!r})"

    def settings(self) -> dict[str, str]:
        """The RuntimeConfig fields that make a role use this login."""
        return {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": self.username,
            "kafka_sasl_password": self.password,
        }

    def client_options(self) -> dict[str, str]:
        """aiokafka's options for this login on the embedded broker (loopback: no TLS)."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }


def load_login(path: Path, *, create: bool = False) -> KafkaLogin:
    """The login kept in ``path``; ``create``: made (mode 0600) when missing."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            # URL-safe and free of quotes: it goes into JAAS configuration lines.
            login = {"username": USERNAME, "password": secrets.token_urlsafe(32)}
            with os.fdopen(fd, "w") as handle:
                json.dump(login, handle)
    try:
        found = json.loads(path.read_text())
        return KafkaLogin(str(found["username"]), str(found["password"]))
    except FileNotFoundError:
        raise InfrastructureError(f"the embedded Kafka's login {path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InfrastructureError(f"the embedded Kafka's login {path} is unreadable: {exc}") from (
            None
        )
