"""Turn an AgentConfig into a ready runner: secrets, executors, forge. Fails at start-up.

Executors and forges are imported where they are built: an agent loads the SDKs (anthropic,
PyGithub) only when its configuration uses them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cluster.agent.config import AgentConfig
from cluster.agent.credentials import CredentialKind, fingerprint
from cluster.agent.executors.base import Executor
from cluster.agent.followup import PullForge
from cluster.agent.forge_local import LocalForge
from cluster.agent.runner import CommandRunner, Runner
from cluster.errors import SecretMissing
from cluster.sandbox.sandboxes import Sandboxes, default_sandboxes
from cluster.sandbox.seal import Sealer
from cluster.secret import Secret
from cluster.secrets_file import credential_path, lookup_all, require

API_KEY, OAUTH_TOKEN = "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"
_KINDS: dict[str, CredentialKind] = {API_KEY: "api_key", OAUTH_TOKEN: "oauth"}
_CHOICES = {"auto": (API_KEY, OAUTH_TOKEN), "api_key": (API_KEY,), "oauth": (OAUTH_TOKEN,)}


Credentials = Mapping[str, tuple[CredentialKind, Secret]]  # executor kind -> its credential


def model_credentials(config: AgentConfig) -> dict[str, tuple[CredentialKind, Secret]]:
    """The model API credential of each configured executor that calls the model.

    ``claude`` (the SDK) takes only ``ANTHROPIC_API_KEY``: a subscription's OAuth token is
    meant for Claude Code itself. ``claude-code`` takes what ``claude_code_credential`` says
    (auto: the API key when set, else ``CLAUDE_CODE_OAUTH_TOKEN``); its broker holds it.
    A credential the configuration requires and nobody set stops the agent here. Read once,
    at start-up (:func:`build_runner`).
    """
    found = lookup_all((API_KEY, OAUTH_TOKEN), config.secrets_file)
    found = {name: value for name, value in found.items() if value}
    chosen: dict[str, tuple[CredentialKind, Secret]] = {}
    if "claude" in config.executors:
        if API_KEY in found:
            chosen["claude"] = ("api_key", found[API_KEY])
        else:
            hint = (f" ({OAUTH_TOKEN} is set, but only the claude-code executor takes it)"
                    if OAUTH_TOKEN in found else "")
            raise SecretMissing(f"{API_KEY} is not set (looked in {_places(config)}){hint}")
    if "claude-code" in config.executors:
        names = _CHOICES[config.claude_code_credential]
        name = next((n for n in names if n in found), None)
        if name is not None:
            chosen["claude-code"] = (_KINDS[name], found[name])
        elif config.claude_code_credential != "auto":
            raise SecretMissing(f"{names[0]} is not set (looked in {_places(config)}): "
                                f"claude_code_credential is {config.claude_code_credential}")
    return chosen


def credential_fingerprints(credentials: Credentials) -> dict[str, str]:
    """Executor kind -> fingerprint of its credential, as the heartbeat publishes them."""
    return {kind: fingerprint(*pair) for kind, pair in credentials.items()}


def _places(config: AgentConfig) -> str:
    places = [str(p) for p in (credential_path(os.environ), config.secrets_file) if p]
    return " or ".join(["the environment", *places])


def agent_home(config: AgentConfig) -> Path:
    return config.workdir / config.id


def build_executors(config: AgentConfig,
                    credentials: Credentials) -> tuple[dict[str, Executor], list[Secret]]:
    """Construct every configured executor now, with ``credentials`` (``model_credentials``,
    strict: a missing key stopped the agent at start already)."""
    from cluster.agent.executors.claude import DEFAULT_MODEL, ClaudeExecutor
    from cluster.agent.executors.claude_code import ClaudeCodeExecutor
    from cluster.agent.executors.command import CommandExecutor

    executors: dict[str, Executor] = {}
    secrets: list[Secret] = []
    for kind in config.executors:
        if kind == "command":
            executors[kind] = CommandExecutor()
        elif kind == "claude":
            key = credentials["claude"][1]
            secrets.append(key)
            executors[kind] = ClaudeExecutor(
                key, model=config.model or DEFAULT_MODEL, base_url=config.anthropic_base_url,
                prompts=config.prompts,
            )
        else:
            # The documented default model, priced: the CLI's own default may not be.
            executors[kind] = ClaudeCodeExecutor(
                model=config.model or DEFAULT_MODEL, task_flags=config.claude_code_task_args
            )
    return executors, secrets


def executor_programs(executors: Mapping[str, Executor]) -> tuple[Path, ...]:
    """What every jail must show for the executors' own programs to run there: the Claude Code
    CLI's package when it is installed outside the system directories."""
    from cluster.agent.executors.claude_code import ClaudeCodeExecutor
    from cluster.sandbox.programs import program_paths

    cli = executors.get("claude-code")
    return program_paths(Path(cli.binary)) if isinstance(cli, ClaudeCodeExecutor) else ()


def build_sealer(config: AgentConfig, sandboxes: Sandboxes,
                 credentials: Credentials) -> tuple[Sealer, list[Secret]]:
    """The attempts' sealer: the model credential (of ``credentials``) the broker holds for
    the Claude Code CLI (which itself never gets it), and where the broker forwards."""
    from cluster.sandbox.broker import Credential

    credential = None
    chosen = credentials.get("claude-code")
    if chosen is not None:
        credential = Credential(*chosen)
    sealer = Sealer(sandboxes, credential, config.anthropic_base_url)
    return sealer, [credential.value] if credential is not None else []


def build_sandboxes(config: AgentConfig) -> Sandboxes:
    """The agent's sandboxes, checked: where none can be built the agent does not start
    (unless the operator set ``sandbox: off``)."""
    sandboxes = default_sandboxes(agent_home(config), config.sandbox, config.secrets_file)
    sandboxes.check()
    return sandboxes


def build_forge(config: AgentConfig) -> PullForge:
    if config.forge == "github":
        from cluster.agent.forge_github import GitHubForge

        token = require("GITHUB_TOKEN", config.secrets_file)
        return GitHubForge(token, base_url=config.github_base_url)
    records = config.pull_request_dir or agent_home(config) / "pull-requests"
    return LocalForge(records, repos_root=config.repos_root)


def build_runner(config: AgentConfig) -> Runner:
    """The configured runner, ready. The model credentials are read here, once (environment
    and secrets file), for the executors, the broker and the fingerprints the agent's
    heartbeat publishes (``Runner.credentials``)."""
    home = agent_home(config)
    sandboxes = build_sandboxes(config)
    if config.runner == "scratch":
        return CommandRunner(home, sandboxes)
    from cluster.agent.repos import RepoPolicy
    from cluster.agent.taskrunner import TaskRunner

    credentials = model_credentials(config)
    executors, secrets = build_executors(config, credentials)
    sandboxes = sandboxes.showing(executor_programs(executors))
    sealer, held = build_sealer(config, sandboxes, credentials)
    repos = RepoPolicy(config.allow_local_repos, config.allowed_repo_prefixes)
    runner = TaskRunner(home, build_forge(config), executors, secrets=[*secrets, *held],
                        sealer=sealer, repos=repos, push_ignore=config.push_ignore,
                        credentials=credential_fingerprints(credentials),
                        follow_up_max_rounds=config.follow_up_max_rounds)
    runner.prune(config.keep_failed_workspaces_hours)
    return runner
