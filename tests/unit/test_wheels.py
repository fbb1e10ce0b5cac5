"""Wheels are built once per source hash; the manifest diff says which files to push."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import pytest

from cluster.deploy.wheels import (
    BuildError,
    build_wheels,
    diff_manifest,
    install_argv,
    source_hash,
)

WHEELS = ("claude_code_cluster-1.2.3-py3-none-any.whl", "PyYAML-6.0-cp311-linux_x86_64.whl")
PYPROJECT = '[project]\nname = "claude-code-cluster"\nversion = "1.2.3"\n'


class FakePip:
    """Stands in for `pip wheel`: records each call and writes wheels into --wheel-dir."""

    def __init__(self, wheels: tuple[str, ...] = WHEELS) -> None:
        self.calls: list[list[str]] = []
        self.wheels = wheels

    def __call__(self, argv: list[str]) -> None:
        self.calls.append(argv)
        out = Path(argv[argv.index("--wheel-dir") + 1])
        for name in self.wheels:
            (out / name).write_bytes(f"{name} built {len(self.calls)}".encode())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "cluster" / "sub").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "cluster" / "__init__.py").write_text('"""x"""\n')
    (root / "cluster" / "sub" / "mod.py").write_text("A = 1\n")
    return root


def test_second_build_with_unchanged_sources_reuses_the_cache(
    project: Path, tmp_path: Path
) -> None:
    pip, cache = FakePip(), tmp_path / "cache"
    first = build_wheels(project, cache, python=Path("/venv/bin/python"), runner=pip)
    assert first.built and len(pip.calls) == 1
    assert pip.calls[0][:4] == ["/venv/bin/python", "-m", "pip", "wheel"]
    assert pip.calls[0][-1] == str(project)
    assert first.directory == cache / f"1.2.3-{first.source_hash}"
    assert first.release == f"1.2.3-{first.source_hash}"
    for name, digest in first.manifest.items():
        assert hashlib.sha256((first.directory / name).read_bytes()).hexdigest() == digest

    second = build_wheels(project, cache, runner=pip)
    assert not second.built and len(pip.calls) == 1, "unchanged sources must not call pip"
    assert (second.directory, second.manifest) == (first.directory, first.manifest)


def test_bytecode_and_caches_do_not_change_the_hash(project: Path) -> None:
    before = source_hash(project)
    (project / "cluster" / "__pycache__").mkdir()
    (project / "cluster" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert source_hash(project) == before


@pytest.mark.parametrize("changed", ["pyproject.toml", "cluster/sub/mod.py", "cluster/new.py"])
def test_a_changed_source_builds_again(project: Path, tmp_path: Path, changed: str) -> None:
    pip, cache = FakePip(), tmp_path / "cache"
    first = build_wheels(project, cache, runner=pip)
    path = project / changed
    path.write_text((path.read_text() if path.exists() else "") + "# changed\n")
    second = build_wheels(project, cache, runner=pip)
    assert second.built and len(pip.calls) == 2
    assert second.source_hash != first.source_hash and first.directory.is_dir()


def test_an_incomplete_cache_entry_is_rebuilt(project: Path, tmp_path: Path) -> None:
    pip, cache = FakePip(), tmp_path / "cache"
    first = build_wheels(project, cache, runner=pip)
    (first.directory / next(iter(first.manifest))).unlink()
    assert build_wheels(project, cache, runner=pip).built and len(pip.calls) == 2


def test_a_build_without_the_project_wheel_fails(project: Path, tmp_path: Path) -> None:
    pip = FakePip(wheels=("PyYAML-6.0-cp311-linux_x86_64.whl",))
    with pytest.raises(BuildError, match="no claude-code-cluster wheel"):
        build_wheels(project, tmp_path / "cache", runner=pip)
    assert not any(p.name.startswith("1.2.3-") for p in (tmp_path / "cache").iterdir())


def test_diff_pushes_only_what_differs() -> None:
    local = {"a.whl": "1", "b.whl": "2", "c.whl": "3"}
    remote = {"a.whl": "1", "b.whl": "old", "z.whl": "9"}
    diff = diff_manifest(local, remote)
    assert diff.push == ("b.whl", "c.whl")
    assert diff.unchanged == ("a.whl",)
    assert diff.stale == ("z.whl",)
    assert diff_manifest(local, local).push == ()  # a converged host: nothing to push
    assert diff_manifest(local, {}).push == ("a.whl", "b.whl", "c.whl")


def test_install_is_offline_into_the_release_venv() -> None:
    release = PurePosixPath("/opt/claude-cluster/releases/1.2.3-abc")
    argv = install_argv(release, PurePosixPath("/opt/claude-cluster/wheels"), "1.2.3")
    assert argv == [
        "/opt/claude-cluster/releases/1.2.3-abc/venv/bin/pip", "install", "--no-index",
        "--find-links", "/opt/claude-cluster/wheels", "claude-code-cluster==1.2.3",
    ]  # fmt: skip
