"""The chart installed into a real Kubernetes cluster: runs only when KUBECONFIG names one
(no API server can run on this machine) and CCC_K8S_VALUES names a values file for it (an
image the cluster can pull, a state repo it reaches); skipped, saying so, otherwise."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from cluster.k8s import chart
from cluster.k8s.helm import run_helm

pytestmark = pytest.mark.integration


def _cluster() -> tuple[Path, Path]:
    config, values = os.environ.get("KUBECONFIG", ""), os.environ.get("CCC_K8S_VALUES", "")
    if not config or not Path(config.split(os.pathsep)[0]).is_file():
        pytest.skip("KUBECONFIG does not point at a kubeconfig file: no Kubernetes cluster to "
                    "install into (this machine can run none)")
    if not values or not Path(values).is_file():
        pytest.skip("CCC_K8S_VALUES names no values file (image and state repo for the cluster)")
    return Path(config), Path(values)


def test_install_upgrade_uninstall_on_a_real_cluster() -> None:
    _, values = _cluster()
    namespace = f"ccc-test-{uuid.uuid4().hex[:8]}"
    release = "ccc-test"
    try:
        # --wait: every agent ready, i.e. its heartbeat accepted by the state repo.
        chart.deploy([values], release=release, namespace=namespace, timeout="10m")
        # An upgrade that changes agent.yaml rolls the pods one at a time, each releasing first.
        chart.deploy([values], ["agent.settings.poll_seconds=7"], release=release,
                     namespace=namespace, timeout="10m")
        status = run_helm(["status", release, "--namespace", namespace])
        assert "STATUS: deployed" in status, status
    finally:
        run_helm(["uninstall", release, "--namespace", namespace, "--wait"])
