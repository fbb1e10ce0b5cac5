"""Hostile tasks against the agent's own git, its pushes and its credentials: real TaskRunner
attempts (sandbox off, so that every plant really lands) on real remotes in tmp_path."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.config import SandboxConfig
from cluster.agent.executors.command import CommandExecutor
from cluster.agent.followup import PullForge
from cluster.agent.forge_github import GitHubForge
from cluster.agent.forge_local import LocalForge
from cluster.agent.repos import RepoPolicy
from cluster.agent.runner import AttemptReport
from cluster.agent.taskrunner import TaskRunner
from cluster.sandbox.sandboxes import default_sandboxes
from cluster.sandbox.seal import Sealer
from cluster.secret import Secret
from tests.clients import result_of
from tests.fakes import FakeServer, Request, Response
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.helpers import commit_files, git, make_state, task_doc, task_files
from tests.unit.test_forges import NO_THROTTLE
from tests.unit.test_taskrunner import FIXED, held, task
from tests.unit.test_workspace import FIX, make_remote, remote_sha

API_KEY = "sk-ant-api03-hostile-test-key-0123456789abcdef"
BRANCH = "cluster/fix-add"


def runner(tmp_path: Path, forge: PullForge | None = None, *, local: bool = True,
           secrets: tuple[Secret, ...] = ()) -> TaskRunner:  # fmt: skip
    home = tmp_path / "agent"
    off = Sealer(default_sandboxes(home, SandboxConfig(mode="off")))
    return TaskRunner(home, forge or LocalForge(home / "prs"), {"command": CommandExecutor()},
                      secrets=secrets, sealer=off, repos=RepoPolicy(allow_local=local))


def run(tmp_path: Path, spec: Any, **kwargs: Any) -> AttemptReport:
    return runner(tmp_path, **kwargs).run(held(spec), threading.Event())


# -- the agent's git runs nothing the task planted -----------------------------------------


class Bed:
    """What a hostile task plants, aimed at the agent's next git calls; ``markers`` fills up
    if any of them runs, ``other`` gets refs if a push is redirected."""

    def __init__(self, tmp_path: Path, remote: Path) -> None:
        self.markers = tmp_path / "markers"
        self.mark = tmp_path / "bin" / "mark"
        self.mark.parent.mkdir()
        self.mark.write_text(f'#!/bin/sh\nmkdir -p {self.markers}\ntouch "{self.markers}/$1"\n')
        self.mark.chmod(0o755)
        self.hooks = tmp_path / "evil-hooks"
        self.hooks.mkdir()
        for name in ("pre-commit", "post-commit", "pre-push", "reference-transaction",
                     "post-checkout", "pre-auto-gc", "post-index-change"):
            (self.hooks / name).write_text(f"#!/bin/sh\n{self.mark} hook-{name}\n")
            (self.hooks / name).chmod(0o755)
        self.other = tmp_path / "other.git"
        git(["init", "-q", "--bare", str(self.other)], tmp_path)
        self.evil = tmp_path / "evil.git"  # a git dir for .git files, links and commondir
        git(["init", "-q", "--bare", str(self.evil)], tmp_path)
        self.config = self._config(remote)
        with (self.evil / "config").open("a") as handle:
            handle.write(self.config)
        self.planted = tmp_path / "planted"

    def _config(self, remote: Path) -> str:
        mark = self.mark
        return f"""
[core]
\tfsmonitor = {mark} fsmonitor
\thooksPath = {self.hooks}
\tsshCommand = {mark} ssh
\tattributesFile = {self.hooks}/attributes
[filter "evil"]
\tclean = {mark} clean; cat
\tsmudge = {mark} smudge; cat
\trequired = true
[diff "evil"]
\ttextconv = {mark} textconv; cat
[remote "origin"]
\turl = {self.other}
\tpushurl = ext::{mark}% ext
\treceivepack = {mark} receivepack; git-receive-pack
\tuploadpack = {mark} uploadpack; git-upload-pack
[url "{self.other}"]
\tinsteadOf = {remote}
\tpushInsteadOf = {remote}
[protocol]
\tallow = always
[commit]
\tgpgSign = true
[gpg]
\tprogram = {mark}
[credential]
\thelper = !{mark} credential
[maintenance]
\tauto = true
"""

    def script(self, case: str, home: Path, xdg: Path) -> Path:
        """The shell script the task's command and its verify both run (verify runs after
        the agent's commit, right before its push)."""
        plants = {
            "dot-git": ['mkdir -p .git/hooks .git/info', 'printf %s "$EVIL" > .git/config',
                        f'cp {self.hooks}/* .git/hooks/',
                        'echo "* filter=evil" > .git/info/attributes'],
            "commondir": ['mkdir -p .git', f'echo {self.evil} > .git/commondir',
                          'echo "ref: refs/heads/main" > .git/HEAD'],
            "gitfile": ['rm -rf .git', f'echo "gitdir: {self.evil}" > .git'],
            "symlink": ['rm -rf .git', f'ln -s {self.evil} .git'],
            "home": ['printf %s "$EVIL" > "$HOME/.gitconfig"', 'printf %s "$EVIL" > .gitconfig',
                     f'printf %s "$EVIL" > {home}/.gitconfig', f'mkdir -p {xdg}/git',
                     f'printf %s "$EVIL" > {xdg}/git/config',
                     f'echo "* filter=evil" > {xdg}/git/attributes'],
        }[case]
        lines = ["set -e", f"EVIL=$(cat {self.evil}/config)", *plants,
                 'echo "* filter=evil diff=evil" > .gitattributes', f"touch {self.planted}"]
        path = self.mark.parent / f"attack-{case}.sh"
        path.write_text("\n".join(lines) + "\n")
        return path

    def fired(self) -> list[str]:
        return sorted(p.name for p in self.markers.iterdir()) if self.markers.exists() else []


@pytest.mark.parametrize("case", ["dot-git", "commondir", "gitfile", "symlink", "home"])
def test_planted_git_settings_never_run(tmp_path: Path, case: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    remote = make_remote(tmp_path)
    bed = Bed(tmp_path, remote)
    home, xdg = tmp_path / "agent-home", tmp_path / "agent-xdg"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the agent's own HOME and XDG config
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    attack = bed.script(case, home, xdg)
    spec = task(remote, f"bash {attack} && {FIX}", verify=f"bash {attack} && python3 test_calc.py")
    report = run(tmp_path, spec)
    assert bed.planted.exists(), "the attack did not run"
    assert bed.fired() == [], f"agent git ran what the task planted: {bed.fired()}"
    assert (report.status, report.reason) == ("succeeded", "")
    assert git(["show", f"{BRANCH}:calc.py"], remote).strip() == FIXED.strip()
    assert git(["for-each-ref"], bed.other).strip() == ""  # nothing went to another remote


# -- only the work is pushed ---------------------------------------------------------------


def test_the_clis_files_and_caches_are_never_pushed(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    junk = ("__pycache__/calc.cpython-311.pyc", ".pytest_cache/v/cache/nodeids", ".claude.json",
            ".claude.json.backup", ".claude/projects/x.jsonl", ".claude/todos/t.json", ".coverage")
    make = "; ".join(f"mkdir -p $(dirname {name}) && echo junk > {name}" for name in junk)
    report = run(tmp_path, task(remote, f"{make}; {FIX}"))
    assert report.status == "succeeded", report.reason
    tree = git(["ls-tree", "-r", "--name-only", BRANCH], remote).split()
    assert tree == ["calc.py", "test_calc.py"]
    # These runs are unsealed: every line the agent wrote into the log says so, from the first.
    ours = [line for line in Path(report.outcome.log or "").read_text().splitlines()
            if line.startswith("[cluster]")]
    assert ours and all(line.startswith("[cluster] [unsealed] ") for line in ours), ours


def _ghp() -> str:
    """Shell that builds a GitHub-shaped token without writing it out (logs show commands)."""
    return 't=gh; t="${t}p_$(printf "Zq7%.0s" $(seq 12))"'


SECRET_CHANGES = {
    "api-key": (f"echo 'KEY = \"{API_KEY}\"' > notes.txt", "notes.txt"),
    "github-token": (f"{_ghp()}; echo \"token: $t\" > deploy/settings.yaml",
                     "deploy/settings.yaml"),
    "binary": (f"printf 'PK\\000\\001{API_KEY}\\377\\000' > data.bin", "data.bin"),
}


@pytest.mark.parametrize("kind", sorted(SECRET_CHANGES))
@pytest.mark.parametrize("verify", ["python3 test_calc.py", "exit 3"])
def test_a_change_holding_a_secret_is_never_pushed(tmp_path: Path, kind: str,
                                                   verify: str) -> None:  # fmt: skip
    """Both pushes are scanned: the normal one and the one of unfinished work (verify failed)."""
    remote = make_remote(tmp_path)
    plant, where = SECRET_CHANGES[kind]
    spec = task(remote, f"mkdir -p deploy; {plant}; {FIX}", verify=verify)
    report = run(tmp_path, spec, secrets=(Secret(API_KEY),))
    assert (report.status, report.reason) == ("failed", f"secret in changes: {where}")
    assert remote_sha(remote, BRANCH) is None
    log = Path(str(report.outcome.log)).read_text()
    assert "secret in changes" in log
    for text in (log, report.reason, report.outcome.summary, str(report.outcome)):
        assert API_KEY not in text and "ghp_Zq7" not in text


# -- credentials go only where they belong -------------------------------------------------


class Recorder(FakeServer):
    """Any other HTTP host: records what reaches it, serves nothing."""

    def handle(self, request: Request) -> Response:
        return Response(404)


def test_github_token_goes_to_the_forges_host_only(tmp_path: Path, github_api: FakeGitHub) -> None:
    forge = GitHubForge(Secret(DEFAULT_TOKEN), base_url=github_api.api_url, **NO_THROTTLE)
    github_api.add_repo("octo/calc")
    with Recorder() as other:
        for repo in (f"{other.url}/x/y.git", f"{other.url}/x/y", "https://example.invalid/x/y"):
            report = run(tmp_path, task(repo), forge=forge, local=False)
            assert report.status == "invalid" and "not on this agent's forge" in report.reason
        assert other.requests == []  # not a request, let alone an Authorization header
    assert not (tmp_path / "agent" / "workspaces").exists()
    # owner/name still clones from the forge's own host, token attached (the stand-in serves
    # no git, so the attempt fails there: what matters is the header it received).
    report = run(tmp_path, task("octo/calc"), forge=forge, local=False)
    assert report.status == "failed" and report.reason.startswith("workspace:")
    basic = base64.b64encode(f"x-access-token:{DEFAULT_TOKEN}".encode()).decode()
    git_requests = [r for r in github_api.requests if r.path.startswith("/octo/calc.git/")]
    assert git_requests and {r.headers.get("authorization") for r in git_requests} == {
        f"Basic {basic}"}


@pytest.mark.parametrize("repo", ["ext::sh -c touch% {marker}", "ext::sh -c 'touch {marker}'",
                                  "fd::3", "FD::0,1", "--upload-pack=touch {marker}",
                                  "git://127.0.0.1:1/x.git", "http://example.invalid/x.git"])
def test_remote_helpers_and_other_transports_are_invalid(tmp_path: Path, repo: str) -> None:
    marker = tmp_path / "ran"
    report = run(tmp_path, task(repo.format(marker=marker)))
    assert report.status == "invalid" and report.reason.startswith("repo "), report.reason
    assert not marker.exists() and not (tmp_path / "agent" / "workspaces").exists()


def test_local_repos_need_allow_local_repos(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    for repo in (str(remote), remote.as_uri(), f"./{remote.name}"):
        report = run(tmp_path, task(repo), local=False)
        assert report.status == "invalid", repo
        assert "needs allow_local_repos" in report.reason
    assert not (tmp_path / "agent" / "workspaces").exists()
    assert run(tmp_path, task(remote)).status == "succeeded"  # with the setting


def test_a_real_agent_without_allow_local_repos_refuses_a_path(tmp_path: Path,
                                                               agents: Any) -> None:
    state, remote = make_state(tmp_path, {"fold_delay_seconds": 0.2}), make_remote(tmp_path)
    doc = task_doc("local-repo", command=FIX, repo=str(remote))
    commit_files(state, task_files([doc]), tmp_path / "person")
    agent = agents(state, "strict", runner="repo", exit_when_idle=True, allow_local=False,
                   extra=["--pull-request-dir", str(tmp_path / "prs")])
    assert agent.wait(120) == 0, agent.tail()
    result = result_of(state, tmp_path, "local-repo")
    assert result is not None and result.status == "invalid"
    assert "needs allow_local_repos" in (result.reason or "")
    assert remote_sha(remote, "cluster/local-repo") is None
