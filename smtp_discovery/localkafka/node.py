"""One KRaft node (broker and controller in one JVM): its configuration and its process."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from smtp_discovery.platform.errors import InfrastructureError, MissingToolError
from smtp_discovery.platform.kafka_login import MECHANISM, KafkaLogin
from smtp_discovery.platform.stopping import die_with_parent

NO_JAVA = (
    "Java 17 or newer is needed to run the embedded Apache Kafka broker: install it "
    "(apt-get install openjdk-17-jre-headless) or point JAVA_HOME at one, or set "
    "KAFKA_BOOTSTRAP=host:port to use an existing Kafka cluster."
)


@dataclass(frozen=True, slots=True)
class NodePorts:
    broker: int
    controller: int


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def render_properties(
    *,
    node_id: int,
    ports: NodePorts,
    voters: dict[int, NodePorts],
    log_dir: Path,
    replication: int,
    host: str = "127.0.0.1",
    login: KafkaLogin | None = None,
    authorize: bool = False,
) -> str:
    """server.properties for a combined broker+controller node with a static voter set.

    With ``login`` every listener needs it: clients and brokers authenticate with SCRAM, the
    controllers with PLAIN (KRaft's controllers cannot use SCRAM); without one (some tests'
    brokers) every listener is open to whoever reaches the port. ``authorize``: ACLs decide
    what each principal may do, and ``login`` is the super user who grants them."""
    voter_list = ",".join(f"{nid}@{host}:{p.controller}" for nid, p in sorted(voters.items()))
    protocol = "SASL_PLAINTEXT" if login else "PLAINTEXT"
    min_isr = min(2, replication)
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voter_list,
        "listeners": f"{CLIENT}://{host}:{ports.broker},CONTROLLER://{host}:{ports.controller}",
        "advertised.listeners": f"{CLIENT}://{host}:{ports.broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": CLIENT,
        "listener.security.protocol.map": f"{CLIENT}:{protocol},CONTROLLER:{protocol}",
        **(_sasl(login) if login else {}),
        **(_authorizer(login) if login and authorize else {}),
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "12",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.flush.interval.messages": "9223372036854775807",
        "unclean.leader.election.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


CLIENT = "CLIENT"
"""The listener of clients and of brokers among themselves."""


def _sasl(login: KafkaLogin) -> dict[str, str]:
    user, password = login.username, login.password
    scram = f'username="{user}" password="{password}";'
    plain = f'username="{user}" password="{password}" user_{user}="{password}";'
    return {
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.{CLIENT.lower()}.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{CLIENT.lower()}.{MECHANISM.lower()}.sasl.jaas.config":
            f"org.apache.kafka.common.security.scram.ScramLoginModule required {scram}",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain}",
    }  # fmt: skip


def _authorizer(superuser: KafkaLogin) -> dict[str, str]:
    return {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{superuser.username}",
        "allow.everyone.if.no.acl.found": "false",
    }


def client_properties(login: KafkaLogin) -> str:
    """A Kafka tool's ``--command-config`` for ``login``."""
    return (
        f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{login.username}" password="{login.password}";\n'
    )


def scram_credential(login: KafkaLogin) -> str:
    """The login as ``kafka-storage format --add-scram`` and ``kafka-configs`` take it."""
    return f"{MECHANISM}=[name={login.username},password={login.password}]"


LOG4J2_PROPERTIES = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by this user alone from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _quoted(argument: str) -> str:
    """One argument of a java @-file: quoted, so spaces and brackets stay in it."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_java() -> str:
    """The java binary to use: $JAVA_HOME/bin/java, then PATH; must be Java 17+."""
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).is_file():
        raise MissingToolError(NO_JAVA)
    result = subprocess.run([candidate, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise MissingToolError(f"{candidate} -version gave no version. " + NO_JAVA)
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise MissingToolError(f"{candidate} is Java {major}. " + NO_JAVA)
    return candidate


class KafkaNode:
    """One JVM. Formats its storage on first start; keeps it across restarts."""

    def __init__(
        self,
        *,
        node_id: int,
        directory: Path,
        classpath: list[Path],
        java: str,
        heap: str,
    ) -> None:
        self.node_id = node_id
        self.directory = directory
        self.log_dir = directory / "data"
        self.classpath = os.pathsep.join(str(p) for p in classpath)
        self.java = java
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def properties_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def server_log(self) -> Path:
        return self.directory / "logs" / "server.log"

    def configure(self, properties: str) -> None:
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        write_private(self.properties_file, properties)  # it may hold the login
        (self.directory / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

    def _java(self, main: str, *args: str) -> list[str]:
        return [*self._jvm(), main, *args]

    def _jvm(self) -> list[str]:
        return [
            self.java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.directory / 'logs'}",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            self.classpath,
        ]

    def is_formatted(self) -> bool:
        return (self.log_dir / "meta.properties").is_file()

    def format(self, cluster_id: str, logins: Sequence[KafkaLogin] = ()) -> None:
        """Format the storage once; the ``logins``' SCRAM credentials are in the first
        metadata (a broker that requires SCRAM has no other way to learn the first one)."""
        scram = [part for login in logins for part in ("--add-scram", scram_credential(login))]
        self.run_tool(
            "formatting Kafka storage in " + str(self.log_dir),
            "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cluster_id,
            "-c", str(self.properties_file), *scram,
        )  # fmt: skip

    def run_tool(self, what: str, main: str, *args: str) -> None:
        """Run one of Kafka's command-line tools; its arguments (perhaps a password) are read
        from an argument file only this user can read, never from the visible command line."""
        argfile = self.directory / ".tool-arguments"
        write_private(argfile, "\n".join(_quoted(a) for a in (main, *args)) + "\n")
        try:
            result = subprocess.run(
                [*self._jvm(), f"@{argfile}"],
                capture_output=True,
                text=True,
                check=False,
                start_new_session=True,  # a Ctrl-C must not leave storage half-formatted
            )
        finally:
            argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise InfrastructureError(
                f"{what} failed: " + (result.stderr or result.stdout).strip()[-2000:]
            )

    def start(self) -> None:
        if self.running():
            return
        stdout = (self.directory / "logs" / "stdout.log").open("ab")
        try:
            self.process = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties_file)),
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # The terminal's Ctrl-C goes to whoever started the broker, which stops it last;
                # if that process is killed outright, the JVM gets SIGTERM (no orphan brokers).
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        finally:
            stdout.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), then SIGKILL if the JVM does not exit in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def add_scram(self, bootstrap: str, login: KafkaLogin) -> None:
        """Give a running broker (one formatted before it required a login) the SCRAM
        credential, over its still-open listener."""
        self.run_tool(
            "adding the SCRAM login to Kafka",
            "kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap, "--alter",
            "--add-config", scram_credential(login).replace(f"name={login.username},", ""),
            "--entity-type", "users", "--entity-name", login.username,
        )  # fmt: skip

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in (self.directory / "logs" / "stdout.log", self.server_log):
            if path.is_file():
                chunks.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(chunks)
