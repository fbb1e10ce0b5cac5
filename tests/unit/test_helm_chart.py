"""The Helm chart (charts/claude-cluster): helm lint and helm template over a matrix of values,
every manifest validated by kubernetes-validate --strict on two Kubernetes versions, the agent
settings it renders read back by the agent's own layering, and bad values refused by the
schema with a message naming the key."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.agent.config import load_agent_config
from cluster.agent_schema import AgentConfig, SandboxConfig
from cluster.k8s import chart
from cluster.k8s.helm import HelmError, find_helm, run_helm
from cluster.state.ids import is_safe_id
from cluster.units.seccomp import profile

KUBE_VERSIONS = ("1.30.0", "1.33.0")
STATE = "ssh://git@state.example/srv/state.git"
TOKEN = "dashboard-token-0123456789"  # a test value
# Keys of the agent settings the chart sets itself; agent.settings may hold every other one.
CHART_OWNED = {"state", "id", "specialties", "max_tasks", "workdir", "events_path",
               "metrics_port", "stop_grace_seconds", "sandbox", "executors"}

MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {"state": {"url": STATE}},
    "existing-secrets": {"state": {"existingSecret": "state-repo"},
                         "credentials": {"existingSecret": "model-keys"}},
    "chart-secrets": {"state": {"url": STATE, "sshKey": "KEY",
                                "knownHosts": "state ssh-ed25519 AAA"},
                      "credentials": {"anthropicApiKey": "sk-x", "githubToken": "ghp-x"}},
    "four-specialties": {
        "state": {"url": STATE},
        "agent": {"executors": ["claude-code", "command"], "stopGraceSeconds": 120.5,
                  "settings": {"model": "claude-sonnet-4-5", "forge": "github",
                               "poll_seconds": 10}},
        "specialties": [
            {"name": "backend", "replicas": 3, "maxTasks": 2},
            {"name": "frontend", "replicas": 0},
            {"name": "testing", "replicas": 1, "specialties": ["testing", "qa"],
             "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "8Gi"}},
             "settings": {"runner": "scratch"}},
            {"name": "devops", "replicas": 1},
        ]},
    "sandbox-off": {"state": {"url": STATE},
                    "sandbox": {"mode": "off", "acknowledgeUnsealed": True}},
    "sandbox-limits": {"state": {"url": STATE},
                       "sandbox": {"mode": "bwrap",
                                   "settings": {"memory_mb": 2048,
                                                "allow_hosts": ["pypi.org:443"]}}},
    "persistent-monitored": {"state": {"url": STATE},
                             "workspace": {"persistent": True, "size": "50Gi",
                                           "storageClassName": "fast"},
                             "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                             "podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"}},
    "no-pdb": {"state": {"url": STATE}, "podDisruptionBudget": {"enabled": False}},
    "profile-installer": {"state": {"url": STATE},
                          "sandbox": {"mode": "bwrap", "installProfile": True}},
    "dashboard": {"state": {"url": STATE}, "dashboard": {"enabled": True, "token": TOKEN}},
    "dashboard-existing-monitored": {
        "state": {"existingSecret": "state-repo"},
        "dashboard": {"enabled": True, "existingSecret": "dash-token", "port": 9000,
                      "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                    "limits": {"memory": "1Gi"}}},
        "serviceMonitor": {"enabled": True},
        "specialties": [{"name": "backend", "replicas": 2}, {"name": "testing", "replicas": 1}]},
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return find_helm()


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.json"  # JSON is YAML: no quoting surprises for odd strings
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def rendered(tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    text = chart.render([values_file(tmp_path, values)], release="cc")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def refusal(tmp_path: Path, values: dict[str, Any]) -> str:
    with pytest.raises(HelmError) as caught:
        chart.render([values_file(tmp_path, values)], release="cc")
    return str(caught.value)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_lint_and_every_manifest_validates_strictly(case: str, tmp_path: Path) -> None:
    chart.lint([values_file(tmp_path, MATRIX[case])])
    docs = rendered(tmp_path, MATRIX[case])
    kinds = {doc["kind"] for doc in docs}
    assert {"StatefulSet", "ConfigMap", "Service"} <= kinds
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":  # a CRD: no schema in kubernetes-validate
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_agent_settings_are_what_the_agent_reads(case: str, tmp_path: Path) -> None:
    docs = rendered(tmp_path, MATRIX[case])
    config_map = next(d for d in docs if d["kind"] == "ConfigMap"
                      and not d["metadata"]["name"].endswith("-seccomp"))
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]
        key = next(i["key"] for i in volume["items"] if i["path"] == "agent.yaml")
        path = tmp_path / "agent.yaml"
        path.write_text(config_map["data"][key], encoding="utf-8")
        agent_id = f"{sts['metadata']['name']}-{sts['spec']['replicas']}"
        config = load_agent_config(path, {}, {"CLUSTER_AGENT_ID": agent_id,
                                              "CLUSTER_AGENT_STATE": STATE})
        assert config.id == agent_id and is_safe_id(agent_id)
        assert config.state == STATE
        assert pod["terminationGracePeriodSeconds"] > config.stop_grace_seconds
        agent = pod["containers"][0]
        assert agent["command"][-1] == "/etc/claude-cluster/agent.yaml"
        env = {e["name"]: e for e in agent["env"]}
        assert env["CLUSTER_AGENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert int(env["CLUSTER_AGENT_METRICS_PORT"]["value"]) == config.metrics_port
        assert str(config.workdir) in {m["mountPath"] for m in agent["volumeMounts"]}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_pod_security(case: str, tmp_path: Path) -> None:
    off = MATRIX[case].get("sandbox", {}).get("mode") == "off"
    for sts in (d for d in rendered(tmp_path, MATRIX[case]) if d["kind"] == "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == (
            "RuntimeDefault" if off else "Localhost")
        assert pod.get("hostUsers", True) is off
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
        agent = pod["containers"][0]["securityContext"]
        assert ("procMount" not in agent) is off


def test_the_chart_carries_the_profile_the_code_makes() -> None:
    carried = (chart.chart_dir() / "files" / "seccomp.json").read_text(encoding="utf-8")
    assert carried == profile(), (
        "charts/claude-cluster/files/seccomp.json differs from cluster/units/seccomp.py: "
        "invoke k8s.render --seccomp-profile charts/claude-cluster/files/seccomp.json")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_the_profile_installer_puts_it_where_the_agents_pods_load_it(tmp_path: Path) -> None:
    docs = rendered(tmp_path, MATRIX["profile-installer"])
    profile_map = next(d for d in docs if d["kind"] == "ConfigMap"
                       and d["metadata"]["name"].endswith("-seccomp"))
    assert profile_map["data"]["agent.json"] == profile()
    (daemonset,) = (d for d in docs if d["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    target = next(e["value"] for e in container["env"] if e["name"] == "TARGET")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_paths = [v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v]
    assert host_paths == ["/var/lib/kubelet/seccomp"]  # the kubelet's seccomp root, nothing else
    assert volumes["profile"]["configMap"]["name"] == profile_map["metadata"]["name"]
    node_root = mounts["node-seccomp"]
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        wanted = sts["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
        assert target == f"{node_root}/{wanted['localhostProfile']}", (target, wanted)
    ctx = container["securityContext"]
    assert (ctx["readOnlyRootFilesystem"], ctx["allowPrivilegeEscalation"],
            ctx["capabilities"]) == (True, False, {"drop": ["ALL"]})
    assert pod["automountServiceAccountToken"] is False
    # No selector of the agents' (StatefulSets, PDBs, Services) takes the installer's pods in,
    # and the DaemonSet takes none of theirs.
    installer = daemonset["spec"]["template"]["metadata"]["labels"]
    agents = [d for d in docs if d["kind"] in ("StatefulSet", "PodDisruptionBudget", "Service")]
    for doc in agents:
        spec = doc["spec"]
        selector = spec["selector"] if doc["kind"] == "Service" else spec["selector"]["matchLabels"]
        assert not _selects(selector, installer), doc["metadata"]["name"]
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert not _selects(daemonset["spec"]["selector"]["matchLabels"], labels)


@pytest.mark.parametrize("case", ["defaults", "sandbox-off"])
def test_no_installer_unless_asked_for_one(case: str, tmp_path: Path) -> None:
    values = {**MATRIX[case], "sandbox": {**MATRIX[case].get("sandbox", {"mode": "bwrap"}),
                                          "installProfile": case == "sandbox-off"}}
    assert "DaemonSet" not in {d["kind"] for d in rendered(tmp_path, values)}


def test_sandbox_off_says_so_loudly(tmp_path: Path) -> None:
    """Off only when acknowledged (the schema), then said on every pod (kubectl describe) and
    in NOTES.txt (helm install's last words)."""
    docs = rendered(tmp_path, MATRIX["sandbox-off"])
    body = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["backend.yaml"]
    assert SandboxConfig.of(yaml.safe_load(body)["sandbox"]).mode == "off"
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert "UNSEALED" in annotations["claude-cluster/sandbox"]
    notes = (chart.chart_dir() / "templates" / "NOTES.txt").read_text()
    assert 'if eq .Values.sandbox.mode "off"' in notes and "UNSEALED" in notes


def _of(docs: list[dict[str, Any]], kind: str, component: str | None = None,
        ) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (
        component is None or d["metadata"]["labels"].get("app.kubernetes.io/component")
        == component)]


def test_no_dashboard_unless_enabled(tmp_path: Path) -> None:
    docs = rendered(tmp_path, MATRIX["defaults"])
    assert not _of(docs, "Deployment") and not _of(docs, "Service", "dashboard")


@pytest.mark.parametrize("case", ["dashboard", "dashboard-existing-monitored"])
def test_the_dashboard(case: str, tmp_path: Path) -> None:
    from cluster.cli import build_parser

    values = MATRIX[case]["dashboard"]
    port = values.get("port", 8090)
    docs = rendered(tmp_path, MATRIX[case])
    (deployment,) = _of(docs, "Deployment")
    (service,) = _of(docs, "Service", "dashboard")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["claude-cluster", "serve"]
    args = build_parser().parse_args(command[1:])  # the real CLI takes every option
    assert (args.state, args.bind, args.port, args.token_file) == (
        "$(CLUSTER_SERVE_STATE)", "0.0.0.0", port, None)
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    state_secret = MATRIX[case]["state"].get("existingSecret") or "cc-claude-cluster-state"
    assert env["CLUSTER_SERVE_STATE"] == {"name": state_secret, "key": "url"}
    # The token: serve reads $CLUSTER_SERVE_TOKEN; from the given Secret, else the chart's.
    token_ref = env["CLUSTER_SERVE_TOKEN"]
    secrets = {d["metadata"]["name"]: d for d in _of(docs, "Secret")}
    if values.get("existingSecret"):
        assert token_ref == {"name": values["existingSecret"], "key": "token"}
        assert values["existingSecret"] not in secrets
    else:
        assert secrets[token_ref["name"]]["stringData"] == {"token": values["token"]}
    assert TOKEN not in json.dumps([deployment, service])
    # No sandbox options: it runs no task code.
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True and "hostUsers" not in pod
    assert pod["automountServiceAccountToken"] is False
    ctx = container["securityContext"]
    assert ctx == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                   "capabilities": {"drop": ["ALL"]}}
    resources = values.get("resources") or yaml.safe_load(
        (chart.chart_dir() / "values.yaml").read_text())["dashboard"]["resources"]
    assert container["resources"] == resources
    (http,) = container["ports"]
    assert http["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": http["name"]}
    # The state repo's Secret where the agents have it; HOME (its mirror) an emptyDir.
    sts = _of(docs, "StatefulSet")[0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    agent_volumes = {v["name"]: v for v in sts["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    agent_mounts = {m["name"]: m for m in sts["containers"][0]["volumeMounts"]}
    assert volumes["ssh"] == agent_volumes["ssh"] and mounts["ssh"] == agent_mounts["ssh"]
    assert "emptyDir" in volumes["home"] and mounts["home"] == agent_mounts["home"]
    agent_env = {e["name"] for e in sts["containers"][0]["env"]}
    assert ("GIT_SSH_COMMAND" in env) == ("GIT_SSH_COMMAND" in agent_env)  # ssh as theirs
    # Its Service and Deployment take its pods only; no selector of the agents' takes them.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP" and _selects(service["spec"]["selector"], labels)
    assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "http")]
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "PodDisruptionBudget") or (
                doc["kind"] == "Service" and doc is not service):
            spec = doc["spec"]
            selector = spec["selector"] if doc["kind"] == "Service" else (
                spec["selector"]["matchLabels"])
            assert not _selects(selector, labels), doc["metadata"]["name"]
    for agents in _of(docs, "StatefulSet"):
        theirs = agents["spec"]["template"]["metadata"]["labels"]
        assert not _selects(deployment["spec"]["selector"]["matchLabels"], theirs)
        assert not _selects(service["spec"]["selector"], theirs)


def test_the_service_monitor_scrapes_the_dashboard_with_its_token(tmp_path: Path) -> None:
    docs = rendered(tmp_path, MATRIX["dashboard-existing-monitored"])
    (monitor,) = _of(docs, "ServiceMonitor")
    (service,) = _of(docs, "Service", "dashboard")
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    (port,) = service["spec"]["ports"]
    scrape = endpoints[port["name"]]
    assert scrape["path"] == "/metrics"
    assert scrape["bearerTokenSecret"] == {"name": "dash-token", "key": "token"}
    # The agents' endpoint (their relays, no token) names no port of the dashboard's.
    assert "bearerTokenSecret" not in endpoints["metrics"] and port["name"] != "metrics"
    monitored = rendered(tmp_path, MATRIX["persistent-monitored"])  # no dashboard: one endpoint
    assert [e["port"] for e in _of(monitored, "ServiceMonitor")[0]["spec"]["endpoints"]] == [
        "metrics"]


def test_settings_keys_track_the_agent_schema() -> None:
    schema = json.loads((chart.chart_dir() / "values.schema.json").read_text())
    allowed = set(schema["properties"]["agent"]["properties"]["settings"]["propertyNames"]["enum"])
    assert allowed == set(AgentConfig.model_fields) - CHART_OWNED
    sandbox = schema["properties"]["sandbox"]["properties"]["settings"]["propertyNames"]["enum"]
    assert set(sandbox) == set(SandboxConfig.model_fields) - {"mode"}


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "no state url": ({}, "state.url"),
    "sandbox off unacknowledged": ({"state": {"url": STATE}, "sandbox": {"mode": "off"}},
                                   "acknowledgeUnsealed"),
    "unknown sandbox mode": ({"state": {"url": STATE}, "sandbox": {"mode": "none"}},
                             "sandbox.mode"),
    "unknown agent setting": ({"state": {"url": STATE}, "agent": {"settings": {"bogus": 1}}},
                              "agent.settings"),
    "chart-owned setting": ({"state": {"url": STATE}, "agent": {"settings": {"id": "x"}}},
                            "agent.settings"),
    "no specialties": ({"state": {"url": STATE}, "specialties": []}, "specialties"),
    "negative replicas": ({"state": {"url": STATE},
                           "specialties": [{"name": "backend", "replicas": -1}]},
                          "specialties.0.replicas"),
    "too many tasks": ({"state": {"url": STATE},
                        "specialties": [{"name": "backend", "replicas": 1, "maxTasks": 65}]},
                       "specialties.0.maxTasks"),
    "unknown executor": ({"state": {"url": STATE}, "agent": {"executors": ["bash"]}},
                         "agent.executors"),
    "root uid": ({"state": {"url": STATE}, "uid": 0}, "uid"),
    "typo'd key": ({"state": {"url": STATE}, "servicemonitor": {"enabled": True}},
                   "servicemonitor"),
    "dashboard without a token": ({"state": {"url": STATE}, "dashboard": {"enabled": True}},
                                  "dashboard.existingSecret"),
    "dashboard token too short": ({"state": {"url": STATE},
                                   "dashboard": {"enabled": True, "token": "short"}},
                                  "dashboard"),
    "specialty named dashboard": ({"state": {"url": STATE},
                                   "specialties": [{"name": "dashboard", "replicas": 1}]},
                                  "specialties.0.name"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_are_refused_naming_the_key(case: str, tmp_path: Path) -> None:
    values, key = BAD[case]
    message = refusal(tmp_path, values)
    assert "values don't meet the specifications of the schema" in message or "required" in message
    assert key in message


NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet="abcxyz019-_.A /", min_size=0, max_size=24),
       replicas=st.integers(min_value=-2, max_value=1200))
def test_specialty_names_and_replicas(name: str, replicas: int, tmp_path: Path) -> None:
    """A name is taken exactly when it is a short DNS label, and then every agent id the
    StatefulSet gives its pods is a safe agent id; replicas outside 0..1000 are refused."""
    values = {"state": {"url": STATE}, "specialties": [{"name": name, "replicas": replicas}]}
    if NAME.match(name) and 0 <= replicas <= 1000:
        docs = rendered(tmp_path, values)
        sts = next(d for d in docs if d["kind"] == "StatefulSet")
        last = f"{sts['metadata']['name']}-{max(replicas - 1, 0)}"
        assert is_safe_id(last) and len(last) <= 63
    else:
        refusal(tmp_path, values)


def test_the_helm_binary_is_the_pinned_one_when_unpacked(tmp_path: Path) -> None:
    from cluster.k8s.helm import VERSION, unpacked_helm

    first = unpacked_helm(tmp_path)
    assert unpacked_helm(tmp_path) == first  # idempotent: found, checked, reused
    assert VERSION in run_helm(["version", "--short"], first)
    first.write_bytes(b"not helm")  # a damaged cache is replaced, not trusted
    assert VERSION in run_helm(["version", "--short"], unpacked_helm(tmp_path))


def test_clusters_older_than_user_namespaced_pods_are_refused(tmp_path: Path) -> None:
    values = [values_file(tmp_path, MATRIX["defaults"])]
    with pytest.raises(HelmError, match="kubeVersion"):
        chart.render(values, kube_version="1.29.0")
    assert "StatefulSet" in chart.render(values, kube_version="1.30.0")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_liveness_probe_and_the_relay_read_the_agents_metrics() -> None:
    """agentprobe.py against a real agent Metrics endpoint on loopback."""
    import subprocess
    import sys
    import urllib.request

    from cluster.agent.metrics import Metrics
    from tests.helpers import poll

    port, relay_port = _free_port(), _free_port()
    server = Metrics("cc-backend-0").serve(port)
    script = str(chart.chart_dir() / "files" / "agentprobe.py")
    env = {"CLUSTER_AGENT_METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
    try:
        def live(agent: str) -> int:
            return subprocess.run([sys.executable, script, "live"], check=False,
                                  env={**env, "CLUSTER_AGENT_ID": agent}).returncode
        assert live("cc-backend-0") == 0
        assert live("cc-backend-1") == 1  # another agent's endpoint is not this one's
        relay = subprocess.Popen([sys.executable, script, "relay", str(relay_port), "127.0.0.1"],
                                 env=env)
        try:
            def scraped() -> str:
                try:
                    url = f"http://127.0.0.1:{relay_port}/metrics"
                    with urllib.request.urlopen(url, timeout=2) as answer:
                        return str(answer.read().decode())
                except OSError:
                    return ""
            text = poll(scraped, 30, "the relay serving metrics", interval=0.1)
            assert 'claude_cluster_agent_info{agent="cc-backend-0"' in text
        finally:
            relay.terminate()
            relay.wait(10)
    finally:
        server.shutdown()
    assert live("cc-backend-0") == 1  # nothing answers: not alive


def test_invoke_k8s_render(tmp_path: Path) -> None:
    from invoke.context import Context
    from invoke.exceptions import Exit

    from cluster.tasks.k8s import render

    out, profile = tmp_path / "manifests.yaml", tmp_path / "seccomp" / "agent.json"
    render(Context(), set=[f"state.url={STATE}"], out=str(out), seccomp_profile=str(profile))
    assert {d["kind"] for d in yaml.safe_load_all(out.read_text()) if d} >= {"StatefulSet"}
    assert json.loads(profile.read_text())["defaultAction"] == "SCMP_ACT_ERRNO"
    with pytest.raises(Exit, match=r"k8s.render: .*state.url"):
        render(Context(), set=["sandbox.mode=bwrap"])
