"""The fast reading of plain paths agrees with aiosmtpd's wherever it answers."""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtp_discovery.ingest.envelope_syntax import plain_path

AIOSMTPD = SMTP(object())  # only its path reader is used

pieces = st.sampled_from(
    ["<", ">", "@", ".", "a", "B", "z9", "-", "+tag", '"', "(c)", "(", ")", " ", "\t", "\r\n",
     "[1.2.3.4]", ":", ",", "\\", "ü", "SIZE=10", "BODY=8BITMIME", "x(y)", "=", "#", "~"]
)  # fmt: skip


def paths() -> Any:
    simple = st.builds(
        lambda pre, local, host, post: f"{pre}<{local}@{host}>{post}",
        st.sampled_from(["", " ", "  ", "\t"]),
        st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,12}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9.-]{1,12}", fullmatch=True),
        st.lists(pieces, max_size=4).map("".join),
    )
    return simple | st.lists(pieces, max_size=12).map("".join)


@settings(max_examples=3000)
@given(paths())
@example(" <a.b@c.example> SIZE=10")
@example("<a@b> (comment) x")
@example("<a@b>\r\n")
@example("<a..b@c>")
@example("<a@b..c>")
def test_a_plain_path_reads_as_aiosmtpd_reads_it(arg: str) -> None:
    plain = plain_path(arg)
    if plain is not None:
        assert plain == AIOSMTPD._getaddr(arg)


def test_the_paths_mtas_send_are_read_without_the_header_parser() -> None:
    for arg in ("<alice@example.com>", " <first.last+tag@mail.example.org> SIZE=2048 BODY=8BITMIME",
                "<bounce-123=x@lists.example>"):  # fmt: skip
        assert plain_path(arg) == AIOSMTPD._getaddr(arg)
    for arg in ("<>", '<"quoted"@example.com>', "<@relay:a@b>", "<a@[192.0.2.1]>", "a@b"):
        assert plain_path(arg) is None  # left to aiosmtpd
