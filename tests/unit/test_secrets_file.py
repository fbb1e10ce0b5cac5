"""Secrets files: owner-only, parsed strictly, values never echoed in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import ConfigError, SecretMissing
from cluster.secret import Secret
from cluster.secrets_file import lookup, read_secrets_file, require


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_reads_owner_only_file(tmp_path: Path) -> None:
    text = "# keys\nANTHROPIC_API_KEY=sk-ant-123456\nGITHUB_TOKEN='ghp_x1'\n"
    path = write(tmp_path / "s.env", text)
    values = read_secrets_file(path)
    assert values["ANTHROPIC_API_KEY"].reveal() == "sk-ant-123456"
    assert values["GITHUB_TOKEN"].reveal() == "ghp_x1"
    assert "sk-ant" not in repr(values)


def test_refuses_group_or_world_readable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.env", "A=b\n", mode=0o644)
    with pytest.raises(ConfigError, match=r"mode 0644.*chmod 600"):
        read_secrets_file(path)


def test_malformed_line_does_not_echo_the_value(tmp_path: Path) -> None:
    path = write(tmp_path / "s.env", "not a pair sk-ant-SECRET\n")
    with pytest.raises(ConfigError) as info:
        read_secrets_file(path)
    assert "SECRET" not in str(info.value) and ":1: expected KEY=VALUE" in str(info.value)


def test_environment_wins_and_missing_is_clear(tmp_path: Path) -> None:
    path = write(tmp_path / "s.env", "GITHUB_TOKEN=from-file\n")
    assert require("GITHUB_TOKEN", path, {"GITHUB_TOKEN": "from-env"}).reveal() == "from-env"
    assert require("GITHUB_TOKEN", path, {}).reveal() == "from-file"
    assert lookup("NOPE", path, {}) is None
    with pytest.raises(SecretMissing, match="ANTHROPIC_API_KEY is not set"):
        require("ANTHROPIC_API_KEY", path, {})


def credentials(tmp_path: Path, text: str, mode: int = 0o400) -> dict[str, str]:
    """A credentials directory as systemd's LoadCredential= leaves it; the unit's environment."""
    directory = tmp_path / "credentials"
    directory.mkdir()
    write(directory / "secrets.env", text, mode)
    directory.chmod(0o500)
    return {"CREDENTIALS_DIRECTORY": str(directory)}


def test_the_units_credential_comes_before_the_secrets_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.env", "GITHUB_TOKEN=from-file\nANTHROPIC_API_KEY=sk-file\n")
    env = credentials(tmp_path, "# deploy\nGITHUB_TOKEN=from-credential\n")
    assert require("GITHUB_TOKEN", path, env).reveal() == "from-credential"
    assert require("ANTHROPIC_API_KEY", path, env).reveal() == "sk-file"
    assert require("GITHUB_TOKEN", None, env).reveal() == "from-credential"
    assert require("GITHUB_TOKEN", None, {**env, "GITHUB_TOKEN": "env"}).reveal() == "env"
    with pytest.raises(SecretMissing, match=r"looked in the environment or .*credentials/secrets"):
        require("NOPE", None, env)
    gone = {"CREDENTIALS_DIRECTORY": str(tmp_path / "absent")}  # set, but nothing there
    assert require("GITHUB_TOKEN", path, gone).reveal() == "from-file"


@pytest.mark.parametrize("mode", [0o400, 0o440, 0o600])  # 0440: systemd's ACL mask shows
def test_a_credential_systemd_hands_over_is_accepted(tmp_path: Path, mode: int) -> None:
    env = credentials(tmp_path, "ANTHROPIC_API_KEY=sk-cred\n", mode)
    assert lookup("ANTHROPIC_API_KEY", None, env) == Secret("sk-cred")


@pytest.mark.parametrize("mode", [0o404, 0o460, 0o602])
def test_a_credential_others_may_read_or_anyone_write_is_refused(tmp_path: Path, mode: int) -> None:
    env = credentials(tmp_path, "ANTHROPIC_API_KEY=sk-cred\n", mode)
    with pytest.raises(ConfigError, match="readable by its owner only"):
        lookup("ANTHROPIC_API_KEY", None, env)
