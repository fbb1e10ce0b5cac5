"""Workspaces: real clones of bare remotes in tmp_path, the stable branch, leased pushes, auth,
the git directory out of the work tree's reach."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.agent.workspace import NEVER_PUSHED, PushRejected, Workspaces, auth_config, prune
from cluster.errors import GitError
from cluster.secret import Secret
from tests.fakes import FakeServer, Request, Response
from tests.fakes.git_http import http_backend, unauthorized
from tests.helpers import git

TOKEN = "ghp_workspace_test_token_0123456789"
BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\nassert add(2, 3) == 5, add(2, 3)\nprint('calc ok')\n"
FIX = "sed -i 's/a - b/a + b/' calc.py"
VERIFY = "python3 test_calc.py"


def make_remote(tmp_path: Path, name: str = "target") -> Path:
    """A bare remote whose main holds a tiny module with a bug and a test that catches it."""
    seed = tmp_path / f"{name}-seed"
    seed.mkdir()
    git(["init", "-q", "-b", "main"], seed)
    (seed / "calc.py").write_text(BUGGY)
    (seed / "test_calc.py").write_text(TEST)
    git(["add", "-A"], seed)
    git(["-c", "user.name=seed", "-c", "user.email=seed@x", "commit", "-q", "-m", "seed"], seed)
    bare = tmp_path / f"{name}.git"
    git(["clone", "-q", "--bare", str(seed), str(bare)], tmp_path)
    return bare


def remote_sha(bare: Path, ref: str) -> str | None:
    out = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=bare,
                         capture_output=True, text=True)
    return out.stdout.strip() or None


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


def test_new_branch_from_base_commit_and_push(tmp_path: Path, remote: Path) -> None:
    spaces = Workspaces(tmp_path / "work")
    ws = spaces.prepare(str(remote), "t1", 1, "main")
    assert ws.path == tmp_path / "work" / "workspaces" / "t1-a1" / "tree"
    assert ws.git_dir == tmp_path / "work" / "workspaces" / "t1-a1" / "git"
    assert not (ws.path / ".git").exists()
    assert ws.branch == "cluster/t1" and ws.remote_head is None and not ws.resumed
    assert ws.start == remote_sha(remote, "main")
    assert spaces.commit(ws, "nothing").changed is False
    assert not spaces.has_work(ws)
    (ws.path / "calc.py").write_text(BUGGY.replace("-", "+"))
    commit = spaces.commit(ws, "Fix add\n\nTask: t1 (attempt 1)")
    assert commit.changed and spaces.has_work(ws)
    assert spaces.push(ws) == commit.head == remote_sha(remote, "refs/heads/cluster/t1")
    message = git(["log", "-1", "--format=%an <%ae>%n%B", "cluster/t1"], remote)
    assert message.startswith("claude-cluster <claude-cluster@localhost>\nFix add")
    assert "Task: t1 (attempt 1)" in message
    spaces.remove(ws)
    assert not ws.root.exists()


def test_retry_resumes_the_branch_and_commits_on_top(tmp_path: Path, remote: Path) -> None:
    spaces = Workspaces(tmp_path / "work")
    first = spaces.prepare(str(remote), "t1", 1, "main")
    (first.path / "calc.py").write_text(BUGGY.replace("-", "+"))
    one = spaces.commit(first, "attempt 1").head
    spaces.push(first)
    second = spaces.prepare(str(remote), "t1", 2, "main")
    assert second.resumed and second.start == one == second.remote_head
    assert (second.path / "calc.py").read_text() == BUGGY.replace("-", "+")
    (second.path / "NOTES").write_text("more\n")
    two = spaces.commit(second, "attempt 2").head
    assert spaces.push(second) == two == remote_sha(remote, "refs/heads/cluster/t1")
    assert git(["rev-parse", f"{two}^"], remote).strip() == one


def test_push_is_leased_on_the_branch_it_read(tmp_path: Path, remote: Path) -> None:
    spaces = Workspaces(tmp_path / "work")
    first = spaces.prepare(str(remote), "t1", 1, "main")
    (first.path / "a").write_text("a\n")
    spaces.commit(first, "a")
    spaces.push(first)
    late = spaces.prepare(str(remote), "t1", 2, "main")
    rival = spaces.prepare(str(remote), "t1", 3, "main")
    (rival.path / "b").write_text("b\n")
    moved = spaces.commit(rival, "b").head
    spaces.push(rival)
    (late.path / "c").write_text("c\n")
    spaces.commit(late, "c")
    with pytest.raises(PushRejected, match="rejected: the branch moved"):
        spaces.push(late)
    assert remote_sha(remote, "refs/heads/cluster/t1") == moved


def test_missing_base_and_bad_remote_are_clear(tmp_path: Path, remote: Path) -> None:
    spaces = Workspaces(tmp_path / "work")
    with pytest.raises(GitError, match="ls-remote"):
        spaces.prepare(str(tmp_path / "nowhere.git"), "t1", 1, "main")
    with pytest.raises(Exception, match="base branch 'develop' not found"):
        spaces.prepare(str(remote), "t1", 1, "develop")


def test_a_dot_git_in_the_tree_is_never_read(tmp_path: Path, remote: Path) -> None:
    spaces = Workspaces(tmp_path / "work")
    ws = spaces.prepare(str(remote), "t1", 1, "main")
    ours = (ws.git_dir / "config").read_bytes()
    marker = tmp_path / "filter-ran"
    (ws.path / ".git").mkdir()
    (ws.path / ".git" / "config").write_text(
        f'[filter "evil"]\n\tclean = touch {marker}; cat\n[core]\n\tfsmonitor = touch {marker}\n')
    (ws.path / ".gitattributes").write_text("* filter=evil\n")
    (ws.path / "x.txt").write_text("x\n")
    assert spaces.commit(ws, "x").changed
    assert not marker.exists() and (ws.git_dir / "config").read_bytes() == ours
    tree = git(["ls-tree", "-r", "--name-only", spaces.push(ws)], remote).split()
    assert ".git/config" not in tree and "x.txt" in tree


def test_a_planted_submodule_git_dir_is_never_run(tmp_path: Path, remote: Path) -> None:
    """A gitlink whose directory holds a hostile .git: ``add -A`` would run ``git status``
    there (and its clean filter) unless the agent pins gitlinks."""
    spaces = Workspaces(tmp_path / "work")
    first = spaces.prepare(str(remote), "t1", 1, "main")
    sub = first.path / "sub"
    sub.mkdir()
    git(["init", "-q"], sub)
    (sub / "f").write_text("x\n")
    git(["add", "f"], sub)
    git(["-c", "user.name=s", "-c", "user.email=s@x", "commit", "-q", "-m", "s"], sub)
    spaces.commit(first, "gitlink")
    marker = tmp_path / "sub-filter-ran"
    with (sub / ".git" / "config").open("a") as config:
        config.write(f'[filter "evil"]\n\tclean = touch {marker}; cat\n')
    (sub / ".git" / "info").mkdir(exist_ok=True)
    (sub / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    os.utime(sub / "f", (1_000_000, 1_000_000))  # stat-dirty: status would re-hash it
    (first.path / "y.txt").write_text("y\n")
    assert spaces.commit(first, "more").changed
    assert not marker.exists()


def test_never_pushed_files_stay_out(tmp_path: Path, remote: Path) -> None:
    spaces = Workspaces(tmp_path / "work", ignore=["*.log", "build/\ndist/"])
    ws = spaces.prepare(str(remote), "t1", 1, "main")
    exclude = (ws.git_dir / "info" / "exclude").read_text().splitlines()
    assert set(NEVER_PUSHED) | {"*.log", "build/", "dist/"} <= set(exclude)
    for name in (".claude.json", ".claude/projects/x.jsonl", "__pycache__/a.pyc", "pkg/b.pyc",
                 ".pytest_cache/v", "run.log", "build/out", ".claude/settings.local.json"):
        (ws.path / name).parent.mkdir(parents=True, exist_ok=True)
        (ws.path / name).write_text("junk\n")
    (ws.path / ".claude" / "settings.json").write_text("{}\n")  # the repo's own: pushed
    (ws.path / "calc.py").write_text(BUGGY.replace("-", "+"))
    head = spaces.push(ws) if spaces.commit(ws, "fix").changed else ""
    tree = git(["ls-tree", "-r", "--name-only", head], remote).split()
    assert tree == [".claude/settings.json", "calc.py", "test_calc.py"]


def test_shallow_fetches_still_resume_and_push(tmp_path: Path, remote: Path) -> None:
    spaces = Workspaces(tmp_path / "work", depth=1)
    url = remote.as_uri()
    first = spaces.prepare(url, "t1", 1, "main")
    assert (first.git_dir / "shallow").exists()
    (first.path / "a").write_text("a\n")
    one = spaces.commit(first, "a").head
    spaces.push(first)
    second = spaces.prepare(url, "t1", 2, "main")
    (second.path / "b").write_text("b\n")
    two = spaces.commit(second, "b").head
    assert spaces.push(second) == two
    assert git(["rev-parse", f"{two}^"], remote).strip() == one


def test_prune_removes_only_old_workspaces(tmp_path: Path) -> None:
    root = tmp_path / "work" / "workspaces"
    old, new = root / "t1-a1", root / "t2-a1"
    for path in (old, new):
        (path / "tree").mkdir(parents=True)
    os.utime(old, (1_000_000, 1_000_000))
    assert prune(root, 1.0) == [old]
    assert new.exists() and not old.exists()
    assert Workspaces(tmp_path / "work").prune(1.0) == []
    assert prune(tmp_path / "absent", 1.0) == []


# -- the token over smart HTTP ------------------------------------------------------------


class _GitHTTP(FakeServer):
    """git http-backend (tests/fakes/git_http.py) behind a check of the Authorization header;
    records each request's header."""

    def __init__(self, root: Path, expected: str) -> None:
        super().__init__()
        self.root, self.expected = root, expected
        self.seen_headers: list[str] = []

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def handle(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        self.seen_headers.append(auth)
        if auth != self.expected:
            return unauthorized()
        return http_backend(self.root, request.path, request)


@pytest.fixture
def git_http(tmp_path: Path) -> Iterator[_GitHTTP]:
    header = auth_config("http://127.0.0.1/", Secret(TOKEN), "127.0.0.1")[0][1]
    with _GitHTTP(tmp_path, header.removeprefix("Authorization: ")) as server:
        yield server


def test_token_goes_in_a_header_never_into_config(
    tmp_path: Path, remote: Path, git_http: _GitHTTP
) -> None:
    host = f"127.0.0.1:{git_http.port}"
    url = f"http://{host}/{remote.name}"
    spaces = Workspaces(tmp_path / "work")
    ws = spaces.prepare(url, "t1", 1, "main", token=Secret(TOKEN), token_host=host)
    (ws.path / "calc.py").write_text(BUGGY.replace("-", "+"))
    head = spaces.commit(ws, "fix").head
    assert spaces.push(ws) == head == remote_sha(remote, "refs/heads/cluster/t1")
    for path in ws.root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert git_http.seen_headers and all(h == git_http.expected for h in git_http.seen_headers)


def test_wrong_or_missing_token_fails_fast_and_masked(
    tmp_path: Path, remote: Path, git_http: _GitHTTP
) -> None:
    host = f"127.0.0.1:{git_http.port}"
    url = f"http://{host}/{remote.name}"
    spaces = Workspaces(tmp_path / "work")
    with pytest.raises(GitError) as caught:
        spaces.prepare(url, "t1", 1, "main")  # no prompt: fails instead of waiting for input
    wrong = "ghp_wrong_token_abcdefghijkl"
    with pytest.raises(GitError) as second:
        spaces.prepare(url, "t1", 2, "main", token=Secret(wrong), token_host=host)
    assert wrong not in str(second.value) and TOKEN not in str(caught.value)


def test_token_goes_only_to_the_forges_host_over_https_or_loopback() -> None:
    token = Secret(TOKEN)
    assert auth_config("http://example.com/x.git", token, "example.com") == []
    assert auth_config("/srv/x.git", token, "github.com") == []
    assert auth_config("https://evil.example/o/r.git", token, "github.com") == []
    assert auth_config("https://github.com/o/r.git", token, None) == []
    assert auth_config("https://x:y@github.com/o/r.git", token, "github.com") == []
    pairs = dict(auth_config("https://github.com/o/r.git", token, "github.com"))
    assert "Authorization: Basic " in pairs["http.https://github.com/.extraHeader"]
    assert pairs["http.followRedirects"] == "false"
    assert TOKEN not in str(pairs)  # base64, and never in a URL


def test_the_token_never_reaches_another_host(
    tmp_path: Path, remote: Path, git_http: _GitHTTP
) -> None:
    url = f"http://127.0.0.1:{git_http.port}/{remote.name}"
    spaces = Workspaces(tmp_path / "work")
    with pytest.raises(GitError):
        spaces.prepare(url, "t1", 1, "main", token=Secret(TOKEN), token_host="github.com")
    assert git_http.seen_headers and set(git_http.seen_headers) == {""}


def test_git_itself_refuses_remote_helpers(tmp_path: Path) -> None:
    """Below the repo check (cluster.agent.repos), the sealed git allows no ext:: or fd::."""
    marker = tmp_path / "ext-ran"
    spaces = Workspaces(tmp_path / "work")
    for url in (f"ext::sh -c touch% {marker}", "fd::0", f"--upload-pack=touch {marker}"):
        with pytest.raises(GitError):
            spaces.prepare(url, "t1", 1, "main")
    assert not marker.exists()
