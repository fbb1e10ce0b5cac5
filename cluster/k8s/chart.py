"""The Helm chart (charts/claude-cluster): rendered for a values file, installed, and the seccomp
profile its sandboxed pods name, written where a node's kubelet looks for it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cluster.k8s.helm import HelmError, run_helm
from cluster.units.seccomp import profile

CHART = Path(__file__).resolve().parents[2] / "charts" / "claude-cluster"
RELEASE = "claude-cluster"


def chart_dir() -> Path:
    """The chart of this checkout; HelmError when the package runs without it (a wheel)."""
    if not (CHART / "Chart.yaml").is_file():
        raise HelmError(f"no chart at {CHART}: run from a checkout of the project")
    return CHART


def value_args(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    """helm's ``--values FILE`` and ``--set KEY=VALUE`` arguments, in order."""
    args: list[str] = []
    for path in values:
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render(values: Sequence[Path] = (), sets: Sequence[str] = (), release: str = RELEASE,
           namespace: str = "default", kube_version: str = "") -> str:
    """``helm template``'s manifests (a YAML stream); HelmError naming bad values otherwise."""
    args = ["template", release, str(chart_dir()), "--namespace", namespace,
            *value_args(values, sets)]
    if kube_version:
        args += ["--kube-version", kube_version]
    return run_helm(args)


def lint(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> str:
    """``helm lint --strict``'s report; HelmError when the chart fails it."""
    return run_helm(["lint", "--strict", str(chart_dir()), *value_args(values, sets)])


def deploy(values: Sequence[Path] = (), sets: Sequence[str] = (), release: str = RELEASE,
           namespace: str = "default", wait: bool = True, timeout: str = "10m") -> str:
    """``helm upgrade --install`` into the current kube context. ``wait``: until every agent is
    ready (its heartbeat seen in the state repo); the StatefulSets roll one pod at a time."""
    args = ["upgrade", "--install", release, str(chart_dir()), "--namespace", namespace,
            "--create-namespace", *value_args(values, sets)]
    if wait:
        args += ["--wait", "--timeout", timeout]
    return run_helm(args)


def write_seccomp_profile(path: Path) -> Path:
    """The agent's seccomp profile (cluster/units/seccomp.py, the one container hosts use) at
    ``path``: copy it to each node's /var/lib/kubelet/seccomp/<sandbox.seccompProfile>."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile(), encoding="utf-8")
    return path
