"""Create a state repo: a bare repository with main holding the layout and settings."""

from __future__ import annotations

import time
from pathlib import Path

from cluster.errors import ClusterError
from cluster.state.gitcmd import run_git
from cluster.state.gitobj import ObjectStore, TreeEditor
from cluster.state.ids import MAIN

README = b"""# Claude Code Cluster state repo

- `tasks/<id>.yaml`: work to do; written by people (`claude-cluster task submit`).
- `archive/<xx>/<id>/`: finished tasks and their results; written by agents.
- `refs/claims/<id>`: tasks in flight; `refs/agents/<id>`: agent heartbeats.

The protocol: docs/state-protocol.md of Claude Code Cluster.
"""

SETTINGS = b"""# Repo-wide settings of this state repo (all optional).
# specialties: [ml, mobile]      # added to backend, frontend, testing, devops, docs, security, data
# lease_seconds: 60              # how long a claim lives without renewal
# heartbeat_seconds: 15          # how often agents renew leases and heartbeats
# fold_delay_seconds: 5          # how long finished tasks wait before being archived on main
"""


def init_state_repo(path: Path, settings: bytes = SETTINGS, hooks: Path | None = None) -> str:
    """Create the bare repo at ``path`` (which must not hold one yet); return main's commit."""
    if (path / "HEAD").exists():
        raise ClusterError(f"{path} already holds a git repository")
    if path.exists() and any(path.iterdir()):
        raise ClusterError(f"{path} exists and is not empty")
    run_git(["init", "--quiet", "--bare", "--initial-branch=main", str(path)])
    for key, value in (
        ("receive.denyNonFastForwards", "false"),  # leases are renewed by replacing commits
        ("receive.denyDeletes", "false"),  # folds delete claim refs
        ("core.logAllRefUpdates", "false"),  # reflogs would grow with every renewal
        ("gc.autoDetach", "true"),
    ):
        run_git(["config", key, value], git_dir=path)
    if hooks is not None:
        install_hooks(path, hooks)
    store = ObjectStore(path)
    try:
        editor = TreeEditor(store, None)
        editor.put("README.md", store.write_blob(README))
        editor.put("cluster.yaml", store.write_blob(settings))
        editor.put("tasks/.gitkeep", store.write_blob(b""))
        ident = "claude-cluster <claude-cluster@localhost>"
        commit = store.write_commit(editor.write(), (), ident, int(time.time()),
                                    "initialise the state repo")
    finally:
        store.close()
    run_git(["update-ref", MAIN, commit, ""], git_dir=path)
    return commit


def install_hooks(repo: Path, hooks: Path) -> list[str]:
    """Install the server hooks found in ``hooks`` with this interpreter recorded in them."""
    from cluster.hooks.install import SERVER_HOOKS, install_into

    return install_into(repo / "hooks", hooks, SERVER_HOOKS)
