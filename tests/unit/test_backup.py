"""Backups and restores on real repos with real agents: every ref back, checksums, pruning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from cluster.backup import BackupError, ChecksumMismatch, create_backup, load_settings, restore
from cluster.backup.manifest import BUNDLE, MANIFEST, SECRETS
from cluster.backup.restore import STATE_CONFIG
from cluster.state.checker import check
from cluster.state.gitcmd import list_refs, run_git
from cluster.state.localrefs import read_refs
from tests.helpers import commit_files, make_state, poll, task_doc, task_files

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
SECRET = "sk-ant-planted-0123456789abcdefSECRET"
HOSTS = """
agent-1:
  hostname: 192.0.2.10
  username: root
  data:
    specialties: [backend]
    state_repo: ssh://git@192.0.2.1/srv/state.git
"""


def fast() -> dict[str, float]:
    return {"fold_delay_seconds": 0.2, "skew_seconds": 0.2, "retry_backoff_seconds": 0.1}


def settings(repo: Path, dest: Path, **extra: Any) -> Any:
    return load_settings({"state": str(repo), "dest": dest, **extra}, environ={})


def published(procs: list[Any]) -> int:
    return sum(1 for p in procs for e in p.events() if e["event"] == "published")


def test_restore_mid_run_backup_then_every_task_ends_exactly_once(
        tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, fast())
    docs = [task_doc(f"t{i:02d}", command="sleep 0.5") for i in range(18)]
    commit_files(repo, task_files(docs), tmp_path / "person")
    ids = ["a0", "a1", "a2"]
    procs = [agents(repo, a, lease=3, heartbeat=0.5, poll_s=0.5) for a in ids]
    poll(lambda: published(procs) >= 3 and read_refs(repo, ["refs/claims"]), 60,
         "a few results and a claim in flight")
    taken = create_backup(settings(repo, tmp_path / "backups"))
    assert any(r.startswith("refs/claims/") for r in taken.refs), taken.refs
    assert {f"refs/agents/{a}" for a in ids} <= set(taken.refs)
    at_backup = published(procs)
    poll(lambda: published(procs) >= at_backup + 2, 60, "work done after the backup")
    for proc in procs:
        proc.stop()
    shutil.rmtree(repo)  # the disaster: everything since the backup is gone with it

    restored = restore(taken.path, repo)
    assert restored.manifest_checked
    assert list_refs(["refs/"], git_dir=repo) == taken.refs  # main, claims, agents exactly
    again = [agents(repo, a, lease=3, heartbeat=0.5, poll_s=0.5, exit_when_idle=True)
             for a in ids]
    for proc in again:
        assert proc.wait(180) == 0, proc.tail()
    report = check(repo)
    summary = report.summary()
    assert report.problems() == {}, report.problems()
    assert (summary["tasks"], summary["done"]) == (18, 18)
    assert summary["duplicated"] == summary["lost"] == summary["stale"] == 0


def test_a_backup_of_a_busy_repo_holds_every_ref_as_of_one_moment(tmp_path: Path) -> None:
    """Writers move refs all through the backup (heartbeats, renewals, folds do): every ref is
    in the bundle at a value it really held. ``git bundle create`` alone drops a ref that moved
    between its listing and its writing, main included, and the restore lacks it."""
    repo = make_state(tmp_path)
    tips = [run_git(["-c", "user.name=t", "-c", "user.email=t@example.invalid",
                     "commit-tree", "-m", f"tip {i}", EMPTY_TREE], git_dir=repo).stdout.strip()
            for i in range(2)]
    moving = [*(f"refs/claims/t{i:03d}" for i in range(60)), "refs/agents/a0", "refs/heads/main"]
    main = list_refs(["refs/heads/main"], git_dir=repo)["refs/heads/main"]
    run_git(["update-ref", "--stdin"], git_dir=repo, input_text="".join(
        f"update {ref} {tips[0]}\n" for ref in moving[:-1]))
    held = {ref: {tips[0]} for ref in moving[:-1]} | {"refs/heads/main": {main, *tips}}
    done = threading.Event()

    def move() -> None:  # every ref back and forth, as fast as git writes them
        turn = 0
        while not done.is_set():
            turn += 1
            run_git(["update-ref", "--stdin"], git_dir=repo, input_text="".join(
                f"update {ref} {tips[turn % 2]}\n" for ref in moving))
            held.update({ref: held[ref] | {tips[turn % 2]} for ref in moving})

    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    try:
        taken = [create_backup(settings(repo, tmp_path / "backups"), now=1.8e9 + n)
                 for n in range(4)]
    finally:
        done.set()
        mover.join(30)
    for outcome in taken:
        assert sorted(outcome.refs) == sorted(held), outcome.path
        assert all(outcome.refs[ref] in held[ref] for ref in held)


@pytest.fixture
def small_repo(tmp_path: Path) -> Path:
    repo = make_state(tmp_path)
    commit_files(repo, task_files([task_doc("one"), task_doc("two")]), tmp_path / "person")
    run_git(["update-ref", "refs/claims/one", list_refs(["refs/heads/main"], git_dir=repo)[
        "refs/heads/main"]], git_dir=repo)
    return repo


def test_manifest_lists_every_file_refs_version_and_the_secrets_statement(
        small_repo: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text(HOSTS)
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text("heartbeat_seconds: 5\nrunner: scratch\n")
    outcome = create_backup(settings(small_repo, tmp_path / "b", inventory=inventory,
                                     config=(agent_yaml,)))
    manifest = json.loads((outcome.path / MANIFEST).read_text())
    assert manifest["secrets"] == SECRETS
    assert manifest["tool"]["version"] and manifest["created_at"].endswith("Z")
    assert manifest["refs"] == list_refs(["refs/"], git_dir=small_repo)
    assert set(manifest["files"]) == {BUNDLE, "config/cluster.yaml", "config/agent.yaml",
                                      "inventory/hosts.yaml"}
    assert "refs/claims/one" in manifest["refs"]


@pytest.mark.parametrize("tamper", ["edit", "extra", "missing", "refs"])
def test_restore_refuses_a_tampered_backup(small_repo: Path, tmp_path: Path, tamper: str) -> None:
    outcome = create_backup(settings(small_repo, tmp_path / "b"))
    root = outcome.path
    if tamper == "edit":
        (root / "config" / "cluster.yaml").write_text("lease_seconds: 1\n")
    elif tamper == "extra":
        (root / "config" / "planted.yaml").write_text("x: 1\n")
    elif tamper == "missing":
        (root / "config" / "cluster.yaml").unlink()
    else:
        manifest = json.loads((root / MANIFEST).read_text())
        manifest["refs"]["refs/claims/two"] = "0" * 40
        (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ChecksumMismatch) as caught:
        restore(root, tmp_path / "restored.git")
    assert "config/cluster.yaml" in str(caught.value) or tamper in ("extra", "refs")
    assert not (tmp_path / "restored.git").exists()


def test_restore_from_tarball_and_bare_bundle_with_protocol_config(
        small_repo: Path, tmp_path: Path) -> None:
    outcome = create_backup(settings(small_repo, tmp_path / "b", tarball=True))
    assert outcome.path.name.endswith(".tar.gz") and outcome.path.is_file()
    target = restore(outcome.path, tmp_path / "r1.git").path
    assert list_refs(["refs/"], git_dir=target) == outcome.refs
    fresh = make_state(tmp_path / "fresh")  # exactly the config cluster.state.init sets
    config = ["config", "--local", "--list"]
    assert run_git(config, git_dir=target).stdout == run_git(config, git_dir=fresh).stdout
    for key, value in STATE_CONFIG:
        assert run_git(["config", key], git_dir=target).stdout.strip() == value
    bare = tmp_path / "loose.bundle"
    run_git(["bundle", "create", "--quiet", str(bare), "--all"], git_dir=small_repo)
    again = restore(bare, tmp_path / "r2.git")
    assert not again.manifest_checked and again.refs == outcome.refs


def test_restore_refuses_a_non_empty_target_without_force(
        small_repo: Path, tmp_path: Path) -> None:
    outcome = create_backup(settings(small_repo, tmp_path / "b"))
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(BackupError, match="--force"):
        restore(outcome.path, target)
    assert (target / "keep.txt").read_text() == "mine"
    restore(outcome.path, target, force=True)
    assert not (target / "keep.txt").exists()
    assert list_refs(["refs/"], git_dir=target) == outcome.refs


def test_pruning_by_age_and_by_count_never_touches_the_new_one_or_foreign_files(
        small_repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "b"
    dest.mkdir()
    now = 1_900_000_000.0  # 2030-03-17T17:46:40Z
    names = ["state-20300101T000000Z", "state-20300310T000000Z.tar.gz",  # 75 and 7 days old
             "state-20300315T000000Z", "state-20300316T000000Z", "state-20300316T000000Z-2"]
    for name in names:
        (dest / name).write_text("") if name.endswith(".tar.gz") else (dest / name).mkdir()
    (dest / "notes.txt").write_text("not a backup")
    (dest / "state-latest").mkdir()
    by_age = create_backup(settings(small_repo, dest, keep_days=30), now=now)
    assert [p.name for p in by_age.pruned] == ["state-20300101T000000Z"]
    by_count = create_backup(settings(small_repo, dest, keep_days=30, keep=3), now=now + 1)
    assert sorted(p.name for p in by_count.pruned) == [
        "state-20300310T000000Z.tar.gz", "state-20300315T000000Z", "state-20300316T000000Z"]
    left = sorted(p.name for p in dest.iterdir() if not p.name.startswith("."))
    assert left == ["notes.txt", "state-20300316T000000Z-2", "state-20300317T174640Z",
                    "state-20300317T174641Z", "state-latest"]
    # A clock that went backwards: the backup just written is the oldest, and still kept.
    past = create_backup(settings(small_repo, dest, keep_days=30, keep=1), now=now - 86400)
    assert past.path.exists() and past.path not in past.pruned
    assert sorted(p.name for p in dest.iterdir() if p.name.startswith("state-2")) == [
        "state-20300316T174640Z", "state-20300317T174641Z"]


def test_secrets_are_never_in_a_backup(small_repo: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text(HOSTS)
    for name in ("secrets.env", "id_ed25519"):  # an operator's files next to the inventory
        (inventory / name).write_text(f"ANTHROPIC_API_KEY={SECRET}\n")
        os.chmod(inventory / name, 0o600)
    dest = tmp_path / "b"
    outcome = create_backup(settings(small_repo, dest, inventory=inventory, tarball=True))
    unpacked = tmp_path / "unpacked"
    shutil.unpack_archive(outcome.path, unpacked)
    found = subprocess.run(["grep", "-r", "-a", "-l", SECRET, str(dest), str(unpacked)],
                           capture_output=True, text=True, check=False)
    assert found.returncode == 1, f"secret found in: {found.stdout}"
    repo = restore(outcome.path, tmp_path / "r.git").path
    objects = subprocess.run(["git", "--git-dir", str(repo), "cat-file", "--batch-all-objects",
                              "--batch"], capture_output=True, check=True).stdout
    assert SECRET.encode() not in objects
    leaky = tmp_path / "agent.yaml"
    leaky.write_text(f"runner: scratch\nanthropic_api_key: {SECRET}\n")
    with pytest.raises(BackupError, match="anthropic_api_key") as caught:
        create_backup(settings(small_repo, dest, config=(leaky,)))
    assert SECRET not in str(caught.value)
    assert len([p for p in dest.iterdir() if p.name.startswith(("state-", ".partial"))]) == 1


def test_a_repo_reached_by_any_other_url_is_mirrored_then_bundled_whole(
        small_repo: Path, tmp_path: Path) -> None:
    """https:// and the like: one mirror clone (its ref advertisement the moment the backup
    holds), bundled as it is. Told here by a file:// URL taken as such a URL."""
    from cluster.backup import bundle
    from cluster.backup.source import OtherUrl, write_bundle

    target = tmp_path / "other.bundle"
    write_bundle(OtherUrl(f"file://{small_repo}"), target)
    assert bundle.list_heads(target) == list_refs(["refs/"], git_dir=small_repo)
