"""Invoke tasks for Kubernetes: ``k8s.render`` and ``k8s.deploy``; the logic is cluster.k8s."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from cluster.errors import ClusterError

HELP = {
    "values": "a values file (repeatable; see charts/claude-cluster/values.yaml)",
    "set": "KEY=VALUE over the values (repeatable), as helm --set",
    "release": "the Helm release name",
    "namespace": "the namespace",
}


@task(iterable=["values", "set"],
      help={**HELP, "out": "write the manifests to this file instead of printing them",
            "seccomp_profile": "also write the agent's seccomp profile to this path"})
def render(c: Context, values: list[str] | None = None, set: list[str] | None = None,
           release: str = "claude-cluster", namespace: str = "default", out: str = "",
           seccomp_profile: str = "") -> None:
    """The chart's manifests for a values file (helm template; bad values fail here)."""
    from cluster.k8s.chart import render as render_chart
    from cluster.k8s.chart import write_seccomp_profile

    try:
        text = render_chart([Path(v) for v in values or ()], set or (), release, namespace)
        if seccomp_profile:
            write_seccomp_profile(Path(seccomp_profile))
    except ClusterError as exc:
        raise Exit(f"k8s.render: {exc}", exc.exit_code) from exc
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        print(text, end="")


@task(iterable=["values", "set"],
      help={**HELP, "no_wait": "return once Kubernetes accepted the release",
            "timeout": "how long --wait waits (helm duration, e.g. 10m)"})
def deploy(c: Context, values: list[str] | None = None, set: list[str] | None = None,
           release: str = "claude-cluster", namespace: str = "default", no_wait: bool = False,
           timeout: str = "10m") -> None:
    """helm upgrade --install against the current kube context (docs/kubernetes.md)."""
    from cluster.k8s.chart import deploy as deploy_chart

    try:
        print(deploy_chart([Path(v) for v in values or ()], set or (), release, namespace,
                           wait=not no_wait, timeout=timeout), end="")
    except ClusterError as exc:
        raise Exit(f"k8s.deploy: {exc}", exc.exit_code) from exc


ns = Collection("k8s", render, deploy)
