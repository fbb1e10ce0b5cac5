"""A kubelet stand-in for one rendered pod: its agent container run under docker, as written.

The StatefulSet's pod template is turned into a container of the same image, command, args and
environment (``fieldRef metadata.name`` is the pod's name, ``secretKeyRef`` the rendered
Secret's value), with each ConfigMap and Secret volume written out as files (their modes, root's
and the pod's fsGroup's, as the kubelet writes them) and bound at the same mount paths, each
emptyDir a fresh directory (``medium: Memory``: a tmpfs), each hostPath that path in a stand-in
of the node's root filesystem. The securityContext maps to docker's
options one for one: runAsUser/runAsGroup/fsGroup to ``user``/``group_add``,
readOnlyRootFilesystem to ``read_only``, capabilities to ``cap_drop``, allowPrivilegeEscalation
false to ``no-new-privileges``, a Localhost seccomp profile to ``seccomp=<that file>`` (read from
a stand-in of the node's seccomp root), ``procMount: Unmasked`` to ``systempaths=unconfined``,
``appArmorProfile: Unconfined`` to ``apparmor=unconfined``, shareProcessNamespace (a PID 1 that
reaps) to ``init``, terminationGracePeriodSeconds to the stop timeout. What docker cannot give
a single container, ``hostUsers: false`` (a user namespace of the pod's own), is left out: the
sandbox makes its own user namespace either way.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNMASKED = "systempaths=unconfined"


@dataclass(frozen=True)
class Pod:
    """One pod of a rendered StatefulSet and the objects its volumes and env name."""

    name: str
    template: dict[str, Any]  # the pod template's spec
    objects: dict[tuple[str, str], dict[str, Any]]  # (kind, name) -> rendered object

    @classmethod
    def of(cls, docs: list[dict[str, Any]], owner: str, ordinal: int,
           kind: str = "StatefulSet") -> Pod:
        """Pod ``ordinal`` of the StatefulSet (or DaemonSet: one per node) named ``owner``."""
        objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        workload = objects[(kind, owner)]
        return cls(f"{owner}-{ordinal}", workload["spec"]["template"]["spec"], objects)

    @property
    def agent(self) -> dict[str, Any]:
        return dict(self.template["containers"][0])

    @property
    def grace(self) -> int:
        return int(self.template["terminationGracePeriodSeconds"])

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's data, or a Secret's (stringData, as the chart renders it)."""
        body = self.objects[(kind, name)]
        return dict(body.get("data") or body.get("stringData") or {})

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.agent.get("env", []):
            if "value" in item:
                out[item["name"]] = str(item["value"])
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "metadata.name", source
                out[item["name"]] = self.name
                continue
            kind, ref = (("Secret", source["secretKeyRef"]) if "secretKeyRef" in source
                         else ("ConfigMap", source["configMapKeyRef"]))
            value = self.data(kind, ref["name"]).get(ref["key"])
            if value is None:
                assert ref.get("optional"), f"{kind} {ref['name']} has no key {ref['key']}"
                continue
            out[item["name"]] = value
        return out


def _write_files(directory: Path, files: dict[str, str], mode: int, gid: int) -> None:
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    for name, body in files.items():
        path = directory / name
        path.write_text(body, encoding="utf-8")
        os.chown(path, 0, gid)
        path.chmod(mode)


def _volume(pod: Pod, volume: dict[str, Any], scratch: Path, gid: int,
            node: Path | None) -> tuple[str, Any]:
    """("bind", host dir) or ("tmpfs", options) for one volume of the pod; a hostPath is that
    path under ``node``, a stand-in of the node's root filesystem."""
    where = scratch / volume["name"]
    if "hostPath" in volume:
        assert node is not None, f"volume {volume['name']}: a hostPath needs a node stand-in"
        where = node / volume["hostPath"]["path"].lstrip("/")
        assert volume["hostPath"].get("type") in ("Directory", "DirectoryOrCreate"), volume
        where.mkdir(mode=0o755, parents=True, exist_ok=True)
        return "bind", where
    if "configMap" in volume or "secret" in volume:
        kind = "ConfigMap" if "configMap" in volume else "Secret"
        ref = volume["configMap"] if "configMap" in volume else volume["secret"]
        data = pod.data(kind, ref.get("name") or ref["secretName"])
        if "items" in ref:
            data = {item["path"]: data[item["key"]] for item in ref["items"]}
        _write_files(where, data, int(ref.get("defaultMode", 0o644)), gid)
        return "bind", where
    empty = volume["emptyDir"]
    if empty.get("medium") == "Memory":
        size = _bytes(str(empty.get("sizeLimit", "64Mi")))  # the kernel takes no "Mi"
        return "tmpfs", f"rw,nosuid,nodev,mode=1777,size={size}"
    where.mkdir(parents=True)
    where.chmod(0o777)  # as the kubelet makes an emptyDir
    return "bind", where


def docker_kwargs(pod: Pod, scratch: Path, seccomp_root: Path, network: str,
                  node: Path | None = None) -> dict[str, Any]:
    """``run_container`` keyword arguments for the pod's (first) container."""
    spec, agent = pod.template, pod.agent
    pod_ctx, ctx = spec.get("securityContext", {}), agent.get("securityContext", {})
    gid = int(pod_ctx.get("fsGroup", pod_ctx.get("runAsGroup", 0)))
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    binds: dict[str, dict[str, str]] = {}
    tmpfs: dict[str, str] = {}
    for mount in agent.get("volumeMounts", []):
        kind, where = _volume(pod, volumes[mount["name"]], scratch, gid, node)
        if kind == "tmpfs":
            tmpfs[mount["mountPath"]] = where
        else:
            binds[str(where)] = {"bind": mount["mountPath"],
                                 "mode": "ro" if mount.get("readOnly") else "rw"}
    security = []
    if ctx.get("allowPrivilegeEscalation") is False:
        security.append("no-new-privileges:true")
    seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}
    if seccomp.get("type") == "Localhost":
        security.append("seccomp=" + (seccomp_root / seccomp["localhostProfile"]).read_text())
    elif seccomp.get("type") == "Unconfined":
        security.append("seccomp=unconfined")
    if ctx.get("procMount") == "Unmasked":
        security.append(UNMASKED)
    if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
        security.append("apparmor=unconfined")
    limits = (agent.get("resources") or {}).get("limits") or {}
    kwargs: dict[str, Any] = {
        "name": pod.name,
        "hostname": pod.name,
        "entrypoint": agent.get("command"),
        "command": agent.get("args") or [],
        "environment": pod.env(),
        "user": f"{pod_ctx.get('runAsUser', 0)}:{pod_ctx.get('runAsGroup', 0)}",
        "group_add": [str(gid)],
        "read_only": bool(ctx.get("readOnlyRootFilesystem")),
        "cap_drop": list((ctx.get("capabilities") or {}).get("drop", [])),
        "cap_add": list((ctx.get("capabilities") or {}).get("add", [])),
        "security_opt": security,
        "volumes": binds,
        "tmpfs": tmpfs,
        "init": bool(spec.get("shareProcessNamespace")),
        "stop_signal": "SIGTERM",
        "network": network,
        "labels": {"ccc-k8s-pod": pod.name},
    }
    if "memory" in limits:
        kwargs["mem_limit"] = _bytes(str(limits["memory"]))
    return kwargs


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity.removesuffix(suffix)) * factor
    return int(quantity)


def probe_argv(pod: Pod, probe: str) -> list[str]:
    """The exec command of the agent's ``startupProbe``/``livenessProbe``/``readinessProbe``."""
    return list(pod.agent[probe]["exec"]["command"])


def clear(scratch: Path) -> None:
    """Remove what :func:`docker_kwargs` wrote (a fresh pod gets fresh emptyDirs)."""
    shutil.rmtree(scratch, ignore_errors=True)
