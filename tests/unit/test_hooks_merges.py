"""Merges on main: only folds, and a fold only archives (issue #13). Real bare repos, the real
installed pre-receive hook, real pushes through file://; a control repo without the hook shows
what each refused push would have done."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cluster.state.client import StateClient
from cluster.state.gitcmd import list_refs
from cluster.state.ids import archive_path
from cluster.state.init import init_state_repo
from tests.helpers import ROOT, git, main_of
from tests.unit.test_hooks import (
    SETTINGS,
    Person,
    accepted,
    claimed,
    refused,
    result,
    task_yaml,
)

MAIN = "refs/heads/main"


def make_repo(tmp_path: Path, name: str, hooked: bool = True) -> tuple[Path, Person]:
    repo = tmp_path / f"{name}.git"
    init_state_repo(repo, settings=SETTINGS, hooks=ROOT / "hooks" if hooked else None)
    assert (repo / "hooks" / "pre-receive").exists() == hooked
    return repo, Person(f"file://{repo}", tmp_path / f"{name}-person")


def tree_names(repo: Path, rev: str = "main") -> list[str]:
    return git(["--git-dir", str(repo), "ls-tree", "-r", "--name-only", "-z", rev],
               ROOT).split("\0")[:-1]


def finished(repo: Path, tmp_path: Path, person: Person, task_id: str = "t1",
             name: str = "agent-a") -> tuple[StateClient, str]:
    """Submit ``task_id``, have an agent claim it and write its result; the claim tip."""
    client, held = claimed(repo, tmp_path, person, task_id, name)
    assert client.finish(held, result(held, name))
    return client, list_refs([f"refs/claims/{task_id}"], git_dir=repo)[f"refs/claims/{task_id}"]


def folded(repo: Path, tmp_path: Path, person: Person) -> tuple[str, str]:
    """A task submitted, claimed, finished and folded by the project's own client: main before
    the fold and the fold commit."""
    client, _ = finished(repo, tmp_path, person)
    before = main_of(repo)
    assert client.fold(client.snapshot(), 10) == 1
    client.close()
    fold = main_of(repo)
    assert git(["--git-dir", str(repo), "rev-parse", f"{fold}^1"], ROOT).strip() == before
    assert f"{archive_path('t1')}/result.yaml" in tree_names(repo)
    assert "tasks/t1.yaml" not in tree_names(repo)
    return before, fold


def old_tree_merge(person: Person, old: str) -> str:
    """A merge commit on top of main whose second parent is ``old`` and whose tree is old's."""
    git(["fetch", "--quiet", "origin"], person.work)
    return git(["commit-tree", f"{old}^{{tree}}", "-p", "origin/main", "-p", old, "-m",
                "merge an old main"], person.work).strip()


def hand_fold(person: Person, key: str, tip: str, extra: dict[str, str | None] | None = None,
              task_name: str = "task.yaml", result_names: tuple[str, ...] = ("result.yaml",),
              join_chain: bool = True) -> str:
    """A fold commit written by hand as StateClient.fold writes it (the task file moved to
    archive/, the claim tip's result beside it, the claim tip as second parent), plus
    ``extra`` changes (None removes a file)."""
    work = person.work
    git(["fetch", "--quiet", "origin"], work)
    git(["fetch", "--quiet", "origin", f"refs/claims/{key}"], work)  # the chain to join
    git(["reset", "--quiet", "--hard", "origin/main"], work)
    base = archive_path(key)
    task_blob = git(["rev-parse", f"origin/main:tasks/{key}.yaml"], work).strip()
    result_blob = git(["rev-parse", f"{tip}:result.yaml"], work).strip()
    git(["rm", "-q", "--cached", f"tasks/{key}.yaml"], work)
    blobs = {task_name: task_blob} | dict.fromkeys(result_names, result_blob)
    for name, blob in blobs.items():
        git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{base}/{name}"], work)
    for name, text in (extra or {}).items():
        if text is None:
            git(["rm", "-q", "--cached", name], work)
            continue
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
        git(["add", name], work)
    tree = git(["write-tree"], work).strip()
    parents = ["-p", "origin/main", *(["-p", tip] if join_chain else [])]
    return git(["commit-tree", tree, *parents, "-m", f"fold {key} by hand"], work).strip()


def push_fold(person: Person, key: str, tip: str,
              commit: str) -> subprocess.CompletedProcess[str]:
    return person.push("--atomic", f"--force-with-lease=refs/claims/{key}:{tip}",
                       f"{commit}:{MAIN}", f":refs/claims/{key}")


# -- (a) the attack of issue #13 ------------------------------------------------------------


def test_a_merge_of_an_old_main_is_refused(tmp_path: Path) -> None:
    repo, person = make_repo(tmp_path, "state")
    before, fold = folded(repo, tmp_path, person)
    merge = old_tree_merge(person, before)
    refused(person.push(f"{merge}:{MAIN}"),
            f"{MAIN} {merge[:12]}: a merge: main takes merges only from folds (parent "
            f"{before[:12]} is not a claim this push folds); rebase onto main and push again")
    assert main_of(repo) == fold
    assert f"{archive_path('t1')}/result.yaml" in tree_names(repo)


def test_control_without_the_hook_the_old_main_merge_wipes_the_archive(tmp_path: Path) -> None:
    repo, person = make_repo(tmp_path, "bare", hooked=False)
    before, _ = folded(repo, tmp_path, person)
    merge = old_tree_merge(person, before)
    accepted(person.push(f"{merge}:{MAIN}"))
    assert main_of(repo) == merge
    names = tree_names(repo)
    assert "tasks/t1.yaml" in names  # the archived task is back in the queue
    assert not any(n.startswith("archive/") for n in names)  # and archive/ is gone


# -- (b) people rebase, they do not merge ---------------------------------------------------


def test_a_side_branch_merge_is_refused_and_its_rebase_accepted(tmp_path: Path) -> None:
    repo, person = make_repo(tmp_path, "state")
    work = person.work
    side = person.commit({"tasks/t2.yaml": task_yaml("t2")}, "t2 on a side branch")
    git(["branch", "side", side], work)
    other = Person(person.url, tmp_path / "other")
    other.commit({"tasks/t3.yaml": task_yaml("t3")}, "t3, meanwhile")
    accepted(other.push())
    git(["fetch", "--quiet", "origin"], work)
    git(["checkout", "--quiet", "-B", "main", "origin/main"], work)
    git(["merge", "--quiet", "--no-ff", "--no-edit", "side"], work)
    merge = git(["rev-parse", "HEAD"], work).strip()
    text = refused(person.push(),
                   f"{MAIN} {merge[:12]}: a merge: main takes merges only from folds (parent "
                   f"{side[:12]} is not a claim this push folds); rebase onto main and push "
                   "again")
    assert len([ln for ln in text.splitlines() if MAIN in ln]) == 1
    git(["checkout", "--quiet", "side"], work)
    git(["rebase", "--quiet", "origin/main"], work)
    accepted(person.push())
    names = tree_names(repo)
    assert {"tasks/t2.yaml", "tasks/t3.yaml"} <= set(names)
    assert len(git(["--git-dir", str(repo), "rev-list", "--merges", "main"], ROOT).split()) == 0


def test_an_octopus_naming_a_claim_tip_and_a_branch_is_refused(tmp_path: Path) -> None:
    repo, person = make_repo(tmp_path, "state")
    client, tip = finished(repo, tmp_path, person)
    fold = hand_fold(person, "t1", tip)
    stray = person.commit({"tasks/t2.yaml": task_yaml("t2")}, "a branch")
    tree = git(["rev-parse", f"{fold}^{{tree}}"], person.work).strip()
    octopus = git(["commit-tree", tree, "-p", f"{fold}^1", "-p", tip, "-p", stray, "-m", "x"],
                  person.work).strip()
    text = refused(push_fold(person, "t1", tip, octopus),
                   f"(parent {stray[:12]} is not a claim this push folds)")
    assert f"parent {tip[:12]}" not in text
    accepted(push_fold(person, "t1", tip, fold))
    client.close()


# -- (c) the agents' own folds --------------------------------------------------------------


def test_a_fold_by_the_state_client_is_accepted(tmp_path: Path) -> None:
    repo, person = make_repo(tmp_path, "state")
    client, _ = finished(repo, tmp_path, person, "t1", "agent-a")
    other, _ = finished(repo, tmp_path, person, "t2", "agent-b")
    assert client.fold(client.snapshot(), 10) == 2
    fold = main_of(repo)
    parents = git(["--git-dir", str(repo), "rev-list", "--parents", "-n", "1", fold],
                  ROOT).split()[1:]
    assert len(parents) == 3  # main and both claim chains
    names = set(tree_names(repo))
    for key in ("t1", "t2"):
        assert {f"{archive_path(key)}/task.yaml", f"{archive_path(key)}/result.yaml"} <= names
        assert f"tasks/{key}.yaml" not in names
    assert not list_refs(["refs/claims"], git_dir=repo)
    client.close()
    other.close()


# -- (d) a fold only archives ---------------------------------------------------------------


@pytest.mark.parametrize(("extra", "path"), [
    ({"tasks/t2.yaml": task_yaml("t2")}, "tasks/t2.yaml"),
    ({"cluster.yaml": "lease_seconds: 60\n"}, "cluster.yaml"),
    ({"README.md": "# hijacked\n"}, "README.md"),
    ({"tasks/t3.yaml": None}, "tasks/t3.yaml"),
], ids=["adds-a-task", "edits-settings", "edits-readme", "withdraws-another-task"])
def test_a_fold_that_does_more_than_archive_is_refused(
        tmp_path: Path, extra: dict[str, str | None], path: str) -> None:
    repo, person = make_repo(tmp_path, "state")
    person.commit({"tasks/t3.yaml": task_yaml("t3")})
    accepted(person.push())
    client, tip = finished(repo, tmp_path, person)
    fold = main_of(repo)
    bad = hand_fold(person, "t1", tip, extra)
    text = refused(push_fold(person, "t1", tip, bad),
                   f"{MAIN} {bad[:12]}: {path}: a fold only archives")
    assert len([ln for ln in text.splitlines() if MAIN in ln]) == 1
    assert main_of(repo) == fold
    good = hand_fold(person, "t1", tip)  # the control: the same fold, archiving only
    accepted(push_fold(person, "t1", tip, good))
    assert main_of(repo) == good and "tasks/t3.yaml" in tree_names(repo)
    client.close()


def test_control_without_the_hook_a_fold_may_add_a_task(tmp_path: Path) -> None:
    repo, person = make_repo(tmp_path, "bare", hooked=False)
    client, tip = finished(repo, tmp_path, person)
    bad = hand_fold(person, "t1", tip, {"tasks/t2.yaml": task_yaml("t2")})
    accepted(push_fold(person, "t1", tip, bad))
    assert "tasks/t2.yaml" in tree_names(repo)
    client.close()


def test_an_archiving_commit_must_join_the_claim_chain(tmp_path: Path) -> None:
    repo, person = make_repo(tmp_path, "state")
    client, tip = finished(repo, tmp_path, person)
    single = hand_fold(person, "t1", tip, join_chain=False)
    refused(push_fold(person, "t1", tip, single),
            f"{archive_path('t1')}/: a fold has the tip of refs/claims/t1 ({tip[:12]}) among "
            "its parents")
    accepted(push_fold(person, "t1", tip, hand_fold(person, "t1", tip)))
    client.close()


# -- (e) archived file names are matched whole ----------------------------------------------


@pytest.mark.parametrize(("task_name", "result_names", "bad"), [
    ("task.yaml\n", ("result.yaml",), "task.yaml\n"),
    ("task.yaml", ("result.yaml", "result.yaml\n"), "result.yaml\n"),
], ids=["task-newline", "result-newline"])
def test_an_archived_name_with_a_trailing_newline_is_refused(
        tmp_path: Path, task_name: str, result_names: tuple[str, ...], bad: str) -> None:
    repo, person = make_repo(tmp_path, "state")
    client, tip = finished(repo, tmp_path, person)
    commit = hand_fold(person, "t1", tip, task_name=task_name, result_names=result_names)
    refused(push_fold(person, "t1", tip, commit),
            f"{archive_path('t1')}/{bad!r}: a fold adds only task.yaml and result.yaml")
    assert "refs/claims/t1" in list_refs(["refs/claims"], git_dir=repo)
    accepted(push_fold(person, "t1", tip, hand_fold(person, "t1", tip)))
    client.close()
