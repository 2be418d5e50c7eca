"""Asking a role's ops endpoint, from tests that run roles as processes of their own."""

from __future__ import annotations

import urllib.error
import urllib.request


def ready(port: int) -> bool:
    """True once the role on ``port`` answers /readyz with 200 (False while it cannot)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
