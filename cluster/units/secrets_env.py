"""The agent's secrets file (a systemd credential) as a Secret, with a masked twin for diffs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cluster.agent_schema import AgentConfig
from cluster.errors import ConfigError
from cluster.secret import MASK, Secret

# All deploy ever writes to a host.
SECRET_NAMES = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "GITHUB_TOKEN")
_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Read by cluster/secrets_file.py (the agent's credential; deploy, for a container's environment)
# and, by hand, perhaps by systemd's EnvironmentFile= or docker's --env-file, which all quote
# differently: values with neither quotes, spaces, '$', '\' nor newlines need no quoting in any.
_VALUE = re.compile(r"^[A-Za-z0-9_\-.:/+=@,]+$")
HEADER = "# Written by claude-cluster deploy; root's, mode 0600: systemd hands it to the agent.\n"


@dataclass(frozen=True)
class SecretsFile:
    """The file text (only through :attr:`text`) and what may be shown or logged of it."""

    text: Secret
    masked: str
    sha256: str

    def __repr__(self) -> str:
        return f"SecretsFile(sha256={self.sha256[:12]}, masked={self.masked!r})"


@dataclass(frozen=True)
class Needs:
    """The secrets an agent uses: those it cannot start without, and those it uses if given."""

    required: dict[str, str]  # name -> what needs it
    optional: dict[str, str]
    # Alternatives, in order of preference: only the first one set is shipped (claude-code's
    # `claude_code_credential: auto` uses the API key when there is one, else the OAuth token).
    first_of: tuple[str, ...] = ()

    @property
    def names(self) -> set[str]:
        return set(self.required) | set(self.optional) | set(self.first_of)

    def shipped(self, secrets: Mapping[str, Secret]) -> dict[str, Secret]:
        """What of ``secrets`` goes to the host: what it needs, and of the alternatives only
        the one its agent will use."""
        chosen = next((n for n in self.first_of if secrets.get(n) or n in self.required), None)
        keep = set(self.required) | set(self.optional) | ({chosen} if chosen else set())
        return {name: value for name, value in secrets.items() if name in keep}


def agent_needs(config: AgentConfig) -> Needs:
    """Least privilege: a host gets only the secrets its agent's configuration uses."""
    required: dict[str, str] = {}
    optional: dict[str, str] = {}
    first_of: tuple[str, ...] = ()
    if "claude" in config.executors:  # the SDK takes an API key only
        required["ANTHROPIC_API_KEY"] = "the claude executor"
    if "claude-code" in config.executors:
        choice = config.claude_code_credential
        if choice == "oauth":
            required["CLAUDE_CODE_OAUTH_TOKEN"] = "the claude-code executor (oauth)"  # noqa: S105
        elif choice == "api_key":
            required.setdefault("ANTHROPIC_API_KEY", "the claude-code executor (api_key)")
        else:
            first_of = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
    if config.forge == "github":
        required["GITHUB_TOKEN"] = "forge: github"  # noqa: S105 - who needs it, not a value
    return Needs(required, optional, first_of)


def render_secrets_env(
    secrets: Mapping[str, Secret], required: Collection[str] = ()
) -> SecretsFile:
    """KEY=value lines in sorted order; every ``required`` name must be set and non-empty."""
    missing = [name for name in required if not secrets.get(name)]
    if missing:
        raise ConfigError(f"secrets.env: not set: {', '.join(missing)}")
    lines, masked = [HEADER], [HEADER]
    for name in sorted(secrets):
        value = secrets[name].reveal()
        if not _NAME.match(name):
            raise ConfigError(f"secrets.env: bad variable name {name!r}")
        if not _VALUE.match(value):
            raise ConfigError(
                f"secrets.env: {name} has characters that would need quoting "
                "(spaces, quotes, '$', '\\' or newlines); its value is not shown"
            )
        lines.append(f"{name}={value}\n")
        masked.append(f"{name}={MASK}\n")
    text = "".join(lines)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return SecretsFile(Secret(text), "".join(masked), digest)
