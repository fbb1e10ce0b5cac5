"""The host-runtime contract that hostrun drives for every kind of host, and its plan type.

A runtime reads a host's facts, plans (purely) the closed kinds of action that take them to the
wanted state, applies one action at a time, verifies the agent that runs since a moment, and
undoes what this run did when something failed. systemd hosts (``systemdhost``) and container
hosts (``containerhost``) implement it; preflight, ``--check``, ``--diff``, ``--tags``, rollback,
backups, verification and undo are hostrun's, the same for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from cluster.deploy.preflight import Problem
from cluster.errors import ClusterError

K = TypeVar("K", bound=str)  # a runtime's closed vocabulary of action kinds (a Literal)
F = TypeVar("F")  # what a runtime reads of a host


class NothingToRollBack(ClusterError):
    """``invoke rollback`` found nothing on the host to return to."""


@dataclass(frozen=True)
class Action(Generic[K]):
    """One change; ``items`` names what it touches (wheel names, a file path, a reason)."""

    kind: K
    items: tuple[str, ...] = ()

    def __str__(self) -> str:
        shown = ", ".join(self.items[:4]) + (
            f" (+{len(self.items) - 4})" if len(self.items) > 4 else ""
        )
        return f"{self.kind.replace('_', ' ')}{': ' + shown if shown else ''}"


@dataclass(frozen=True)
class Plan(Generic[K]):
    """The actions for one host, in the order they run; ``tag_of`` maps a kind to its tag."""

    host: str
    actions: tuple[Action[K], ...]
    tag_of: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def has(self, kind: K) -> bool:
        return any(a.kind == kind for a in self.actions)

    def of(self, kind: K) -> tuple[str, ...]:
        return tuple(i for a in self.actions if a.kind == kind for i in a.items)

    def only(self, tags: tuple[str, ...]) -> Plan[K]:
        """The actions whose kind's tag is among ``tags`` (``--tags``)."""
        kept = tuple(a for a in self.actions if self.tag_of[a.kind] in tags)
        return Plan(self.host, kept, self.tag_of)


class HostRuntime(Protocol[F, K]):
    """One host of one run, over the run's one connection to it; never shared across threads.

    It holds what the host should have (nothing, for a rollback) and remembers what this run
    did to it, so that ``undo`` can put that back.
    """

    def facts(self) -> F:
        """Read the host; change nothing."""
        ...

    def preflight(self, facts: F) -> list[Problem]:
        """Why the host is not ready for the agent (empty: it is); pure."""
        ...

    def plan(self, facts: F) -> Plan[K]:
        """What takes ``facts`` to the wanted state; pure, and empty on a converged host."""
        ...

    def rollback_plan(self, facts: F) -> Plan[K]:
        """What returns the host to what it ran before; NothingToRollBack when there is none."""
        ...

    def diffs(self, plan: Plan[K]) -> tuple[str, ...]:
        """Unified diffs of the files ``plan`` writes, host side first, secrets masked."""
        ...

    def apply(self, plan: Plan[K], action: Action[K]) -> None:
        """Carry out one action of ``plan``: every kind handled (an unknown one is a type error)."""
        ...

    def verify(self, plan: Plan[K], since: float) -> None:
        """Raise VerifyFailed unless the agent ``plan`` (re)started runs, and beats, since
        ``since`` (a ``time.time()`` reading taken before the first action)."""
        ...

    def settle(self, plan: Plan[K]) -> None:
        """The run verified: drop what ``undo`` would have put back (backups, a container
        set aside)."""
        ...

    def undo(self, plan: Plan[K], facts: F) -> str:
        """Put back what this run changed (``facts`` were read before it); say what the host
        has now. Never raises: a failure to put back is said in the answer."""
        ...
