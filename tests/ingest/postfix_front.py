"""A real Postfix as a provider's gateway in front of tenants' servers, on a loopback port, from
its own config directory: it asks the policy service about every recipient and at the end of
every message, and looks up ``relay_domains`` and ``transport_maps`` in its socketmap tables.

The lines are those docs/postfix.md gives operators, with short retry times so mail queued for
a tenant's server leaves at once. Every service runs outside a chroot (the config directory is
not a full chroot tree); logs go to ``maillog_file`` as in ``tests.ingest.postfix``.
"""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ingest.postfix import MASTER_CF

DEFAULT_ACTION = "451 4.3.5 Discovery policy service unavailable, try again later"
"""``smtpd_policy_service_default_action``: Postfix's answer while the service is away."""


class PostfixFront:
    def __init__(self, *, port: int, policy: str, socketmap: str) -> None:
        if shutil.which("postfix") is None:
            raise RuntimeError("Postfix is not installed: apt-get install postfix")
        self.directory = Path(tempfile.mkdtemp(prefix="postfix-front-"))
        self.directory.chmod(0o755)
        self.port = port
        self.policy = policy
        """host:port of the policy delegation server."""
        self.socketmap = socketmap
        self.etc = self.directory / "etc"

    @property
    def log(self) -> Path:
        return self.directory / "postfix.log"

    def main_cf(self) -> str:
        d = self.directory
        policy = (
            f"check_policy_service {{ inet:{self.policy}, timeout=10s, "
            f"{{ default_action = {DEFAULT_ACTION} }} }}"
        )
        return "\n".join(
            [
                "compatibility_level = 3.6",
                f"config_directory = {self.etc}",
                f"queue_directory = {d / 'queue'}",
                f"data_directory = {d / 'data'}",
                "mail_owner = postfix",
                "setgid_group = postdrop",
                "myhostname = gw.provider.test",
                "mydomain = provider.test",
                "mydestination =",
                "local_recipient_maps =",
                "alias_maps =",
                "alias_database =",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                # Nobody relays by address: the policy service says who may (tenants' ranges).
                "mynetworks = 192.0.2.255/32",
                f"relay_domains = socketmap:inet:{self.socketmap}:relay",
                f"transport_maps = socketmap:inet:{self.socketmap}:transport",
                "relay_recipient_maps =",
                "parent_domain_matches_subdomains = debug_peer_list, fast_flush_domains, "
                "mynetworks, permit_mx_backup_networks, qmqpd_authorized_clients, "
                "smtpd_access_maps",
                "smtpd_relay_restrictions =",
                f"smtpd_recipient_restrictions = {policy}, reject_unauth_destination",
                f"smtpd_end_of_data_restrictions = {policy}",
                "smtpd_policy_service_try_limit = 2",
                "smtpd_policy_service_retry_delay = 1s",
                f"maillog_file = {self.log}",
                f"maillog_file_prefixes = {d}",
                "smtpd_banner = $myhostname ESMTP",
                "biff = no",
                "smtputf8_enable = yes",
                "smtp_tls_security_level = none",
                "queue_run_delay = 1s",
                "minimal_backoff_time = 1s",
                "maximal_backoff_time = 2s",
                "",
            ]
        )

    def master_cf(self) -> str:
        """Debian's master.cf with the SMTP listener on our port and no chroot anywhere."""
        lines = []
        for line in MASTER_CF.read_text().splitlines():
            fields = line.split()
            if line.startswith("smtp ") and " inet " in line:
                line = f"127.0.0.1:{self.port} inet n - n - - smtpd"
            elif line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                fields[4] = "n"
                line = " ".join(fields)
            lines.append(line)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> None:
        for sub in ("etc", "queue", "data"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.etc / "main.cf").write_text(self.main_cf())
        (self.etc / "master.cf").write_text(self.master_cf())
        postfix = pwd.getpwnam("postfix")
        shutil.chown(self.directory / "data", postfix.pw_uid, postfix.pw_gid)
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

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def _postfix(self, action: str, check: bool = True) -> None:
        result = subprocess.run(
            ["postfix", "-c", str(self.etc), action], capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"postfix {action} failed: {result.stderr}\n{self.log_text()}")
