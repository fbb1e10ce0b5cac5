"""Turn an AgentConfig into a ready runner: secrets, executors, forge. Fails at start-up.

Executors and forges are imported where they are built: an agent loads the SDKs (anthropic,
PyGithub) only when its configuration uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cluster.agent.config import AgentConfig
from cluster.agent.executors.base import Executor
from cluster.agent.forge import Forge, LocalForge
from cluster.agent.runner import CommandRunner, Runner
from cluster.sandbox.sandboxes import Sandboxes, default_sandboxes
from cluster.sandbox.seal import Sealer
from cluster.secret import Secret
from cluster.secrets_file import lookup, require


def agent_home(config: AgentConfig) -> Path:
    return config.workdir / config.id


def build_executors(config: AgentConfig) -> tuple[dict[str, Executor], list[Secret]]:
    """Construct every configured executor now, so a missing key stops the agent at start."""
    from cluster.agent.executors.claude import DEFAULT_MODEL, ClaudeExecutor
    from cluster.agent.executors.claude_code import ClaudeCodeExecutor
    from cluster.agent.executors.command import CommandExecutor

    executors: dict[str, Executor] = {}
    secrets: list[Secret] = []
    for kind in config.executors:
        if kind == "command":
            executors[kind] = CommandExecutor()
        elif kind == "claude":
            key = require("ANTHROPIC_API_KEY", config.secrets_file)
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


def build_sealer(config: AgentConfig, sandboxes: Sandboxes) -> tuple[Sealer, list[Secret]]:
    """The attempts' sealer: the model credential the broker holds for the Claude Code CLI
    (which itself never gets it), and where the broker forwards."""
    from cluster.sandbox.broker import Credential

    credential = None
    if "claude-code" in config.executors:
        key = lookup("ANTHROPIC_API_KEY", config.secrets_file)
        if key:
            credential = Credential("api_key", key)
    sealer = Sealer(sandboxes, credential, config.anthropic_base_url)
    return sealer, [credential.value] if credential is not None else []


def build_sandboxes(config: AgentConfig) -> Sandboxes:
    """The agent's sandboxes, checked: where none can be built the agent does not start
    (unless the operator set ``sandbox: off``)."""
    sandboxes = default_sandboxes(agent_home(config), config.sandbox, config.secrets_file)
    sandboxes.check()
    return sandboxes


def build_forge(config: AgentConfig) -> Forge:
    if config.forge == "github":
        from cluster.agent.forge_github import GitHubForge

        token = require("GITHUB_TOKEN", config.secrets_file)
        return GitHubForge(token, base_url=config.github_base_url)
    records = config.pull_request_dir or agent_home(config) / "pull-requests"
    return LocalForge(records, repos_root=config.repos_root)


def build_runner(config: AgentConfig) -> Runner:
    home = agent_home(config)
    sandboxes = build_sandboxes(config)
    if config.runner == "scratch":
        return CommandRunner(home, sandboxes)
    from cluster.agent.repos import RepoPolicy
    from cluster.agent.taskrunner import TaskRunner

    executors, secrets = build_executors(config)
    sandboxes = sandboxes.showing(executor_programs(executors))
    sealer, held = build_sealer(config, sandboxes)
    repos = RepoPolicy(config.allow_local_repos, config.allowed_repo_prefixes)
    runner = TaskRunner(home, build_forge(config), executors, secrets=[*secrets, *held],
                        sealer=sealer, repos=repos, push_ignore=config.push_ignore)
    runner.prune(config.keep_failed_workspaces_hours)
    return runner
