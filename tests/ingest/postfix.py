"""A real Postfix as a tenant's mail server, on a loopback port, from its own config directory.

Three personalities: ``strict`` knows a few mailboxes and rejects unknown users at RCPT (550),
``greylist`` defers every recipient (450), ``catchall`` accepts any local part. Pitfalls handled
here: no syslog daemon, so logs go to ``maillog_file`` (which must sit under
``maillog_file_prefixes``); ``data_directory`` must belong to the postfix user; the SMTP listener
is a loopback ``host:port`` line in master.cf.
"""

from __future__ import annotations

import asyncio
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MASTER_CF = Path("/etc/postfix/master.cf")


class PostfixServer:
    def __init__(
        self,
        *,
        port: int,
        domains: tuple[str, ...],
        mailboxes: tuple[str, ...] = (),
        mode: str = "strict",
        smtputf8: bool = True,
    ) -> None:
        if shutil.which("postfix") is None:
            raise RuntimeError(
                "Postfix is not installed: apt-get install postfix (scripts/install --dev)"
            )
        # Not under pytest's tmp_path: its 0700 parents keep the postfix user out.
        self.directory = Path(tempfile.mkdtemp(prefix=f"postfix-{mode}-"))
        self.directory.chmod(0o755)
        self.port = port
        self.domains = domains
        self.mailboxes = mailboxes
        self.mode = mode
        self.smtputf8 = smtputf8
        """Postfix's ``smtputf8_enable``: whether it offers SMTPUTF8 (its default is yes)."""
        self.etc = self.directory / "etc"

    @property
    def log(self) -> Path:
        return self.directory / "postfix.log"

    def _main_cf(self) -> str:
        restrictions = {
            "strict": "permit_mynetworks, reject_unauth_destination",
            "catchall": "permit_mynetworks, reject_unauth_destination",
            "greylist": "defer",
        }[self.mode]
        d = self.directory
        return "\n".join(
            [
                "compatibility_level = 3.6",
                f"config_directory = {self.etc}",
                f"queue_directory = {d / 'queue'}",
                f"data_directory = {d / 'data'}",
                "mail_owner = postfix",
                "setgid_group = postdrop",
                "myhostname = mx.tenant.test",
                "mydomain = tenant.test",
                "mydestination =",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "mynetworks = 127.0.0.0/8",
                f"virtual_mailbox_domains = {', '.join(self.domains)}",
                f"virtual_mailbox_maps = texthash:{self.etc / 'vmailbox'}",
                f"virtual_mailbox_base = {d / 'mail'}",
                f"virtual_uid_maps = static:{pwd.getpwnam('postfix').pw_uid}",
                f"virtual_gid_maps = static:{pwd.getpwnam('postfix').pw_gid}",
                "virtual_minimum_uid = 1",
                "smtpd_reject_unlisted_recipient = yes",
                f"smtpd_recipient_restrictions = {restrictions}",
                f"maillog_file = {self.log}",
                f"maillog_file_prefixes = {d}",
                "smtpd_banner = $myhostname ESMTP",
                "biff = no",
                f"smtputf8_enable = {'yes' if self.smtputf8 else 'no'}",
                "",
            ]
        )

    def _vmailbox(self) -> str:
        lines = [f"{box} {box.split('@')[1]}/{box.split('@')[0]}/" for box in self.mailboxes]
        if self.mode == "catchall":
            lines += [f"@{domain} {domain}/catchall/" for domain in self.domains]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> None:
        for sub in ("etc", "queue", "data", "mail"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.etc / "main.cf").write_text(self._main_cf())
        (self.etc / "vmailbox").write_text(self._vmailbox())
        master = MASTER_CF.read_text().splitlines()
        listener = f"127.0.0.1:{self.port} inet n - n - - smtpd"
        (self.etc / "master.cf").write_text(
            "\n".join(
                listener if line.startswith("smtp ") and " inet " in line else line
                for line in master
            )
            + "\n"
        )
        postfix = pwd.getpwnam("postfix")
        for sub in ("data", "mail"):
            shutil.chown(self.directory / sub, postfix.pw_uid, postfix.pw_gid)
        self._postfix("start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Postfix did not listen on {self.port}:\n{self.log_text()}")

    def stop(self) -> None:
        self._postfix("stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def delivered(self, mailbox: str) -> list[bytes]:
        """Messages delivered to a mailbox (maildir), oldest first."""
        local, domain = mailbox.split("@")
        new = self.directory / "mail" / domain / local / "new"
        return [p.read_bytes() for p in sorted(new.glob("*"))] if new.is_dir() else []

    async def wait_delivered(self, mailbox: str, count: int, timeout: float = 30.0) -> list[bytes]:
        """Postfix delivers after it queued: poll the maildir until ``count`` messages or the
        deadline, then return what is there (the test's assertion says what was missing)."""
        deadline = time.monotonic() + timeout
        # A maildir has no event to await: poll it.
        while len(messages := self.delivered(mailbox)) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return messages

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def _postfix(self, action: str, check: bool = True) -> None:
        result = subprocess.run(
            ["postfix", "-c", str(self.etc), action], capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"postfix {action} failed: {result.stderr}\n{self.log_text()}")
