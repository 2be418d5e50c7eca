"""The token key the tests' admin APIs sign and check their tokens with (a fresh one per run)."""

from __future__ import annotations

import secrets
from pathlib import Path

KEY = secrets.token_bytes(32)


def key_file(directory: Path) -> Path:
    """``KEY`` in a file, for an admin API started as a process (DISCOVERY_ADMIN_TOKEN_KEY_FILE)."""
    path = directory / "admin-token.key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)
    return path
