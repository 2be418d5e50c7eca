"""Deployment files can't run here (no Docker engine, no cluster): check what can be checked.

The Helm chart is linted and rendered by the real helm (scripts/helm, built once from source);
the rendered manifests are then checked against the project's own CLI and configuration.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from smtp_discovery.cli import build_parser
from smtp_discovery.config import VARIABLES, RuntimeConfig, split_host_port

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "smtp-discovery"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_run_real_cli_commands() -> None:
    parser = build_parser()
    ours = [s for s in _compose()["services"].values() if "build" in s]
    assert ours, "no service runs the project's image"
    for service in ours:
        args = parser.parse_args(service["command"])  # exits (fails the test) on a bad command
        assert args.command


def test_compose_sets_only_variables_the_configuration_reads() -> None:
    known = {v.env for v in VARIABLES}
    for name, service in _compose()["services"].items():
        if "build" in service:
            unknown = set(service.get("environment", {})) - known
            assert not unknown, f"{name} sets variables nothing reads: {unknown}"


def test_compose_named_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes", {}))
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared


def test_helm_chart_metadata() -> None:
    chart = yaml.safe_load((ROOT / "helm/smtp-discovery/Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "smtp-discovery"
    values = yaml.safe_load((ROOT / "helm/smtp-discovery/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsNonRoot"] is True


# --- The Helm chart, through the real helm --------------------------------------------------

# Values that take every optional branch of the templates.
ALL_OPTIONS = {
    "ingest": {
        "tls": {"secretName": "mx-tls"},
        "smarthost": "relay.example:25",
        "proxyProtocol": True,
        "service": {"type": "ClusterIP"},
    },
    "reports": {"smarthost": "relay.example:25", "timezone": "Europe/Berlin"},
    "clickhouse": {"cluster": "gw"},
}
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


@pytest.fixture(scope="module", params=["defaults", "all-options"])
def values_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    values = {} if request.param == "defaults" else ALL_OPTIONS
    path = tmp_path_factory.mktemp("values") / f"{request.param}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _helm(helm: str, *args: str) -> str:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def rendered(helm: str, values_file: Path) -> list[dict]:
    out = _helm(helm, "template", "mx", str(CHART), "--namespace", "mail", "-f", str(values_file))
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _options_on(values_file: Path) -> bool:
    return values_file.stem == "all-options"


def _one(docs: list[dict], kind: str, component: str) -> dict:
    found = [
        d
        for d in docs
        if d["kind"] == kind and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects for {component}"
    return found[0]


def _pod_templates(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]


def _containers(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    for where, template in _pod_templates(docs):
        spec = template["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{container['name']}", container


def _env(container: dict) -> dict[str, str]:
    """A container's environment as the process sees it (valueFrom: a stand-in pod name)."""
    return {e["name"]: e.get("value", "mx-ingest-0") for e in container["env"]}


def test_helm_lint_strict(helm: str, values_file: Path) -> None:
    out = _helm(helm, "lint", "--strict", str(CHART), "-f", str(values_file))
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


def test_helm_renders_the_roles(rendered: list[dict], values_file: Path) -> None:
    kinds = sorted(
        (d["kind"], d["metadata"]["labels"]["app.kubernetes.io/component"]) for d in rendered
    )
    jobs = [("Deployment", "jobs")] if _options_on(values_file) else []
    assert kinds == [
        ("Deployment", "admin"),
        *jobs,
        ("Deployment", "sink"),
        ("Job", "setup"),
        ("Service", "admin"),
        ("Service", "ingest"),
        ("StatefulSet", "ingest"),
        ("StatefulSet", "worker"),
    ]
    for doc in rendered:
        assert doc["metadata"]["name"].startswith("mx-"), "names must carry the release name"


def test_helm_container_args_are_real_cli_commands(rendered: list[dict], values_file: Path) -> None:
    parser = build_parser()
    commands = set()
    for where, container in _containers(rendered):
        assert "command" not in container, (
            f"{where} must keep the image's smtp-discovery entrypoint"
        )
        try:
            args = parser.parse_args(container["args"])
        except SystemExit:
            pytest.fail(f"{where}: args {container['args']} are no smtp-discovery command")
        commands.add(args.command)
    jobs = {"jobs"} if _options_on(values_file) else set()
    assert commands == {"topics", "ingest", "worker", "sink", "admin", *jobs}


def test_helm_env_is_known_to_and_valid_for_the_configuration(rendered: list[dict]) -> None:
    known = {v.env for v in VARIABLES}
    for where, container in _containers(rendered):
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), f"{where} sets a variable twice: {names}"
        unknown = set(names) - known
        assert not unknown, f"{where} sets variables nothing reads: {unknown}"
        for entry in container["env"]:
            # Kubernetes takes only strings; an unquoted number or boolean fails at apply time.
            assert isinstance(entry.get("value", ""), str), f"{where}: {entry} is not a string"
        RuntimeConfig.from_env(_env(container))  # raises ConfigError on a value it would refuse


def test_helm_pods_run_as_non_root(rendered: list[dict]) -> None:
    for where, template in _pod_templates(rendered):
        pod = template["spec"].get("securityContext", {})
        for name, container in ((c["name"], c) for c in template["spec"]["containers"]):
            merged = {**pod, **container.get("securityContext", {})}
            assert merged.get("runAsNonRoot") is True, f"{where}/{name} may run as root"
            assert merged.get("runAsUser", 1) != 0, f"{where}/{name} runs as uid 0"
            assert merged.get("allowPrivilegeEscalation") is False, f"{where}/{name}"
            assert "ALL" in merged.get("capabilities", {}).get("drop", []), f"{where}/{name}"


def test_helm_workloads_select_their_own_pods_and_mount_declared_volumes(
    rendered: list[dict],
) -> None:
    for doc in rendered:
        if doc["kind"] != "StatefulSet":
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{doc['metadata']['name']}: {mount}"
            # A read-only root file system: the data directory must be a volume.
            if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
                paths = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/var/lib/smtp-discovery" in paths  # DISCOVERY_DATA_DIR of the image


def test_helm_ingest_service_targets_the_smtp_port(rendered: list[dict], values_file: Path) -> None:
    service = _one(rendered, "Service", "ingest")
    ingest = _one(rendered, "StatefulSet", "ingest")
    pod = ingest["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = _env(container)

    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    worker = _one(rendered, "StatefulSet", "worker")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker.items(), "selects worker pods too"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 25
    target = port["targetPort"]
    assert (target if isinstance(target, int) else ports[target]) == ports["smtp"]
    # ...and the ingest listens on that port, and serves metrics where Prometheus looks.
    assert split_host_port(env["DISCOVERY_INGEST_LISTEN"])[1] == ports["smtp"]
    assert split_host_port(env["DISCOVERY_OPS_LISTEN"])[1] == ports["metrics"]
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == ports["metrics"]
    assert container["readinessProbe"]["tcpSocket"]["port"] in ("smtp", ports["smtp"])

    expected_type = "ClusterIP" if _options_on(values_file) else "LoadBalancer"
    assert service["spec"]["type"] == expected_type
    # externalTrafficPolicy is valid only for LoadBalancer and NodePort Services.
    assert ("externalTrafficPolicy" in service["spec"]) == (expected_type == "LoadBalancer")


def test_helm_tls_only_with_its_secret(rendered: list[dict], values_file: Path) -> None:
    pod = _one(rendered, "StatefulSet", "ingest")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    tls_env = {k for k in env if k.startswith("DISCOVERY_INGEST_TLS_")}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if not _options_on(values_file):
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


def test_helm_optional_ingest_settings_reach_the_configuration(
    rendered: list[dict], values_file: Path
) -> None:
    ingest = _one(rendered, "StatefulSet", "ingest")["spec"]["template"]["spec"]["containers"][0]
    config = RuntimeConfig.from_env(_env(ingest))
    on = _options_on(values_file)
    assert config.ingest_proxy_protocol is on
    assert config.ingest_smarthost == ("relay.example:25" if on else None)
    assert config.kafka_bootstrap == "kafka:9092"
    assert config.log_format == "json"
