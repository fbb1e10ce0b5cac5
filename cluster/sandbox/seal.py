"""Sealing one attempt: its jail, the credential broker in front of the model API, and the
environment through which task code reaches the model without ever holding a credential."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.sandbox.jail import BRIDGE_PORT, Jail
from cluster.sandbox.sandboxes import Sandboxes

if TYPE_CHECKING:
    from cluster.agent.executors.base import Budget
    from cluster.sandbox.broker import Broker, Credential, Usage

DEFAULT_UPSTREAM = "https://api.anthropic.com"
UNSEALED = "sandbox off: task code runs unsealed, as the agent's user, with its credentials"


def log_line(log: Path, line: str, *, unsealed: bool) -> None:
    """Append one of the agent's own lines to an attempt's log; every line of an unsealed
    attempt says so."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"[cluster]{' [unsealed]' if unsealed else ''} {line}\n")


@dataclass
class Seal:
    """What an attempt's processes run in: ``jail`` (None when the operator set
    ``sandbox: off``), ``env`` (how they reach the model: the bridge and a placeholder key,
    or with the sandbox off the real key), and the ``broker`` that counts what they spend."""

    jail: Jail | None
    env: dict[str, str] = field(default_factory=dict)
    broker: Broker | None = None

    @property
    def usage(self) -> Usage | None:
        return self.broker.usage if self.broker is not None else None


@dataclass(frozen=True)
class Sealer:
    """Seals the attempts of one agent. ``credential`` is the model API's (None: this agent
    runs no executor that needs it); ``upstream`` is where the broker forwards."""

    sandboxes: Sandboxes
    credential: Credential | None = None
    upstream: str | None = None

    @property
    def off(self) -> bool:
        return self.sandboxes.off

    @contextlib.contextmanager
    def attempt(
        self, name: str, worktree: Path, *, budget: Budget, model_api: bool,
        note: Callable[[str], None], git_dir: Path | None = None,
    ) -> Iterator[Seal]:
        """The seal of attempt ``name`` around ``worktree``; ``model_api`` says whether its
        processes call the model themselves (the Claude Code CLI). Removed on exit."""
        if self.sandboxes.off:
            note(UNSEALED)
            yield Seal(None, self._unsealed_env() if model_api else {})
            return
        allow = self.sandboxes.config.allow_hosts
        wants_broker = (model_api and self.credential is not None) or bool(allow)
        socket_dir = self.sandboxes.socket_dir() if wants_broker else None
        broker = self._broker(budget, note, model_api) if wants_broker else None
        try:
            socket = None
            if broker is not None and socket_dir is not None:
                socket = socket_dir / "broker.sock"
                broker.start(socket)
                if allow:
                    note(f"egress allowed through the broker to {', '.join(allow)}")
            jail = self.sandboxes.jail(name, worktree, git_dir=git_dir, broker_socket=socket)
            env: dict[str, str] = {}
            if broker is not None and model_api:
                env = {"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{BRIDGE_PORT}",
                       "ANTHROPIC_API_KEY": broker.placeholder_key}
            yield Seal(jail, env, broker)
        finally:
            if broker is not None:
                broker.close()
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
            self.sandboxes.remove(name)

    def _broker(self, budget: Budget, note: Callable[[str], None], model_api: bool) -> Broker:
        from cluster.sandbox.broker import Broker

        return Broker(
            upstream=self.upstream or DEFAULT_UPSTREAM,
            credential=self.credential if model_api else None,
            budget=budget,
            allow_hosts=self.sandboxes.config.allow_hosts,
            log=note,
        )

    def _unsealed_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.credential is not None:
            env.update(self.credential.environment())
        if self.upstream:
            env["ANTHROPIC_BASE_URL"] = self.upstream
        return env
