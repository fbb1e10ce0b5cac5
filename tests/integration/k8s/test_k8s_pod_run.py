"""The chart's rendered pod, run for real: no Kubernetes API server can run on this machine, so
the agent container of `helm template`'s StatefulSet runs under docker as a kubelet would run it
(k8s_podrun: same image, command, env, ConfigMap and Secret files at the same paths, the
securityContext's options). It reaches an SSH state host through the chart's Secret (URL, deploy
key, known_hosts), passes its own probes, completes a task sealed in bubblewrap, and on SIGTERM
releases the task it holds within terminationGracePeriodSeconds; the same pod again (the
StatefulSet's pod-0, same agent id) finishes that task."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_podrun import Pod, clear, docker_kwargs, probe_argv  # type: ignore[import-not-found]
from rich.console import Console

from cluster.deploy.image import ensure_agent_image
from cluster.deploy.run import cli_pack
from cluster.deploy.settings import load_settings
from cluster.deploy.wheels import build_wheels
from cluster.k8s import chart
from cluster.state.records import Result
from cluster.state.submit import submit
from cluster.testhosts.bed import agent_base
from cluster.testhosts.hosts import down
from cluster.testhosts.model import NETWORK
from cluster.testhosts.statehost import StateHost, start_state_host
from cluster.transport import docker
from cluster.units.seccomp import profile
from tests.clients import state_client
from tests.helpers import poll

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PREFIX = "ccc-k8s-state"
RELEASE = "cc"


@pytest.fixture(scope="module")
def agent_image() -> str:
    """The release's agent image, built offline by cluster/deploy/image.py (cached)."""
    settings = load_settings({"root": ROOT})
    settings = settings.model_copy(update={"work_dir": ROOT / settings.work_dir})
    wheels = build_wheels(ROOT, settings.cache_dir)
    pack = cli_pack(settings, Console(stderr=True))
    return ensure_agent_image(docker.client(), wheels, ROOT, agent_base(), pack)


@pytest.fixture
def state_host(docker_engine: None, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[StateHost]:
    down(PREFIX)
    try:
        state = start_state_host(tmp_path / "state", PREFIX)
        monkeypatch.setenv("GIT_SSH_COMMAND", state.control_ssh_command)
        yield state
    finally:
        down(PREFIX)


def values(image: str, state: StateHost) -> dict[str, Any]:
    repository, tag = image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "state": {"url": state.agent_url, "sshKey": state.deploy_key.read_text(),
                  "knownHosts": state.agents_known_hosts.read_text()},
        "specialties": [{"name": "backend", "replicas": 1}],
        "agent": {"stopGraceSeconds": 5, "executors": ["command"],
                  "settings": {"runner": "scratch", "heartbeat_seconds": 1,
                               "poll_seconds": 1}},
    }


def submit_task(state: StateHost, work: Path, task_id: str, command: str) -> None:
    task = {"id": task_id, "title": f"k8s pod ({task_id})", "specialty": "backend",
            "repo": "demo/sample", "executor": {"kind": "command", "command": command},
            "verify": "true"}
    path = work / f"{task_id}.yaml"
    path.write_text(yaml.safe_dump(task))
    with state_client(state.control_url, work, "tester", work="client") as client:
        submit(client, [path])


def task_state(state: StateHost, work: Path, task_id: str) -> str:
    with state_client(state.control_url, work, "tester", work="client") as client:
        return client.snapshot().state(task_id)


def result(state: StateHost, work: Path, task_id: str) -> Result | None:
    with state_client(state.control_url, work, "tester", work="client") as client:
        return client.snapshot().result(task_id)


def start(pod: Pod, scratch: Path, seccomp_root: Path) -> docker.Container:
    remove_pod(pod)
    clear(scratch)
    kwargs = docker_kwargs(pod, scratch, seccomp_root, NETWORK)
    image = pod.agent["image"]
    command = kwargs.pop("command")
    return docker.run_container(docker.client(), image, command or None, **kwargs)


def remove_pod(pod: Pod) -> None:
    for container in docker.client().containers.list(all=True, filters={"name": pod.name}):
        docker.remove(container)


def probe(container: docker.Container, pod: Pod, which: str) -> tuple[int, str]:
    code, out, err = docker.exec_argv(container, probe_argv(pod, which))
    return code, (out + err).strip()


def wait_ready(container: docker.Container, pod: Pod) -> None:
    """As the kubelet: the startup probe, then liveness and readiness, all passing."""
    def passing() -> bool:
        return all(probe(container, pod, p)[0] == 0
                   for p in ("startupProbe", "livenessProbe", "readinessProbe"))
    poll(passing, 120, lambda: f"{pod.name} ready: "
         + json.dumps({p: probe(container, pod, p) for p in ("livenessProbe", "readinessProbe")})
         + "\n" + docker.logs_tail(container), interval=1)


def test_the_rendered_pod_completes_a_task_and_releases_on_sigterm(
        agent_image: str, state_host: StateHost, tmp_path: Path) -> None:
    values_path = tmp_path / "values.json"
    values_path.write_text(json.dumps(values(agent_image, state_host)))
    docs = [d for d in yaml.safe_load_all(chart.render([values_path], release=RELEASE)) if d]
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = Pod.of(docs, sts["metadata"]["name"], 0)
    seccomp_root = tmp_path / "kubelet-seccomp"
    localhost = pod.template["securityContext"]["seccompProfile"]["localhostProfile"]
    chart.write_seccomp_profile(seccomp_root / localhost)
    work, scratch = tmp_path / "work", tmp_path / "pod"
    work.mkdir()
    try:
        container = start(pod, scratch, seccomp_root)
        wait_ready(container, pod)
        submit_task(state_host, work, "k8s-quick", "echo hi from the pod")
        done = poll(lambda: result(state_host, work, "k8s-quick"), 120,
                    lambda: "a result for k8s-quick\n" + docker.logs_tail(container), interval=1)
        assert done.status == "succeeded", done
        assert done.agent == pod.name, done  # the id is the pod's name
        with state_client(state_host.control_url, work, "tester", work="client") as client:
            beat = client.snapshot().agents[pod.name]
        assert beat.sandbox == "bwrap", beat  # the attempt ran sealed, as the pod says
        host_config = container.attrs["HostConfig"]
        assert host_config["ReadonlyRootfs"] and host_config["CapDrop"] == ["ALL"], host_config

        submit_task(state_host, work, "k8s-slow", "sleep 20; echo slow done")
        poll(lambda: task_state(state_host, work, "k8s-slow") == "claimed", 120,
             lambda: "k8s-slow claimed\n" + docker.logs_tail(container), interval=1)
        container.stop(timeout=pod.grace)  # SIGTERM, then SIGKILL after the pod's grace
        container.reload()
        exit_code = container.attrs["State"]["ExitCode"]
        assert exit_code == 0, f"exit {exit_code}:\n{docker.logs_tail(container, 60)}"
        assert task_state(state_host, work, "k8s-slow") == "released"
        docker.remove(container)

        container = start(pod, scratch, seccomp_root)  # pod-0 again, the same agent id
        slow = poll(lambda: result(state_host, work, "k8s-slow"), 180,
                    lambda: "a result for k8s-slow\n" + docker.logs_tail(container), interval=1)
        assert slow.status == "succeeded", slow
        assert slow.agent == pod.name, slow
    finally:
        remove_pod(pod)


def test_the_profile_installer_puts_the_agents_profile_on_the_node(
        agent_image: str, docker_engine: None, tmp_path: Path) -> None:
    """The DaemonSet's pod, run as rendered, writes the profile where the agents' pods name
    it under the node's seccomp root, and keeps running (a DaemonSet's pod must)."""
    repository, tag = agent_image.rsplit(":", 1)
    values_path = tmp_path / "values.json"
    values_path.write_text(json.dumps({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "state": {"url": "ssh://git@state.example/srv/state.git"},
        "sandbox": {"mode": "bwrap", "installProfile": True}}))
    docs = [d for d in yaml.safe_load_all(chart.render([values_path], release=RELEASE)) if d]
    (daemonset,) = (d for d in docs if d["kind"] == "DaemonSet")
    pod = Pod.of(docs, daemonset["metadata"]["name"], 0, kind="DaemonSet")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    wanted = sts["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
    node = tmp_path / "node"
    installed = node / "var/lib/kubelet/seccomp" / wanted["localhostProfile"]
    remove_pod(pod)
    kwargs = docker_kwargs(pod, tmp_path / "pod", node / "unused", "none", node)
    command = kwargs.pop("command")
    container = docker.run_container(docker.client(), agent_image, command or None, **kwargs)
    try:
        poll(lambda: installed.is_file() and installed.read_text() == profile(), 60,
             lambda: f"{installed} holding the agents' profile:\n{docker.logs_tail(container)}")
        assert oct(installed.stat().st_mode & 0o777) == "0o644"
        container.reload()
        assert container.status == "running", docker.logs_tail(container)
    finally:
        remove_pod(pod)
