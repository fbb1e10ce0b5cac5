"""The compose cluster for real: Compose v2 against this machine's engine, the agent image,
a state service over SSH, agents per specialty; scaled up and down while tasks run.

One project of its own (ccc-compose-test) and a state port of its own, so nothing else's
containers clash; everything comes down in a ``finally``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from cluster.compose import cluster
from cluster.compose.binary import ComposeError
from cluster.compose.workdir import prepare
from cluster.health.compose import check_compose
from cluster.health.model import FleetHealth
from cluster.state.checker import check
from cluster.state.records import Release
from cluster.state.remotewatch import DEFAULT_COMMAND
from cluster.state.session import DEFAULT_COMMAND as SESSION_COMMAND
from cluster.transport.openssh import ssh_options
from tests.helpers import ROOT, git, poll, task_doc

pytestmark = pytest.mark.integration
PROJECT = "ccc-compose-test"
BACKENDS = 3
# Fast for a test, gentle on two cores: 3 s heartbeats, a stop grace shorter than a slow task
# (an agent scaled away mid-task releases what it holds), folds after 1 s.
AGENT = {"stop_grace_seconds": 3, "heartbeat_seconds": 3.0, "poll_seconds": 2.0}
STATE = b"heartbeat_seconds: 2\nlease_seconds: 30\nfold_delay_seconds: 1\n"
TARGET = "ssh://root@state/srv/repos/web.git"
# Task code looking for its agent's connection to the state service (the socket that reads
# and writes the state repo as the agent): the attempt fails if it finds one.
SOCKET_HUNT = ("! ls -A /tmp /proc/1/root/tmp /var/tmp 2>/dev/null | grep -q ssh-cm "
               "&& ! find / -xdev -type s -name 'ssh-cm*' 2>/dev/null | grep -q .")
OPERATOR_UID = 1000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, token: str = "") -> tuple[int, bytes]:
    """The status and body of a GET (an HTTP error's too); no token, no Authorization."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _dashboard_agents(settings: cluster.ComposeSettings) -> set[str]:
    """The agent ids the dashboard's API lists (with the token): its node_details' node_id."""
    token = settings.work.serve_token.read_text().strip()
    status, body = _get(f"{settings.dashboard_url}api/cluster/status", token)
    assert status == 200, (status, body[:300])
    return {str(node["node_id"]) for node in json.loads(body)["node_details"]}


def _refs(repo: Path, prefix: str) -> set[str]:
    out = git(["--git-dir", str(repo), "for-each-ref", "--format=%(refname)", prefix], ROOT)
    return {line.removeprefix(prefix) for line in out.split()}


def _holding(repo: Path, agents: set[str]) -> str | None:
    """A slow task that one of ``agents`` holds, as its last heartbeat says, or None."""
    for agent in sorted(agents):
        beat = yaml.safe_load(git(["--git-dir", str(repo), "show",
                                   f"refs/agents/{agent}:agent.yaml"], ROOT))  # fmt: skip
        slow = [key for key in beat.get("holding") or () if "slow" in key]
        if slow:
            return str(slow[0])
    return None


def _release(image: str) -> str:
    """The release an agent image was built for (its tag: <release>-<base id>-<cli sha>), which
    the checkout's may have left behind while the test runs (others editing it)."""
    return image.rpartition(":")[2].rsplit("-", 2)[0]


def _healthy(settings: cluster.ComposeSettings, image: str) -> FleetHealth | None:
    fleet = check_compose(settings, expected=_release(image))
    return fleet if fleet.status == "healthy" else None


def _backends(settings: cluster.ComposeSettings, repo: Path) -> str:
    """What the backends say and hold, for a failure's message: their heartbeats, the claim
    refs, the last lines each logged."""
    beats = {agent: git(["--git-dir", str(repo), "show", f"refs/agents/{agent}:agent.yaml"],
                        ROOT) for agent in sorted(_refs(repo, "refs/agents/"))}  # fmt: skip
    claims = git(["--git-dir", str(repo), "for-each-ref", "refs/claims/"], ROOT)
    logs = cluster.compose(settings).run(["logs", "--no-color", "--tail", "40", "agent-backend"])
    return f"heartbeats {beats}\nclaims:\n{claims}\nbackend logs:\n{logs}"


def _health_line(settings: cluster.ComposeSettings, image: str) -> str:
    fleet = check_compose(settings, expected=_release(image))
    return f"a healthy compose fleet, got {fleet.verdict}: " + "; ".join(
        f"{h.name} {h.status} {[f.text for f in h.findings]}" for h in fleet.hosts)


def _target_repo(repos: Path, scratch: Path) -> None:
    """A bare repo with one commit where the state service serves it (/srv/repos/web.git)."""
    work = scratch / "web"
    git(["init", "-q", "-b", "main", str(work)], scratch)
    (work / "README.md").write_text("web\n")
    git(["add", "README.md"], work)
    git(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init"], work)
    git(["clone", "-q", "--bare", str(work), str(repos / "web.git")], scratch)
    subprocess.run(["chown", "-R", f"{OPERATOR_UID}:{OPERATOR_UID}", str(repos / "web.git")],
                   check=True, timeout=60)  # fmt: skip


def _submit(settings: cluster.ComposeSettings, docs: list[dict[str, object]],
            scratch: Path) -> None:
    """`claude-cluster task submit` from this host, through the operator's port and key."""
    paths = []
    for doc in docs:
        path = scratch / f"{doc['id']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths.append(str(path))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch),
           "GIT_SSH_COMMAND": settings.work.operator_ssh()}
    done = subprocess.run([sys.executable, "-m", "cluster", "task", "submit", "--state",
                           settings.state_url, *paths], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def _as_agent_key(settings: cluster.ComposeSettings,
                  command: str) -> subprocess.CompletedProcess[str]:
    """``command`` on the state service with a key restricted as the agents' is (the
    operator's: the same ``restrict``ed, git-shell-forced authorized_keys line)."""
    work = settings.work
    argv = ["ssh", *ssh_options(work.operator_key, work.operator_known_hosts), "-p",
            str(settings.state_port), "root@127.0.0.1", command]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=60, check=False)  # fmt: skip


def _only_git_and_the_watch(settings: cluster.ComposeSettings, repo: Path) -> None:
    """The watch the agents hear of main's moves from answers (main's commit, then gone with
    the session's stdin), and the state session (gone at once: no request); nothing else
    runs, however it is asked for."""
    done = _as_agent_key(settings, f"{DEFAULT_COMMAND} /srv/state.git")
    assert done.returncode == 0, done
    main = git(["--git-dir", str(repo), "rev-parse", "main"], ROOT).strip()
    assert done.stdout.split()[0] == main, done
    session = _as_agent_key(settings, f"{SESSION_COMMAND} /srv/state.git")
    assert session.returncode == 0 and session.stdout == "", session
    marker = "/tmp/ccc-escaped"
    for command in (f"touch {marker}", f"sh -c 'touch {marker}'", f"/bin/touch {marker}",
                    f"{DEFAULT_COMMAND} /srv/state.git; touch {marker}",
                    f"{DEFAULT_COMMAND} /srv/state.git $(touch {marker})",
                    f"{DEFAULT_COMMAND} --help", f"../{DEFAULT_COMMAND} /srv/state.git",
                    f"{SESSION_COMMAND} /srv/state.git; touch {marker}",
                    f"{SESSION_COMMAND} /srv/state.git $(touch {marker})",
                    f"{SESSION_COMMAND} --help", f"{SESSION_COMMAND} /srv/state.git /tmp",
                    f"../{SESSION_COMMAND} /srv/state.git",
                    "git-shell-commands/../../bin/touch /tmp/ccc-escaped"):  # fmt: skip
        refused = _as_agent_key(settings, command)
        assert refused.returncode != 0, (command, refused)
    listing = cluster.compose(settings).run(["exec", "-T", "state", "ls", "-a", "/tmp"])
    assert "ccc-escaped" not in listing, listing


def test_a_compose_cluster_scales_and_loses_no_work(docker_engine: None, tmp_path: Path) -> None:
    # Built once: a second build mid-test (others editing the checkout) would recreate them all.
    image = cluster.agent_image(ROOT)
    settings = cluster.ComposeSettings(ROOT, project=PROJECT, state_port=_free_port(),
                                       dashboard_port=_free_port(), image=image,
                                       work_dir=tmp_path / "work", agent=AGENT,
                                       state_settings=STATE)  # fmt: skip
    repo = settings.work.state_repo
    try:
        # An operator who is not root: the repos the state service serves are someone else's
        # to its root (git's "dubious ownership" check must not refuse them).
        prepare(settings.work.root, settings.state_port, AGENT, STATE)
        for path in (repo, settings.work.repos):
            subprocess.run(["chown", "-R", f"{OPERATOR_UID}:{OPERATOR_UID}", str(path)],
                           check=True, timeout=60)  # fmt: skip
        cluster.up(settings, {"agent-backend": BACKENDS})
        rows = cluster.containers(settings)
        assert [(r.state, r.health) for r in rows] == [("running", "healthy")] * len(rows), rows
        backends = {f"agent-backend-{n}" for n in range(1, BACKENDS + 1)}
        ids = backends | {f"agent-{s}-1" for s in ("frontend", "testing", "devops")}
        assert {r.name.removeprefix(f"{PROJECT}-") for r in rows} == ids | {"state-1",
                                                                             "dashboard-1"}
        poll(lambda: _refs(repo, "refs/agents/") == ids, 60,
             lambda: f"heartbeats of {sorted(ids)}, got {sorted(_refs(repo, 'refs/agents/'))}")

        # The agents hear of main's moves from the state service, through git-shell.
        def logs() -> str:
            return cluster.compose(settings).run(["logs", "--no-color", "agent-testing"])

        poll(lambda: "watch_live" in logs(), 60, lambda: f"agent-testing streaming: {logs()}")
        # ... over the one connection the container keeps (what the sandbox must hide below).
        def sockets() -> str:
            return cluster.compose(settings).run(["exec", "-T", "agent-devops", "ls", "-A",
                                                  "/tmp"])

        poll(lambda: "ssh-cm-" in sockets(), 60,
             lambda: f"agent-devops's ssh connection socket in its /tmp: {sockets()!r}")
        # The hunt a task runs below, run where no sandbox is: it finds the socket (and fails).
        with pytest.raises(ComposeError):
            cluster.compose(settings).run(["exec", "-T", "agent-devops", "sh", "-c",
                                           SOCKET_HUNT])
        _only_git_and_the_watch(settings, repo)

        # The dashboard (healthy: up --wait waited for it): /health is open, the API is not.
        assert _get(f"{settings.dashboard_url}health")[0] == 200
        assert _get(f"{settings.dashboard_url}api/cluster/status")[0] == 401
        poll(lambda: _dashboard_agents(settings) == ids, 60,
             lambda: f"the dashboard listing {sorted(ids)}, got "
                     f"{sorted(_dashboard_agents(settings))}")

        # invoke health --compose sees every replica by its agent id, healthy, on this release.
        fleet = poll(lambda: _healthy(settings, image), 60, lambda: _health_line(settings, image))
        assert {h.name for h in fleet.hosts} == ids, fleet.hosts
        assert {h.facts.probe.release for h in fleet.hosts if h.facts.probe} \
            == {_release(image)}, fleet.hosts
        assert fleet.state is not None and fleet.state.status == "healthy", fleet.state

        # A restarted replica comes back under its own id: no new heartbeat ref appears.
        cluster.compose(settings).run(["restart", "agent-frontend"])
        assert _refs(repo, "refs/agents/") == ids

        _target_repo(settings.work.repos, tmp_path)
        slow = [task_doc(f"slow-{n}", f"sleep 20 && echo {n} > slow-{n}.txt", repo=TARGET)
                for n in range(6)]  # fmt: skip
        quick = [task_doc(f"quick-{s}", f"echo {s} > {s}.txt", specialty=s, repo=TARGET)
                 for s in ("frontend", "testing")]  # fmt: skip
        quick.append(task_doc("quick-devops", f"echo devops > devops.txt && {SOCKET_HUNT}",
                              specialty="devops", repo=TARGET))
        _submit(settings, slow + quick, tmp_path)

        # Scale the backends down while one that goes holds a task: it goes back to the fleet.
        gone = backends - {"agent-backend-1"}
        held = poll(lambda: _holding(repo, gone), 120,
                    lambda: f"a slow task held by a backend that goes: {_backends(settings, repo)}")
        cluster.up(settings, {"agent-backend": 1}, wait=False)  # returns once they are gone
        left = [r.name for r in cluster.containers(settings) if r.service == "agent-backend"]
        assert left == [f"{PROJECT}-agent-backend-1"], left

        def finished() -> dict[str, object] | None:
            summary = check(repo).summary()
            return summary if summary["done"] == len(slow) + len(quick) else None

        summary = poll(finished, 300, lambda: f"every task done: {check(repo).summary()}",
                       interval=1.0)
        assert (summary["duplicated"], summary["lost"], summary["stale"]) == (0, 0, 0), summary
        assert summary["statuses"] == {"succeeded": len(slow) + len(quick)}, summary
        histories = check(repo).histories
        history = next(h for key, h in histories.items() if key in held).records.values()
        released = [r for r in history if isinstance(r, Release) and r.agent in gone]
        assert not any(r.counted for r in released), released  # SIGTERM: the attempt not burnt
        print(f"{held}: {[(type(r).__name__, r.agent) for r in history]}")
        assert cluster.state_status(settings) == 0  # claude-cluster status through the port

        # A stopped agent container: health names it, degraded, and the others stay healthy.
        # (Polled: on a loaded machine a live agent's heartbeat may be late for one reading.)
        cluster.compose(settings).run(["stop", "agent-devops"])

        def one_stopped() -> FleetHealth | None:
            fleet = check_compose(settings, expected=_release(image))
            judged = {h.name: h for h in fleet.hosts}
            stopped = judged["agent-devops-1"]
            others = [h.status for name, h in judged.items() if name != "agent-devops-1"]
            named = any(f.text == "container exited" for f in stopped.findings)
            return fleet if named and set(others) == {"healthy"} else None

        fleet = poll(one_stopped, 60, lambda: _health_line(settings, image))
        assert (fleet.status, fleet.exit_code) == ("degraded", 1), fleet.verdict
    finally:
        cluster.down(settings)
    assert cluster.containers(settings) == []
