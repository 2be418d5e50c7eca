"""The verdict step: was a delivered message clean? Only clean mail counts towards discovery.

The gateway's filter runs upstream of this node or inside the destination; its verdict reaches
us as a header. The default step reads that header; operators replace it with any callable
(``DISCOVERY_INGEST_VERDICT=module:factory``) that takes the raw message and answers.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Literal

Verdict = Literal["clean", "not_clean"]
VerdictStep = Callable[[bytes], Verdict]

_HEADERS = BytesHeaderParser(policy=compat32)


class SpamHeaderVerdict:
    """Not clean when a header (any of its occurrences) matches a pattern, case-insensitively."""

    def __init__(self, spec: str = r"X-Spam-Flag:^\s*yes\b") -> None:
        name, _, pattern = spec.partition(":")
        self.header = name.strip()
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self._field = self.header.lower().encode("ascii") + b":"

    def __call__(self, content: bytes) -> Verdict:
        end = content.find(b"\r\n\r\n")
        head = content if end < 0 else content[: end + 2]
        lowered = head.lower()
        if not lowered.startswith(self._field) and b"\n" + self._field not in lowered:
            return "clean"  # most mail: no such header, and no need to parse the header block
        headers = _HEADERS.parsebytes(head, headersonly=True)
        for value in headers.get_all(self.header, []):
            if self.pattern.search(str(value)):
                return "not_clean"
        return "clean"


def load_verdict_step(reference: str | None, spam_header: str) -> VerdictStep:
    """The configured step: ``module:factory`` (called with no arguments) or the default."""
    if not reference:
        return SpamHeaderVerdict(spam_header)
    module_name, _, attribute = reference.partition(":")
    factory = importlib.import_module(module_name)
    for part in attribute.split("."):
        factory = getattr(factory, part)
    step = factory()  # type: ignore[operator]
    if not callable(step):
        raise TypeError(f"{reference} did not return a callable verdict step")
    return step  # type: ignore[no-any-return]
