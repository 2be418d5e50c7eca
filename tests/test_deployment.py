"""Deployment files can't run here (no Docker engine, no cluster): check what can be checked.

The Dockerfile and .dockerignore are read as text; docker-compose.yml is parsed and checked against
the project's own CLI and configuration; the Helm chart is linted and rendered by the real helm
(scripts/helm, built once from source) and the rendered manifests are checked the same way.
"""

from __future__ import annotations

import base64
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from smtp_discovery.admin.tokens import KEY_BYTES, load_key
from smtp_discovery.cli import build_parser
from smtp_discovery.platform.access import ROLES, acl_commands
from smtp_discovery.platform.config import VARIABLES, RuntimeConfig, split_host_port

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "smtp-discovery"
DATA_DIR = "/var/lib/smtp-discovery"  # DISCOVERY_DATA_DIR of the image
KNOWN = {v.env for v in VARIABLES}
SECRETS = {v.env for v in VARIABLES if v.secret} | {"KAFKA_SASL_PASSWORD"}
LONG_RUNNING = {"ingest", "worker", "sink", "admin", "jobs"}
ONE_SHOTS = {"topics", "migrate", "token"}  # token: compose's `token init-key`
# The Kafka role (platform.access.ROLES) each command runs as; the others use no Kafka.
KAFKA_ROLE = {
    "ingest": "ingest",
    "worker": "worker",
    "sink": "sink",
    "admin": "admin",
    "topics": "setup",
}
TOKEN_KEY_FILE = "DISCOVERY_ADMIN_TOKEN_KEY_FILE"


def _parse_args(args: list[str], where: str):
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: {args} is no smtp-discovery command")


# --- Dockerfile and .dockerignore -----------------------------------------------------------


def _dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) per stage; [0] is before any FROM."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = [[]]
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _packages() -> list[str]:
    """Top-level folders the wheel installs: smtp_discovery and the folders pyproject maps into it
    (smtp_discovery.schemas from schemas/, ...)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return sorted({"smtp_discovery", *setuptools["package-dir"].values()})


def test_the_wheel_lists_every_package_under_its_one_import_name() -> None:
    """pyproject lists packages by hand (the folders are mapped, so setuptools cannot find them):
    a package folder missing from the list would be missing from the installed distribution."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folder_of = {"smtp_discovery": "smtp_discovery", **setuptools["package-dir"]}
    listed = set(setuptools["packages"])
    for name, folder in folder_of.items():
        assert name.split(".")[0] == "smtp_discovery", f"{name}: one import name"
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((name, *parts)) in listed, f"pyproject does not list {init.parent}"


def test_dockerfile_is_multi_stage_non_root_without_build_tools() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 3, "a build stage and a runtime stage"
    args = dict(
        line.split(None, 1)[1].split("=", 1) for line in stages[0] if line.startswith("ARG")
    )
    final = stages[-1]
    base = final[0].split()[1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    joined = "\n".join(final)
    assert not re.search(r"apt-get install|build-essential|gcc|\bpip install\b", joined), (
        "the runtime stage installs nothing: it copies the build stage's venv"
    )
    assert re.search(r"^COPY --from=\w+ /opt/venv /opt/venv$", joined, re.M)
    (user,) = [line.split()[1] for line in final if line.startswith("USER")]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, "a numeric non-root uid"
    assert final[-2] == 'ENTRYPOINT ["smtp-discovery"]'
    # The image's own defaults are configuration the roles read, and valid.
    env = dict(re.findall(r"\b([A-Z][A-Z0-9_]+)=(\S+)", " ".join(x for x in final if "ENV" in x)))
    ours = {k: v for k, v in env.items() if k.startswith(("DISCOVERY_", "KAFKA_", "CLICKHOUSE_"))}
    assert ours.keys() <= KNOWN
    assert ours["DISCOVERY_DATA_DIR"] == DATA_DIR
    assert split_host_port(ours["DISCOVERY_OPS_LISTEN"]) == ("0.0.0.0", 9125)
    RuntimeConfig.from_env(ours)


def test_dockerfile_copies_every_package_and_installs_it_with_its_data() -> None:
    build = "\n".join(_dockerfile_stages()[1])
    copied = set(re.findall(r"^COPY (?!--from)(\S+) ", build, re.M))
    for package in _packages():
        assert package in copied, f"the image lacks the {package} package"
    assert {"pyproject.toml", "README.md"} <= {
        p for line in re.findall(r"^COPY (?!--from)(.+) \S+$", build, re.M) for p in line.split()
    }
    assert re.search(r"pip install --no-deps \.", build), "a regular (non-editable) install"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["package-data"]["smtp_discovery.admin"]:
        assert list((ROOT / "admin").glob(pattern)), f"admin package data {pattern} matches nothing"


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        rules.append((include, re.compile(regex.replace(r"\?", "[^/]"))))
    return rules


def _in_build_context(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    kept = True
    for include, pattern in _dockerignore_rules():
        if any(pattern.fullmatch(c) for c in candidates):
            kept = include
    return kept


def test_dockerignore_keeps_what_the_image_needs_and_nothing_else() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    needed = [
        f for f in files if f in ("pyproject.toml", "README.md") or f.split("/")[0] in _packages()
    ]
    assert "admin/templates/base.html" in needed and "admin/static/console.js" in needed
    for path in needed:
        assert _in_build_context(path), f".dockerignore drops {path}, which the image needs"
    for path in ("tests/conftest.py", ".venv/bin/python", ".git/HEAD", "helm/x", "bench/run"):
        assert not _in_build_context(path), f"{path} should stay out of the build context"
    assert not _in_build_context("admin/__pycache__/api.cpython-311.pyc")


# --- docker-compose.yml ---------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _substitute(value: object) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, with every optional VAR unset
    (the defaults) and every required one set to a stand-in."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        return f"<{name}>" if operator and "?" in operator else argument or ""

    text = re.sub(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", one, str(value))
    return text.replace("$$", "$")


def _required_variable(value: object) -> str | None:
    """VAR of a value that is exactly ${VAR:?error} (no default: compose refuses to start)."""
    match = re.fullmatch(r"\$\{(\w+):\?[^}]+\}", str(value))
    return match.group(1) if match else None


def _ours(compose: dict) -> dict[str, dict]:
    return {
        name: service
        for name, service in compose["services"].items()
        if "build" in service or str(service.get("image", "")).startswith("smtp-discovery:")
    }


def _compose_env(service: dict) -> dict[str, str]:
    return {k: _substitute(v) for k, v in service.get("environment", {}).items()}


def test_compose_services_run_real_cli_commands() -> None:
    ours = _ours(_compose())
    commands = {}
    for name, service in ours.items():
        assert service.get("build") == ".", f"{name} must build the project's image"
        assert "entrypoint" not in service, f"{name} must keep the smtp-discovery entrypoint"
        args = _parse_args(service["command"], name)
        commands[name] = args.command
    assert set(commands.values()) == LONG_RUNNING | ONE_SHOTS
    roles = sorted(commands.values())
    assert roles.count("ingest") == 2 and roles.count("worker") == 2


def test_compose_sets_only_variables_the_configuration_reads_and_accepts() -> None:
    for name, service in _ours(_compose()).items():
        env = _compose_env(service)
        unknown = set(env) - KNOWN
        assert not unknown, f"{name} sets variables nothing reads: {unknown}"
        for key, value in service.get("environment", {}).items():
            assert isinstance(value, str), f"{name}: {key} should be a string"
        RuntimeConfig.from_env(env)  # raises ConfigError on a value it would refuse


def test_compose_long_running_roles_serve_ops_and_are_health_checked() -> None:
    compose = _compose()
    for name, service in _ours(compose).items():
        command = service["command"][0]
        healthcheck = service.get("healthcheck", {})
        if command in ONE_SHOTS:
            assert healthcheck.get("disable") is True, f"{name} is a one-shot"
            assert service.get("restart") == "no", f"{name} is a one-shot"
            continue
        env = _compose_env(service)
        host, port = split_host_port(env["DISCOVERY_OPS_LISTEN"])
        assert host == "0.0.0.0"
        test = " ".join(healthcheck["test"])
        assert f"http://127.0.0.1:{port}/readyz" in test
        assert service.get("restart") == "unless-stopped"
    for name in ("clickhouse", "kafka-1", "kafka-2", "kafka-3"):
        assert "test" in compose["services"][name]["healthcheck"]


def test_compose_host_ports_do_not_clash() -> None:
    seen: dict[tuple[int, str], str] = {}
    for name, service in _compose()["services"].items():
        for entry in service.get("ports", []):
            parts = _substitute(entry).split(":")
            assert len(parts) in (2, 3), f"{name}: publish {entry} with an explicit host port"
            port, protocol = parts[-2], "udp" if parts[-1].endswith("/udp") else "tcp"
            key = (int(port), protocol)
            assert key not in seen, f"{name} and {seen[key]} both publish host port {port}"
            seen[key] = name
    assert (25, "tcp") in seen, "one ingest node receives mail on port 25"


def test_compose_named_volumes_are_declared_and_state_is_not_shared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes", {}))
    used: dict[str, list[str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, _target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                continue
            assert source in declared, f"{name} mounts undeclared volume {source}"
            used.setdefault(source, []).append(name)
    assert declared == set(used), f"declared but unused: {declared - set(used)}"
    # Shared only with one-shots that prepare a volume before its one service starts.
    services = compose["services"]
    for source, names in used.items():
        owners = [n for n in names if services[n].get("restart") != "no"]
        assert len(owners) <= 1, f"{owners} share the volume {source}"
        for name in set(names) - set(owners):
            assert owners, f"only one-shots mount {source}"
            how = services[owners[0]].get("depends_on", {}).get(name, {})
            assert how.get("condition") == "service_completed_successfully", (
                f"{owners[0]} may start before {name} has prepared {source}"
            )
    for name, service in _ours(compose).items():
        if service["command"][0] in ("worker", "ingest"):
            targets = [v.split(":")[1] for v in service.get("volumes", [])]
            assert DATA_DIR in targets, f"{name} keeps its state (RocksDB, spool) on a volume"


def test_compose_dependencies_exist_and_order_the_start() -> None:
    compose = _compose()
    services = compose["services"]
    for name, service in services.items():
        for target, how in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if how["condition"] == "service_healthy":
                assert "test" in services[target].get("healthcheck", {}), target
            if how["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is no one-shot"
                if target in _ours(compose):
                    assert services[target]["command"][0] in ONE_SHOTS, target
            # A profiled service may only depend on ones that run at least as often.
            assert not services[target].get("profiles") or service.get("profiles"), name
    by_command: dict[str, list[str]] = {}
    for name, service in _ours(compose).items():
        by_command.setdefault(service["command"][0], []).append(name)
    (topics,) = by_command["topics"]
    (migrate,) = by_command["migrate"]
    assert {f"kafka-{i}" for i in (1, 2, 3)} <= _after(services, topics)
    # The topics are made by the setup principal: after its login and ACLs exist.
    assert services[topics]["depends_on"]["kafka-users"] == {
        "condition": "service_completed_successfully"
    }
    assert "clickhouse" in services[migrate]["depends_on"]
    for role in ("ingest", "worker", "sink", "admin"):
        for name in by_command[role]:
            assert topics in services[name]["depends_on"], f"{name} starts before the topics"
    for role in ("sink", "admin", "jobs"):
        for name in by_command[role]:
            assert migrate in services[name]["depends_on"], f"{name} starts before the schema"
    (jobs,) = by_command["jobs"]
    assert services[jobs].get("profiles"), "the reports need a smarthost: keep them optional"


def _after(services: dict, name: str) -> set[str]:
    """Every service ``name`` waits for, directly or through others."""
    seen: set[str] = set()
    todo = list(services[name].get("depends_on", {}))
    while todo:
        target = todo.pop()
        if target not in seen:
            seen.add(target)
            todo.extend(services[target].get("depends_on", {}))
    return seen


def _kafka_nodes(compose: dict) -> dict[str, dict[str, str]]:
    return {
        name: {k: _substitute(v) for k, v in service["environment"].items()}
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("apache/kafka:")
        and "KAFKA_NODE_ID" in service["environment"]
    }


def test_compose_kafka_is_a_three_voter_kraft_cluster() -> None:
    compose = _compose()
    nodes = _kafka_nodes(compose)
    assert len(nodes) == 3
    images = {compose["services"][n]["image"] for n in nodes}
    assert images == {"apache/kafka:4.1.1"}
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in nodes.values()}
    assert len(voters) == 1, f"the nodes disagree on the quorum: {voters}"
    parsed = {}
    for voter in voters.pop().split(","):
        node_id, _, address = voter.partition("@")
        host, port = split_host_port(address)
        parsed[host] = (node_id, port)
    assert set(parsed) == set(nodes), "the voters are exactly the three nodes"
    assert len({node_id for node_id, _ in parsed.values()}) == 3
    cluster_ids = {env["CLUSTER_ID"] for env in nodes.values()}
    assert len(cluster_ids) == 1
    assert len(base64.urlsafe_b64decode(cluster_ids.pop() + "==")) == 16, "a base64 UUID"
    for name, env in nodes.items():
        node_id, port = parsed[name]
        assert env["KAFKA_NODE_ID"] == node_id
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
        controller = listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]
        assert int(controller.rpartition(":")[2]) == port, f"{name} listens elsewhere"
        advertised = dict(
            item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        )
        assert advertised == {env["KAFKA_INTER_BROKER_LISTENER_NAME"]: f"{name}:9092"}
        assert listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == ":9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_LOG_DIRS"] in [
            v.split(":")[1] for v in compose["services"][name]["volumes"]
        ]
    # Our roles reach every node, and create topics with replication 3.
    for name, service in _ours(compose).items():
        env = _compose_env(service)
        if "KAFKA_BOOTSTRAP" in env:
            hosts = {split_host_port(h)[0] for h in env["KAFKA_BOOTSTRAP"].split(",")}
            assert hosts == set(nodes), name
            assert RuntimeConfig.from_env(env).topic_replication == 3, name


# The apache/kafka image's start script makes server.properties of its KAFKA_* variables
# (docker/resources/utility in apache/kafka): it drops any variable whose value holds a "=", and
# these are not properties.
IMAGE_NOT_PROPERTIES = {
    "KAFKA_VERSION", "KAFKA_HEAP_OPT", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS",
    "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_LOG4J_ROOT_LOGLEVEL",
    "KAFKA_LOG4J_LOGGERS", "KAFKA_TOOLS_LOG4J_LOGLEVEL",
}  # fmt: skip
KAFKA_NODE_SCRIPT = ROOT / "compose" / "kafka-node.sh"
KAFKA_USERS_SCRIPT = ROOT / "compose" / "kafka-users.sh"
ACL_FILE = ROOT / "compose" / "kafka-acls.sh"
REGENERATE_ACLS = (
    "env -i .venv/bin/python -m smtp_discovery.cli topics acls > compose/kafka-acls.sh"
)


def _image_property(variable: str) -> str:
    """The property the image makes of KAFKA_<NAME>: "_" is ".", "__" is "_", "___" is "-"."""
    key = variable.removeprefix("KAFKA_")
    key = re.sub(r"[^_]_[^_]", lambda m: m.group(0).replace("_", "."), key)
    return key.replace("___", "-").replace("__", "_").lower()


def _node_properties(env: dict[str, str]) -> dict[str, str]:
    """A node's server.properties: the JAAS lines kafka-node.sh writes, then its environment's."""
    script = KAFKA_NODE_SCRIPT.read_text()
    properties = dict(
        re.findall(r"^(listener\.name\.[\w.-]+\.sasl\.jaas\.config)=(.*)$", script, re.M)
    )
    for name, value in env.items():
        if name.startswith("KAFKA") and name not in IMAGE_NOT_PROPERTIES:
            assert "=" not in value, f"the image would drop {name}: its value holds a '='"
            properties[_image_property(name)] = value
    return properties


def _mounted(service: dict, path: Path) -> str:
    """Where a service mounts a file of this checkout (read-only), or a test failure."""
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        if source.startswith(".") and (ROOT / source).resolve() == path:
            assert options == ["ro"], f"{volume} should be read-only"
            return target
    pytest.fail(f"{path.relative_to(ROOT)} is not mounted")


def test_compose_kafka_authenticates_every_listener_and_authorizes_every_request() -> None:
    compose = _compose()
    nodes = _kafka_nodes(compose)
    for name, env in nodes.items():
        service = compose["services"][name]
        assert service["command"] == ["bash", _mounted(service, KAFKA_NODE_SCRIPT)], name
        props = _node_properties(env)
        protocols = dict(
            item.split(":") for item in props["listener.security.protocol.map"].split(",")
        )
        listeners = [item.split("://")[0] for item in props["listeners"].split(",")]
        listeners += [item.split("://")[0] for item in props["advertised.listeners"].split(",")]
        for listener in listeners:
            assert protocols[listener] in ("SASL_PLAINTEXT", "SASL_SSL"), f"{name}: {listener}"
            mechanisms = props.get(
                f"listener.name.{listener.lower()}.sasl.enabled.mechanisms",
                props.get("sasl.enabled.mechanisms", "GSSAPI"),
            ).split(",")
            for mechanism in mechanisms:
                jaas = props.get(
                    f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
                )
                assert jaas, f"{name}: {listener} offers {mechanism} without a JAAS configuration"
                if mechanism == "PLAIN":  # static: the super user only, the password from env
                    assert re.findall(r"user_([\w-]+)=", jaas) == ["kafka-admin"], jaas
                    assert 'username="kafka-admin"' in jaas and '"$password"' in jaas, jaas
            if listener == props["controller.listener.names"]:
                assert mechanisms == ["PLAIN"], "KRaft controllers cannot use SCRAM"
                assert props["sasl.mechanism.controller.protocol"] in mechanisms
            if listener == props["inter.broker.listener.name"]:
                assert props["sasl.mechanism.inter.broker.protocol"] in mechanisms
                assert "SCRAM-SHA-512" in mechanisms, "the roles log in with SCRAM"
        assert props["authorizer.class.name"] == (
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        )
        assert props["super.users"] == "User:kafka-admin"
        assert props["allow.everyone.if.no.acl.found"] == "false"
        # The super user's password: only from the environment, never a property of its own.
        raw = service["environment"]
        assert _required_variable(raw["SUPER_USER_PASSWORD"]) == "KAFKA_ADMIN_PASSWORD"
        assert not any("PASSWORD" in key.upper() for key in props), "a password as a property"
        # The healthcheck logs in as kafka-admin, with the properties kafka-node.sh writes.
        test = " ".join(service["healthcheck"]["test"])
        config = re.search(r"--command-config (\S+)", test)
        assert config and f"cat > {config.group(1)} <<EOF" in KAFKA_NODE_SCRIPT.read_text(), test


def test_compose_roles_log_in_as_their_own_kafka_principal() -> None:
    compose = _compose()
    services = compose["services"]
    node = next(iter(_kafka_nodes(compose).values()))
    client_mechanisms = _node_properties(node)["listener.name.client.sasl.enabled.mechanisms"]
    logins: dict[str, set[tuple[str, str | None]]] = {}
    for name, service in _ours(compose).items():
        env = service.get("environment", {})
        role = KAFKA_ROLE.get(service["command"][0])
        if role is None:
            assert not any(k.startswith("KAFKA_") for k in env), f"{name} uses no Kafka"
            continue
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert env["KAFKA_SASL_MECHANISM"] in client_mechanisms.split(","), name
        assert env["KAFKA_SASL_MECHANISM"].startswith("SCRAM-"), name
        password = _required_variable(env["KAFKA_SASL_PASSWORD"])
        assert password, f"{name}: KAFKA_SASL_PASSWORD must be ${{VAR:?...}}, with no default"
        logins.setdefault(role, set()).add((env["KAFKA_SASL_USERNAME"], password))
    assert set(logins) == set(ROLES)
    for role, found in logins.items():
        assert found == {(f"smtp-discovery-{role}", f"SMTP_DISCOVERY_{role.upper()}_PASSWORD")}
    # kafka-users makes exactly these logins, as the super user of the nodes.
    users = services["kafka-users"]
    env = users["environment"]
    assert _required_variable(env["SUPER_USER_PASSWORD"]) == "KAFKA_ADMIN_PASSWORD"
    made = {k: _required_variable(v) for k, v in env.items() if k.startswith("SMTP_DISCOVERY_")}
    assert made == {
        f"SMTP_DISCOVERY_{r.upper()}_PASSWORD": f"SMTP_DISCOVERY_{r.upper()}_PASSWORD"
        for r in ROLES
    }
    script = KAFKA_USERS_SCRIPT.read_text()
    assert users["command"] == ["bash", _mounted(users, KAFKA_USERS_SCRIPT)]
    assert re.search(r"^for role in (.*); do$", script, re.M).group(1).split() == list(ROLES)
    assert 'variable="SMTP_DISCOVERY_${role^^}_PASSWORD"' in script
    assert '--entity-name "smtp-discovery-$role"' in script
    for i in (1, 2, 3):
        assert users["depends_on"][f"kafka-{i}"] == {"condition": "service_healthy"}
    # Only the nodes and kafka-users know the super user's password.
    for name, service in services.items():
        if "KAFKA_ADMIN_PASSWORD" in str(service.get("environment", {})):
            assert name == "kafka-users" or name in _kafka_nodes(compose), name


def test_compose_acl_file_is_what_the_project_renders_now() -> None:
    compose = _compose()
    services = compose["services"]
    principals, configs = {}, set()
    for service in _ours(compose).values():
        role = KAFKA_ROLE.get(service["command"][0])
        if role:
            env = _compose_env(service)
            principals[role] = f"User:{env['KAFKA_SASL_USERNAME']}"
            c = RuntimeConfig.from_env(env)
            configs.add((c.topic_prefix, c.streams_app_id, c.sink_group))
    assert len(configs) == 1, f"the roles disagree on topic names or groups: {configs}"
    (topics,) = [s for s in _ours(compose).values() if s["command"][0] == "topics"]
    expected = acl_commands(RuntimeConfig.from_env(_compose_env(topics)), principals)
    lines = ACL_FILE.read_text().splitlines()
    actual = [line for line in lines if line.strip() and not line.startswith("#")]
    assert actual == expected, f"compose/kafka-acls.sh is stale; regenerate it: {REGENERATE_ACLS}"
    users = services["kafka-users"]
    assert f". {_mounted(users, ACL_FILE)}" in KAFKA_USERS_SCRIPT.read_text().splitlines()


def test_compose_token_key_only_in_the_admin_service() -> None:
    compose = _compose()
    services = compose["services"]
    holders = {}
    for name, service in _ours(compose).items():
        env = service.get("environment", {})
        if TOKEN_KEY_FILE in env:
            holders[service["command"][0]] = (name, env[TOKEN_KEY_FILE])
    assert set(holders) == {"admin", "token"}, holders
    (admin, key_file), (maker, made_file) = holders["admin"], holders["token"]
    assert services[maker]["command"] == ["token", "init-key"]
    assert key_file == made_file
    assert services[admin]["depends_on"][maker] == {"condition": "service_completed_successfully"}
    mounts = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target, *options = volume.split(":")
            if source == "admin-key":
                mounts[name] = (target, options)
    assert mounts == {admin: (DATA_DIR, ["ro"]), maker: (DATA_DIR, [])}
    assert Path(key_file).parent == Path(DATA_DIR)


# --- The Helm chart, through the real helm --------------------------------------------------

# Values that take every optional branch of the templates.
ALL_OPTIONS = {
    "image": {"tag": "1.2.3"},
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"mail": "true"},
    "tolerations": [{"key": "mail", "operator": "Exists", "effect": "NoSchedule"}],
    "podAnnotations": {"team": "mail"},
    "kafka": {
        "bootstrap": "k1.example:9094,k2.example:9094,k3.example:9094",
        "securityProtocol": "SASL_SSL",
        "sasl": {
            "mechanism": "SCRAM-SHA-512",
            # One Secret for all the passwords, a key per role.
            "users": {
                role: {
                    "username": f"gw-{role}",
                    "passwordSecret": {"name": "kafka-credentials", "key": f"{role}-password"},
                }
                for role in ROLES
            },
        },
        "caSecret": {"name": "kafka-ca", "key": "bundle.pem"},
    },
    "topics": {"prefix": "staging.", "partitions": 24},
    "log": {"level": "DEBUG"},
    "ingest": {
        "tls": {"secretName": "mx-tls", "require": True},
        "smarthost": "relay.example:25",
        "proxyProtocol": True,
        "service": {
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*"},
            "loadBalancerSourceRanges": ["192.0.2.0/24"],
        },
        "autoscaling": {"targetMemoryUtilizationPercentage": 80, "maxReplicas": 20},
    },
    "worker": {"replicas": 24, "storage": {"storageClassName": "fast"}},
    "admin": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "tlsSecretName": "discovery-tls",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "10m"},
        },
        "tokenKey": {"existingSecret": {"name": "discovery-token-key", "key": "hex"}},
    },
    "reports": {"smarthost": "relay.example:25", "timezone": "Europe/Berlin"},
    "clickhouse": {"cluster": "gw", "urlSecret": {"name": "ch", "key": "dsn"}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
}
# ...and every optional object switched off.
MINIMAL = {
    "ingest": {
        "service": {"type": "ClusterIP"},
        "autoscaling": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "replicas": 3,
    },
    "worker": {"replicas": 1, "podDisruptionBudget": {"enabled": False}},
}
VARIANTS = {"defaults": {}, "all-options": ALL_OPTIONS, "minimal": MINIMAL}
HELM_NO_GO = 3  # scripts/helm's exit status when no Go can build helm
HELM_BUILD_S = 1200  # the first build, from the Go module proxy: about 3-6 minutes on 2 cores

# The first test to need helm may build it (once, into the cache).
pytestmark = pytest.mark.timeout(HELM_BUILD_S + 120)


@pytest.fixture(scope="module")
def helm() -> str:
    """Path of the pinned helm; building it (once, into the cache) may take minutes."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "helm")], capture_output=True, text=True, timeout=HELM_BUILD_S
    )
    if result.returncode == HELM_NO_GO:
        pytest.skip(f"no helm: {result.stderr.strip()}")
    assert result.returncode == 0, f"scripts/helm failed:\n{result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module", params=list(VARIANTS))
def values_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("values") / f"{request.param}.yaml"
    path.write_text(yaml.safe_dump(VARIANTS[request.param]))
    return path


def _helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, (
            f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def rendered(helm: str, values_file: Path) -> list[dict]:
    out = _helm(helm, "template", "mx", str(CHART), "--namespace", "mail", "-f", str(values_file))
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _variant(values_file: Path) -> str:
    return values_file.stem


def _component(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def _all(docs: list[dict], kind: str, component: str | None = None) -> list[dict]:
    return [
        d for d in docs if d["kind"] == kind and (component is None or _component(d) == component)
    ]


def _one(docs: list[dict], kind: str, component: str, name: str | None = None) -> dict:
    found = [
        d
        for d in _all(docs, kind, component)
        if name is None or d["metadata"]["name"] == f"mx-{name}"
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects for {component}"
    return found[0]


def _workloads(docs: list[dict]) -> Iterator[dict]:
    yield from (d for d in docs if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "Job"))


def _pod_templates(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    for doc in _workloads(docs):
        yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]


def _containers(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    for where, template in _pod_templates(docs):
        spec = template["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{container['name']}", container


def _long_running(docs: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    """(where, pod template, its one container) of every Deployment and StatefulSet."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            template = doc["spec"]["template"]
            (container,) = template["spec"]["containers"]
            yield f"{doc['kind']}/{doc['metadata']['name']}", template, container


def _env(container: dict) -> dict[str, str]:
    """A container's environment as the process sees it (valueFrom: a stand-in value)."""
    stand_in = {
        "CLICKHOUSE_URL": "http://discovery:secret@clickhouse:8123/discovery",
        "KAFKA_SASL_PASSWORD": "secret",
    }
    return {
        e["name"]: e.get("value", stand_in.get(e["name"], "mx-ingest-0")) for e in container["env"]
    }


def _selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def test_helm_lint_strict(helm: str, values_file: Path) -> None:
    out = _helm(helm, "lint", "--strict", str(CHART), "-f", str(values_file)).stdout
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


def test_helm_renders_the_roles(rendered: list[dict], values_file: Path) -> None:
    variant = _variant(values_file)
    kinds = sorted((d["kind"], _component(d), d["metadata"]["name"]) for d in rendered)
    roles = ["admin", "ingest", "sink", "worker"] + (["jobs"] if variant == "all-options" else [])
    expected = [
        ("Deployment", "admin", "mx-admin"),
        ("Deployment", "ingest", "mx-ingest"),
        ("Deployment", "sink", "mx-sink"),
        ("Job", "migrate", "mx-migrate"),
        ("Job", "topics", "mx-topics"),
        ("Service", "admin", "mx-admin"),
        ("Service", "ingest", "mx-ingest"),
        ("StatefulSet", "worker", "mx-worker"),
        *(("Service", role, f"mx-{role}-ops") for role in roles),
    ]
    if variant != "minimal":
        expected += [
            ("HorizontalPodAutoscaler", "ingest", "mx-ingest"),
            ("PodDisruptionBudget", "ingest", "mx-ingest"),
            ("PodDisruptionBudget", "worker", "mx-worker"),
        ]
    if variant != "all-options":  # all-options names a Secret of its own
        expected += [("Secret", "admin", "mx-admin-token-key")]
    if variant == "all-options":
        expected += [
            ("Deployment", "jobs", "mx-jobs"),
            ("Ingress", "admin", "mx-admin"),
            ("ServiceMonitor", "monitoring", "mx"),
        ]
    assert kinds == sorted(expected)
    for doc in rendered:
        assert doc["metadata"]["name"].startswith("mx"), "names must carry the release name"
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "mx"


def test_helm_container_args_are_real_cli_commands(rendered: list[dict], values_file: Path) -> None:
    commands = set()
    for where, container in _containers(rendered):
        assert "command" not in container, (
            f"{where} must keep the image's smtp-discovery entrypoint"
        )
        commands.add(_parse_args(container["args"], where).command)
        assert container["image"] == (
            "smtp-discovery:1.2.3"
            if _variant(values_file) == "all-options"
            else "smtp-discovery:0.1.0"
        )
    jobs = {"jobs"} if _variant(values_file) == "all-options" else set()
    assert commands == {"topics", "migrate", "ingest", "worker", "sink", "admin", *jobs}


def test_helm_env_is_known_to_and_valid_for_the_configuration(rendered: list[dict]) -> None:
    for where, container in _containers(rendered):
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), f"{where} sets a variable twice: {names}"
        unknown = set(names) - KNOWN
        assert not unknown, f"{where} sets variables nothing reads: {unknown}"
        for entry in container["env"]:
            # Kubernetes takes only strings; an unquoted number or boolean fails at apply time.
            assert isinstance(entry.get("value", ""), str), f"{where}: {entry} is not a string"
        RuntimeConfig.from_env(_env(container))  # raises ConfigError on a value it would refuse


def test_helm_secrets_come_only_from_secret_key_refs(rendered: list[dict]) -> None:
    # The chart references Secrets; the one it holds is the token key it makes itself.
    assert {d["metadata"]["name"] for d in _all(rendered, "Secret")} <= {"mx-admin-token-key"}
    assert not _all(rendered, "ConfigMap")
    for where, container in _containers(rendered):
        for entry in container["env"]:
            if entry["name"] in SECRETS:
                assert "value" not in entry, f"{where}: {entry['name']} as plain text"
                assert set(entry["valueFrom"]) == {"secretKeyRef"}, where


def test_helm_kafka_security_settings(rendered: list[dict], values_file: Path) -> None:
    on = _variant(values_file) == "all-options"
    for doc in _workloads(rendered):
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        role = KAFKA_ROLE.get(container["args"][0])
        if role is None:
            assert not any(e["name"].startswith("KAFKA_") for e in container["env"])
            continue
        env = {e["name"]: e for e in container["env"]}
        config = RuntimeConfig.from_env(_env(container))
        if not on:
            assert config.kafka_security_protocol == "PLAINTEXT"
            assert not {"KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"} & env.keys()
            continue
        assert config.kafka_security_protocol == "SASL_SSL"
        assert config.kafka_sasl_mechanism == "SCRAM-SHA-512"
        # Its own role's principal and password.
        user = ALL_OPTIONS["kafka"]["sasl"]["users"][role]
        assert config.kafka_sasl_username == user["username"]
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == user["passwordSecret"]
        # The CA: a Secret's key mounted as the file KAFKA_SSL_CAFILE names.
        cafile = Path(env["KAFKA_SSL_CAFILE"]["value"])
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "kafka-ca"]
        assert mount["readOnly"] is True and Path(mount["mountPath"]) == cafile.parent
        (volume,) = [v for v in pod["volumes"] if v["name"] == "kafka-ca"]
        assert volume["secret"]["secretName"] == "kafka-ca"
        assert volume["secret"]["items"] == [{"key": "bundle.pem", "path": cafile.name}]


SASL = [
    "--set",
    "kafka.securityProtocol=SASL_PLAINTEXT",
    "--set",
    "kafka.sasl.mechanism=SCRAM-SHA-512",
]


def _secret_refs(pod: dict, container: dict) -> set[tuple[str, str | None]]:
    """Every Secret (name, key) a container can read: env, envFrom, and its pod's volumes."""
    refs: set[tuple[str, str | None]] = set()
    for entry in container.get("env", []):
        if ref := entry.get("valueFrom", {}).get("secretKeyRef"):
            refs.add((ref["name"], ref["key"]))
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            refs.add((source["secretRef"]["name"], None))
    for volume in pod.get("volumes", []):
        if secret := volume.get("secret"):
            for item in secret.get("items") or [{"key": None}]:
                refs.add((secret["secretName"], item["key"]))
    return refs


@pytest.mark.parametrize("source", ["chart defaults", "all-options"])
def test_helm_each_role_holds_only_its_own_kafka_login(
    helm: str, source: str, tmp_path: Path
) -> None:
    if source == "all-options":
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump(ALL_OPTIONS))
        args = ["-f", str(values)]
        users = ALL_OPTIONS["kafka"]["sasl"]["users"]
    else:
        args = SASL
        users = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]["sasl"]["users"]
    assert set(users) == set(ROLES), "a login for each role of platform.access"
    out = _helm(helm, "template", "mx", str(CHART), *args).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    logins = {}
    for role, user in users.items():
        secret = user["passwordSecret"]
        logins[role] = (user["username"], (secret["name"], secret["key"]))
    assert (
        len({u for u, _ in logins.values()}) == len({p for _, p in logins.values()}) == len(ROLES)
    )
    seen = set()
    for doc in _workloads(docs):
        pod = doc["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{doc['metadata']['name']}/{container['name']}"
            role = KAFKA_ROLE.get(container["args"][0])
            refs = _secret_refs(pod, container)
            values = {e.get("value") for e in container["env"]}
            for other, (username, password) in logins.items():
                if other != role:
                    assert username not in values, f"{where} has the {other} role's username"
                    whole = (password[0], None)  # the whole Secret, every key of it
                    assert not {password, whole} & refs, f"{where} can read {other}'s password"
            if role is None:
                continue
            seen.add(role)
            username, password = logins[role]
            config = RuntimeConfig.from_env(_env(container))
            assert config.kafka_sasl_username == username, where
            assert password in refs, where
    assert seen == set(ROLES)


def test_helm_token_key_only_in_the_admin_pods(
    rendered: list[dict], values_file: Path, tmp_path: Path
) -> None:
    own = _variant(values_file) == "all-options"
    secret, key = ("discovery-token-key", "hex") if own else ("mx-admin-token-key", "key")
    for doc in _workloads(rendered):
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = _env(container)
        names = {name for name, _ in _secret_refs(pod, container)}
        if _component(doc) != "admin":
            assert TOKEN_KEY_FILE not in env, f"{doc['metadata']['name']} has the token key"
            assert secret not in names, f"{doc['metadata']['name']} mounts the token key"
            continue
        key_file = Path(env[TOKEN_KEY_FILE])
        assert RuntimeConfig.from_env(env).token_key_path == key_file
        (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret]
        assert volume["secret"]["items"] == [{"key": key, "path": key_file.name}]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True and Path(mount["mountPath"]) == key_file.parent
        # Readable by the pod's user (group: fsGroup), by nobody else.
        assert volume["secret"]["defaultMode"] & 0o007 == 0
    made = _all(rendered, "Secret")
    if own:
        assert not made, "with admin.tokenKey.existingSecret the chart makes no key"
        return
    (made,) = made
    assert made["metadata"]["name"] == secret
    assert made["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    value = base64.b64decode(made["data"][key]).decode()
    assert re.fullmatch(r"[0-9a-f]{64}", value), "what `token init-key` writes: 32 bytes as hex"
    (tmp_path / "key").write_text(value)
    assert len(load_key(tmp_path / "key")) == KEY_BYTES


def test_helm_token_key_is_random_per_install_and_read_back_on_upgrade(helm: str) -> None:
    """Without a cluster `lookup` finds nothing, so every render here makes a new key; on an
    upgrade it finds the kept Secret, whose key the template must read back, not replace (that
    branch needs a cluster: checked in the template's text only)."""
    template = (CHART / "templates" / "admin-token-key.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    renders = [
        _helm(helm, "template", "mx", str(CHART), "--show-only", "templates/admin-token-key.yaml")
        for _ in range(2)
    ]
    keys = {yaml.safe_load(r.stdout)["data"]["key"] for r in renders}
    assert len(keys) == 2, "a random key per new install"


def test_helm_clickhouse_settings(rendered: list[dict], values_file: Path) -> None:
    on = _variant(values_file) == "all-options"
    clickhouse_roles = {"migrate", "sink", "admin", "jobs"}
    seen = set()
    for where, container in _containers(rendered):
        env = {e["name"]: e for e in container["env"]}
        role = container["args"][0]
        if role not in clickhouse_roles:
            assert "CLICKHOUSE_URL" not in env, where
            continue
        seen.add(role)
        ref = env["CLICKHOUSE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == ({"name": "ch", "key": "dsn"} if on else {"name": "clickhouse", "key": "url"})
        assert RuntimeConfig.from_env(_env(container)).clickhouse_cluster == ("gw" if on else None)
    assert seen == clickhouse_roles - (set() if on else {"jobs"})


def test_helm_pods_are_locked_down(rendered: list[dict]) -> None:
    for where, template in _pod_templates(rendered):
        pod_spec = template["spec"]
        pod = pod_spec.get("securityContext", {})
        assert pod_spec.get("automountServiceAccountToken") is False, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for container in pod_spec["containers"]:
            name = f"{where}/{container['name']}"
            merged = {**pod, **container.get("securityContext", {})}
            assert merged.get("runAsNonRoot") is True, f"{name} may run as root"
            assert merged.get("runAsUser", 1) != 0, f"{name} runs as uid 0"
            assert merged.get("allowPrivilegeEscalation") is False, name
            assert merged.get("readOnlyRootFilesystem") is True, name
            assert merged.get("capabilities", {}).get("drop") == ["ALL"], name
            assert "add" not in merged.get("capabilities", {}), name
            assert container["resources"].get("requests"), f"{name} has no resource requests"
            assert container["resources"].get("limits", {}).get("memory"), f"{name}: no limit"


def test_helm_volumes_are_declared_and_writable_places_exist(rendered: list[dict]) -> None:
    for doc in _workloads(rendered):
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            for mount in mounts.values():
                assert mount["name"] in volumes, f"{doc['metadata']['name']}: {mount}"
            # A read-only root file system: the data directory and /tmp must be volumes.
            for path in (DATA_DIR, "/tmp"):
                assert path in mounts and not mounts[path].get("readOnly"), (
                    f"{doc['metadata']['name']} cannot write {path}"
                )
        for volume in pod.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{volume['name']} is unbounded"


def test_helm_every_role_is_probed_on_its_ops_port(rendered: list[dict]) -> None:
    roles = set()
    for where, template, container in _long_running(rendered):
        roles.add(container["args"][0])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = _env(container)
        host, ops = split_host_port(env["DISCOVERY_OPS_LISTEN"])
        assert host == "0.0.0.0" and ports["ops"] == ops, where

        def probe_port(probe: dict, _ports: dict = ports) -> int:
            port = probe["httpGet"]["port"]
            return port if isinstance(port, int) else _ports[port]

        for kind, path in (
            ("livenessProbe", "/healthz"),
            ("startupProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            probe = container[kind]
            assert probe["httpGet"]["path"] == path, f"{where} {kind}"
            assert probe_port(probe) == ops, f"{where} {kind} is not on the ops port"
        annotations = template["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == ops
        assert annotations["prometheus.io/path"] == "/metrics"
    assert roles >= {"ingest", "worker", "sink", "admin"}


def test_helm_services_select_one_role_and_existing_ports(rendered: list[dict]) -> None:
    pods = [(_component(d), t, c) for d in rendered for _, t, c in _long_running([d])]
    for service in _all(rendered, "Service"):
        selected = [
            (role, c)
            for role, t, c in pods
            if _selects(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert {role for role, _ in selected} == {_component(service)}, service["metadata"]["name"]
        for role, container in selected:
            names = {p["name"] for p in container["ports"]}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, f"{service['metadata']['name']} -> {role}"


def test_helm_ingest_deployment_service_hpa_and_pdb(
    rendered: list[dict], values_file: Path
) -> None:
    variant = _variant(values_file)
    ingest = _one(rendered, "Deployment", "ingest")
    pod = ingest["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = _env(container)
    assert split_host_port(env["DISCOVERY_INGEST_LISTEN"])[1] == ports["smtp"]
    assert ingest["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    service = _one(rendered, "Service", "ingest", "ingest")
    assert _selects(service["spec"]["selector"], pod["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["port"] == 25 and port["targetPort"] == "smtp"
    expected_type = "ClusterIP" if variant == "minimal" else "LoadBalancer"
    assert service["spec"]["type"] == expected_type
    # externalTrafficPolicy is valid only for LoadBalancer and NodePort Services.
    assert ("externalTrafficPolicy" in service["spec"]) == (expected_type == "LoadBalancer")

    hpas = _all(rendered, "HorizontalPodAutoscaler")
    pdbs = _all(rendered, "PodDisruptionBudget", "ingest")
    if variant == "minimal":
        assert not hpas and not pdbs
        assert ingest["spec"]["replicas"] == 3
        return
    (hpa,) = hpas
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": ingest["metadata"]["name"],
    }
    assert "replicas" not in ingest["spec"], "with an HPA, the HPA owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    metrics = {m["resource"]["name"] for m in hpa["spec"]["metrics"]}
    assert metrics == ({"cpu", "memory"} if variant == "all-options" else {"cpu"})
    (pdb,) = pdbs
    assert pdb["apiVersion"] == "policy/v1"
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert _selects(selector, pod["metadata"]["labels"])
    for _, template, _container in _long_running(rendered):
        if template is not pod:
            assert not _selects(selector, template["metadata"]["labels"]), "selects other pods"
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", quantity).groups()
    return int(number) * 1024 ** ("KMGT".index(unit[0]) + 1 if unit else 0)


def test_helm_ingest_spool_fits_its_volume(rendered: list[dict]) -> None:
    pod = _one(rendered, "Deployment", "ingest")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = RuntimeConfig.from_env(_env(container))
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "data"]
    assert config.effective_spool_dir.is_relative_to(mounts["data"])
    assert config.ingest_spool_max_bytes < _bytes(volume["emptyDir"]["sizeLimit"])
    assert pod["terminationGracePeriodSeconds"] >= 60, "time to flush the spool"


def test_helm_tls_only_with_its_secret(rendered: list[dict], values_file: Path) -> None:
    pod = _one(rendered, "Deployment", "ingest")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    tls_env = {k for k in env if k.startswith("DISCOVERY_INGEST_TLS_")}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if _variant(values_file) != "all-options":
        assert not tls_env
        assert "tls" not in mounts and "tls" not in volumes
        return
    assert tls_env == {"DISCOVERY_INGEST_TLS_CERT", "DISCOVERY_INGEST_TLS_KEY"}
    assert volumes["tls"]["secret"]["secretName"] == "mx-tls"
    assert mounts["tls"]["readOnly"] is True
    # A kubernetes.io/tls Secret holds tls.crt and tls.key; the variables name those files.
    directory = Path(mounts["tls"]["mountPath"])
    assert Path(env["DISCOVERY_INGEST_TLS_CERT"]) == directory / "tls.crt"
    assert Path(env["DISCOVERY_INGEST_TLS_KEY"]) == directory / "tls.key"
    assert RuntimeConfig.from_env(env).ingest_require_tls is True


def test_helm_optional_ingest_settings_reach_the_configuration(
    rendered: list[dict], values_file: Path
) -> None:
    ingest = _one(rendered, "Deployment", "ingest")["spec"]["template"]["spec"]["containers"][0]
    config = RuntimeConfig.from_env(_env(ingest))
    on = _variant(values_file) == "all-options"
    assert config.ingest_proxy_protocol is on
    assert config.ingest_smarthost == ("relay.example:25" if on else None)
    assert config.kafka_bootstrap == (ALL_OPTIONS["kafka"]["bootstrap"] if on else "kafka:9092")
    assert config.topic_prefix == ("staging." if on else "")
    assert config.log_format == "json"
    assert ingest["env"][[e["name"] for e in ingest["env"]].index("DISCOVERY_INGEST_NODE_ID")][
        "valueFrom"
    ] == {"fieldRef": {"fieldPath": "metadata.name"}}, "each pod its own node id"


def test_helm_workers_keep_state_per_pod(rendered: list[dict], values_file: Path) -> None:
    worker = _one(rendered, "StatefulSet", "worker")
    spec = worker["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    (container,) = spec["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[DATA_DIR] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    config = RuntimeConfig.from_env(_env(container))
    assert config.streams_store == "rocksdb"
    assert 1 <= spec["replicas"] <= config.topic_partitions
    expected = {"defaults": 2, "all-options": 24, "minimal": 1}[_variant(values_file)]
    assert spec["replicas"] == expected
    governing = [
        s for s in _all(rendered, "Service") if s["metadata"]["name"] == spec["serviceName"]
    ]
    assert governing and governing[0]["spec"]["clusterIP"] == "None"
    # Every role agrees on the topics (partitions, prefix) the workers are co-partitioned on.
    topics = {
        (c.topic_partitions, c.topic_replication, c.topic_prefix)
        for _, container in _containers(rendered)
        if "KAFKA_BOOTSTRAP" in _env(container)
        for c in [RuntimeConfig.from_env(_env(container))]
    }
    assert len(topics) == 1, topics


def test_helm_jobs_run_one_at_a_time_only_with_a_smarthost(
    rendered: list[dict], values_file: Path
) -> None:
    jobs = _all(rendered, "Deployment", "jobs")
    if _variant(values_file) != "all-options":
        assert not jobs
        return
    (deployment,) = jobs
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config = RuntimeConfig.from_env(_env(container))
    assert config.report_smarthost == "relay.example:25"
    assert config.report_timezone == "Europe/Berlin"


def test_helm_setup_hooks_create_topics_then_migrate(rendered: list[dict]) -> None:
    hooks = {}
    for job in _all(rendered, "Job"):
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        hooks[tuple(container["args"])] = int(annotations["helm.sh/hook-weight"])
    assert set(hooks) == {("topics", "ensure"), ("migrate",)}
    assert hooks[("topics", "ensure")] < hooks[("migrate",)]


def test_helm_admin_service_and_ingress(rendered: list[dict], values_file: Path) -> None:
    admin = _one(rendered, "Deployment", "admin")
    (container,) = admin["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert split_host_port(_env(container)["DISCOVERY_ADMIN_LISTEN"]) == ("0.0.0.0", ports["http"])
    service = _one(rendered, "Service", "admin", "admin")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    ingresses = _all(rendered, "Ingress")
    if _variant(values_file) != "all-options":
        assert not ingresses
        return
    (ingress,) = ingresses
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": port["name"]}}
    assert ingress["spec"]["tls"] == [{"hosts": [rule["host"]], "secretName": "discovery-tls"}]


def test_helm_service_monitor_only_when_enabled(rendered: list[dict], values_file: Path) -> None:
    monitors = _all(rendered, "ServiceMonitor")
    if _variant(values_file) != "all-options":
        assert not monitors
        return
    (monitor,) = monitors
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mail"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [s for s in _all(rendered, "Service") if _selects(selector, s["metadata"]["labels"])]
    assert {_component(s) for s in scraped} == LONG_RUNNING
    for service in scraped:
        (port,) = service["spec"]["ports"]
        assert port["name"] == endpoint["port"] and port["targetPort"] == "ops"
        assert service["spec"]["publishNotReadyAddresses"] is True


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (["kafka.securityProtocol=SASL_SSL"], "kafka.sasl.mechanism"),
        (
            [
                "kafka.securityProtocol=SASL_PLAINTEXT",
                "kafka.sasl.mechanism=PLAIN",
                "kafka.sasl.users.worker.passwordSecret.name=",
            ],
            "kafka.sasl.users.worker.passwordSecret.name is required",
        ),
        (
            [
                "kafka.securityProtocol=SASL_SSL",
                "kafka.sasl.mechanism=SCRAM-SHA-512",
                "kafka.sasl.users.setup.username=",
            ],
            "kafka.sasl.users.setup.username is required",
        ),
        # Each role a principal of its own, and no pod holding another role's password.
        (
            [
                "kafka.securityProtocol=SASL_SSL",
                "kafka.sasl.mechanism=SCRAM-SHA-512",
                "kafka.sasl.users.sink.username=smtp-discovery-admin",
            ],
            "the same username",
        ),
        (
            [
                "kafka.securityProtocol=SASL_SSL",
                "kafka.sasl.mechanism=SCRAM-SHA-512",
                "kafka.sasl.users.ingest.passwordSecret.name=smtp-discovery-kafka-admin",
            ],
            "the same passwordSecret",
        ),
        # The one login of earlier versions is refused, not silently ignored.
        (["kafka.sasl.username=discovery"], "'username' not allowed"),
        (["admin.tokenKey.existingSecret.key="], "tokenKey"),
        (["kafka.caSecret.name=ca"], "SSL or SASL_SSL"),
        (["worker.replicas=13"], "topics.partitions"),
        (["ingest.tls.require=true"], "ingest.tls.secretName"),
        (["kafka.securityProtocol=TLS"], "securityProtocol"),
    ],
)
def test_helm_refuses_values_that_would_fail_in_the_pods(
    helm: str, settings: list[str], says: str
) -> None:
    args = [a for s in settings for a in ("--set", s)]
    result = _helm(helm, "template", "mx", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert says in result.stderr


def test_each_ingest_node_keeps_to_its_share_of_the_callout_rate(
    rendered: list[dict], values_file: Path
) -> None:
    """The callout rate is the fleet's: a node counts every node there may be (the
    autoscaler's maximum when it scales them), so together they never exceed it."""
    (container,) = _one(rendered, "Deployment", "ingest")["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    nodes = {"defaults": "10", "all-options": "20", "minimal": "3"}[_variant(values_file)]
    assert (env["DISCOVERY_INGEST_CALLOUTS_PER_S"], env["DISCOVERY_INGEST_NODES"]) == ("100", nodes)
