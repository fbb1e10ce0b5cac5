"""The read-only probe health runs on a host (one `python3 -c`), and parsing what it prints."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from cluster.errors import HostError
from cluster.health.model import HostProbe
from cluster.units import layout

Run = Callable[[list[str]], tuple[int, str, str]]
PREFIX = "claude_cluster_"
# stdlib only, Python 3.6+. The metrics are fetched here so that they ride the same connection.
PROBE = r"""
import json, os, shutil, subprocess, sys, urllib.request
a = json.loads(sys.argv[1])
def sh(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           universal_newlines=True, timeout=10)
        return p.returncode, p.stdout
    except (OSError, subprocess.SubprocessError):
        return -1, ""
out = {"restarts": 0}
if a["runtime"] == "inside":
    out["service"] = "running"  # run in the agent's own container: the engine tells the rest
elif a["runtime"] == "container":
    code, text = sh(["docker", "inspect", "-f", "{{.State.Status}} {{.RestartCount}}",
                     a["container"]])
    seen = text.split() if code == 0 else []
    out["service"] = seen[0] if seen else "not-installed"
    out["restarts"] = int(seen[1]) if len(seen) > 1 else 0
else:
    code, text = sh(["systemctl", "show", a["unit"], "-p", "ActiveState,LoadState,NRestarts"])
    kv = dict(l.split("=", 1) for l in text.splitlines() if "=" in l)
    out["service"] = kv.get("ActiveState") or "unknown"
    if kv.get("LoadState") == "not-found":
        out["service"] = "not-installed"
    out["restarts"] = int(kv.get("NRestarts") or 0)
def executors(path):
    # The agent.yaml deploy wrote (yaml.safe_dump, block style): its `executors:` list.
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found, inside = [], False
    for line in lines:
        if line.startswith("executors:"):
            rest, inside = line[len("executors:"):].strip(), True
            if rest.startswith("["):
                found += [w.strip(" '\"") for w in rest.strip("[]").split(",") if w.strip()]
                inside = False
        elif inside and line.startswith("- "):
            found.append(line[2:].strip(" '\""))
        else:
            inside = False
    return found
used = executors(a["config"])
# The Claude Code CLI the agent would run: None when none of its agents uses claude-code (or
# it cannot be told and there is none), "" when it should be there and does not answer.
out["claude_code"] = None
if used is None or "claude-code" in used:
    if a["runtime"] == "container":
        code, text = sh(["docker", "exec", a["container"], "claude", "--version"])
    else:
        found = shutil.which("claude", path=a["agent_path"])
        code, text = sh([found, "--version"]) if found else (-1, "")
    if code == 0 and text.split():
        out["claude_code"] = text.split()[0]
    elif used is not None:
        out["claude_code"] = ""
cur = a["current"]
out["release"] = os.path.basename(os.readlink(cur).rstrip("/")) if os.path.islink(cur) else None
p = a["base"]
while not os.path.exists(p):
    p = os.path.dirname(p)
st = os.statvfs(p)
out["disk_free"], out["disk_total"] = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
mem = {}
with open("/proc/meminfo") as f:
    for line in f:
        key, _, rest = line.partition(":")
        mem[key] = int(rest.split()[0]) * 1024
out["mem_total"], out["mem_available"] = mem.get("MemTotal", 0), mem.get("MemAvailable", 0)
out["load1"], out["cpus"] = os.getloadavg()[0], len(os.sched_getaffinity(0))
if a["metrics_port"]:
    url = "http://127.0.0.1:%d/metrics" % a["metrics_port"]
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            out["metrics_text"] = r.read(1 << 20).decode("utf-8", "replace")
    except Exception as e:
        out["metrics_error"] = "%s: %s" % (url, e)
print(json.dumps(out))
"""


def probe_argv(runtime: str, metrics_port: int | None, agent: str,
               paths: Mapping[str, str] | None = None) -> list[str]:
    """The probe's command line. ``runtime`` ``inside``: it runs in the agent's container
    (Compose), where ``paths`` name the image's own layout (base, config, agent_path)."""
    args: dict[str, object] = {
        "runtime": runtime,
        "unit": layout.UNIT_NAME,
        "container": layout.container_name(agent),
        "current": str(layout.CURRENT),
        "base": str(layout.BASE),
        "config": str(layout.AGENT_CONFIG),
        "agent_path": layout.AGENT_PATH,
        "metrics_port": metrics_port,
        **(paths or {}),
    }
    return ["python3", "-c", PROBE, json.dumps(args)]


def run_probe(run: Run, host: str, runtime: str, metrics_port: int | None,
              paths: Mapping[str, str] | None = None) -> HostProbe:
    """Run the probe through ``run``; HostError when it fails or prints something else."""
    code, out, err = run(probe_argv(runtime, metrics_port, host, paths))
    if code != 0:
        tail = " | ".join(err.strip().splitlines()[-3:]) or "(no stderr)"
        raise HostError(host, f"health probe exited {code}: {tail}")
    try:
        seen = json.loads(out)
        text = seen.pop("metrics_text", None)
        metrics = parse_metrics(text) if text is not None else None
        return HostProbe(metrics=metrics, **seen)
    except (ValueError, TypeError) as exc:
        raise HostError(host, f"health probe printed something unexpected: {exc}") from exc


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> sample name (prefix dropped) -> value summed over label sets."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(PREFIX) or sample.name.endswith(("_bucket", "_created")):
                continue
            name = sample.name.removeprefix(PREFIX)
            totals[name] = totals.get(name, 0.0) + float(sample.value)
    return totals
