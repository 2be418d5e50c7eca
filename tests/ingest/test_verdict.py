"""The default verdict step and loading a replacement."""

from __future__ import annotations

import pytest

from smtp_discovery.ingest.verdict import SpamHeaderVerdict, load_verdict_step


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        (b"Subject: hi\r\n\r\nbody\r\n", "clean"),
        (b"X-Spam-Flag: YES\r\nSubject: hi\r\n\r\nbody\r\n", "not_clean"),
        (b"x-spam-flag:   yes\r\n\r\n", "not_clean"),
        (b"X-Spam-Flag: NO\r\n\r\n", "clean"),
        (b"Subject: hi\r\n\r\nX-Spam-Flag: YES\r\n", "clean"),  # in the body: not a header
        (b"X-Spam-Flag: NO\r\nX-Spam-Flag: YES\r\n\r\n", "not_clean"),
    ],
)
def test_the_spam_header_decides(message: bytes, verdict: str) -> None:
    assert SpamHeaderVerdict()(message) == verdict


def test_another_header_and_pattern_can_be_configured() -> None:
    step = load_verdict_step(None, r"X-Filter-Score:^\s*[5-9]\d*")
    assert step(b"X-Filter-Score: 7\r\n\r\n") == "not_clean"
    assert step(b"X-Filter-Score: 2\r\n\r\n") == "clean"


def test_a_plugin_replaces_the_default() -> None:
    step = load_verdict_step("tests.ingest.test_verdict:_always_clean", "X:y")
    assert step(b"X-Spam-Flag: YES\r\n\r\n") == "clean"


def _always_clean():  # type: ignore[no-untyped-def]
    return lambda content: "clean"
