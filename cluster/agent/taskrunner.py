"""The full attempt: workspace, prompt, executor, verify, commit and push, pull request."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.agent import followup
from cluster.agent.credentials import CredentialRejected
from cluster.agent.executors.base import (
    Budget,
    ExecutionOutcome,
    ExecutionRequest,
    Executor,
    RateLimited,
)
from cluster.agent.followup import PullForge
from cluster.agent.forge import is_slug
from cluster.agent.process import child_env
from cluster.agent.repos import RepoPolicy, refusal
from cluster.agent.runner import AttemptReport, shell_step
from cluster.agent.workspace import GitIdentity, SecretInChanges, Workspace, Workspaces
from cluster.errors import ClusterError
from cluster.sandbox.sandboxes import default_sandboxes
from cluster.sandbox.seal import Seal, Sealer, log_line
from cluster.secret import Secret, mask
from cluster.state.client import Held
from cluster.state.records import Outcome
from cluster.state.schema import TaskSpec
from cluster.state.statuses import AttemptStatus, PauseCause, counts

if TYPE_CHECKING:
    from cluster.sandbox.jail import Jail

SUMMARY_CHARS = 2000
UNFINISHED_PUSH_SECONDS = 30.0  # even past the task's timeout, so that a retry can resume


class _Stop(Exception):
    """Ends an attempt early with a status and a reason; never leaves this module."""

    def __init__(self, status: AttemptStatus, reason: str, retry_after: float = 0.0,
                 cause: PauseCause | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.cause = cause


@dataclass
class _Attempt:
    held: Held
    spec: TaskSpec
    log: Path
    unsealed: bool
    started: float = field(default_factory=time.time)
    clock: float = field(default_factory=time.monotonic)
    workspace: Workspace | None = None
    seal: Seal | None = None
    head: str | None = None
    pull_request: str | None = None
    replied_to: tuple[int, ...] = ()
    # What the executor reported, masked: the outcome the record carries, once completed.
    executed: ExecutionOutcome | None = None

    def remaining(self) -> float:
        return self.spec.timeout - (time.monotonic() - self.clock)

    @property
    def jail(self) -> Jail | None:
        return self.seal.jail if self.seal is not None else None

    def note(self, line: str) -> None:
        log_line(self.log, line, unsealed=self.unsealed)


class TaskRunner:
    """Runs one attempt of a task end to end; implements :class:`cluster.agent.runner.Runner`.

    Order: prepare the workspace on ``cluster/<id>`` -> executor -> commit -> verify (on
    exactly what was committed; what verify leaves behind is never committed) -> push ->
    pull request. Work that fails verify is still pushed (without a pull request), so that
    the retry continues from it on the same branch. An attempt that leaves the branch with
    nothing beyond ``base`` (a follow-up: its head) fails with "executor made no changes",
    verify or not: there would be nothing to propose. A retry whose predecessor already
    pushed work may add nothing and still succeed.
    A follow-up (``spec.follow_up``) does the same on its pull request's branch, within its
    round limit, and answers on that pull request instead of opening one
    (cluster.agent.followup).
    The workspace is removed after success and kept after any other end, for ``prune``.
    """

    def __init__(
        self,
        workdir: Path,
        forge: PullForge,
        executors: Mapping[str, Executor],
        *,
        identity: GitIdentity | None = None,
        depth: int | None = None,
        secrets: Sequence[Secret] = (),
        sealer: Sealer | None = None,
        repos: RepoPolicy | None = None,
        push_ignore: Sequence[str] = (),
        credentials: Mapping[str, str] | None = None,
        follow_up_max_rounds: int = 3,
    ) -> None:
        self.forge = forge
        self.executors = dict(executors)
        # Executor kind -> fingerprint of its model credential (cluster.agent.build).
        self.credentials = dict(credentials or {})
        self.secrets = [*secrets, *([forge.token] if forge.token else [])]
        self.repos = repos or RepoPolicy()  # no local repos, no URL prefixes
        self.max_rounds = follow_up_max_rounds  # for a follow-up task without max_rounds
        self.workspaces = Workspaces(workdir, identity=identity, depth=depth,
                                     secrets=self.secrets, ignore=push_ignore)
        self.logs = workdir / "logs"
        self.sealer = sealer or Sealer(default_sandboxes(workdir))

    def prune(self, older_than_hours: float) -> list[Path]:
        """Remove kept (failed) workspaces older than this; see ``keep_failed_workspaces_hours``."""
        return self.workspaces.prune(older_than_hours)

    def run(self, held: Held, cancel: threading.Event) -> AttemptReport:
        spec = held.task.spec
        assert spec is not None
        att = _Attempt(held, spec, self._new_log(f"{held.key}-a{held.claim.attempt}"),
                       unsealed=self.sealer.off)
        status: AttemptStatus = "succeeded"
        reason, retry_after, cause = "", 0.0, None
        try:
            self._attempt(att, cancel)
        except _Stop as stop:
            status, reason, retry_after = stop.status, stop.reason, stop.retry_after
            cause = stop.cause
        finally:
            if att.workspace is not None:
                att.workspace.close()
            self._mask_log(att.log)
        reason = mask(reason, self.secrets)
        att.note(f"{status}{': ' + reason if reason else ''}")
        if status == "succeeded" and att.workspace is not None:
            self.workspaces.remove(att.workspace)
        return AttemptReport(status, reason, self._outcome(att), retry_after, cause)

    def _attempt(self, att: _Attempt, cancel: threading.Event) -> None:
        spec, attempt = att.spec, att.held.claim.attempt
        executor = self.executors.get(spec.executor.kind)
        if executor is None:
            raise _Stop("invalid", f"executor {spec.executor.kind!r} is not available here")
        problem = executor.refusal(spec.executor.model, spec.executor.args)
        if problem is not None:
            raise _Stop("invalid", f"executor {spec.executor.kind}: {problem}")
        refused = refusal(spec.repo, self.repos, self.forge.host)
        if refused is not None:
            raise _Stop("invalid", f"repo {mask(spec.repo, self.secrets)!r}: {refused}")
        fu = spec.follow_up
        if fu is not None:
            self._within_rounds(att, cancel)
        with self._step(att, cancel, "workspace"):
            url = self.forge.clone_url(spec.repo)
            ws = att.workspace = self.workspaces.prepare(
                url, spec.id, attempt, spec.base, token=self.forge.token,
                token_host=self.forge.host, timeout=att.remaining(),
                branch=fu.branch if fu else None, since=fu.head if fu else None,
            )
            att.head = ws.remote_head
            att.note(f"workspace {ws.path} on {ws.branch} from {ws.start}"
                     + (" (resumed)" if ws.resumed else ""))
        with self._step(att, cancel, "prompt"):
            prompt = self._prompt(att)
        with self._sealed(att, cancel, executor) as seal:
            att.seal = seal
            self._run_executor(att, cancel, executor, prompt)
            with self._step(att, cancel, "commit"):
                commit = self.workspaces.commit(ws, f"{spec.title}\n\nTask: {spec.id} "
                                                    f"(attempt {attempt})")
                if not self.workspaces.has_work(ws):
                    raise _Stop("failed", "executor made no changes")
            if spec.verify:
                try:
                    self._verify(att, cancel, ws, spec.verify)
                except _Stop as stop:
                    if counts(stop.status):
                        self._push_unfinished(att, ws)
                    raise
        with self._step(att, cancel, "push"):
            head = att.head = self.workspaces.push(ws, att.remaining())
            att.note(f"pushed {ws.branch} at {head}" + ("" if commit.changed else
                                                       " (no new commit this attempt)"))
        if fu is not None:
            with self._step(att, cancel, "answer"):
                done = followup.Done(head, self.workspaces.changed_files(ws),
                                     att.executed.summary if att.executed else "",
                                     followup.round_limit(spec, self.max_rounds))
                att.replied_to = followup.answer(self.forge, spec, done, self.secrets)
                att.note(f"answered on {att.pull_request} (threads {list(att.replied_to)})")
            return
        with self._step(att, cancel, "pull request"):
            att.pull_request = self.forge.open_or_update_pr(
                spec.repo, ws.branch, spec.base, spec.title, self._pr_body(att)
            )
            att.note(f"pull request {att.pull_request}")

    def _within_rounds(self, att: _Attempt, cancel: threading.Event) -> None:
        """A follow-up past its round limit does no work: one comment says so, then invalid."""
        fu, limit = att.spec.follow_up, followup.round_limit(att.spec, self.max_rounds)
        assert fu is not None
        if fu.round <= limit:
            return
        reason = followup.over_limit(fu, limit)
        with self._step(att, cancel, "round limit"):
            self.forge.comment(att.spec.repo, fu.pull_request,
                               f"{reason}\n\n{followup.tag(att.spec.id)}\n")
        raise _Stop("invalid", reason)

    @contextlib.contextmanager
    def _sealed(self, att: _Attempt, cancel: threading.Event,
                executor: Executor) -> Iterator[Seal]:
        """The attempt's seal (jail and broker) for the executor and verify; removed after.
        Only building it is the "sandbox" step: what runs inside reports its own steps."""
        ws = att.workspace
        assert ws is not None
        with contextlib.ExitStack() as stack:
            with self._step(att, cancel, "sandbox"):
                seal = stack.enter_context(self.sealer.attempt(
                    f"{att.held.key}-a{att.held.claim.attempt}", ws.path,
                    budget=Budget(**att.spec.budget.model_dump()), note=att.note,
                    model_api=executor.name == "claude-code", git_dir=ws.git_dir,
                ))
            yield seal

    def _run_executor(
        self, att: _Attempt, cancel: threading.Event, executor: Executor, prompt: str
    ) -> None:
        spec, ws, seal = att.spec, att.workspace, att.seal
        assert ws is not None and seal is not None
        prompt_file = self._prompt_file(att)
        prompt_file.write_text(prompt, encoding="utf-8")
        if spec.executor.kind == "command" and spec.executor.command:
            prompt = spec.executor.command  # the command executor runs its prompt with bash
        request = ExecutionRequest(
            task_id=spec.id, workspace=ws.path, prompt=prompt,
            specialty=spec.specialty, budget=Budget(**spec.budget.model_dump()),
            timeout=att.remaining(), log_path=att.log,
            env={**self._task_env(att, prompt_file), **seal.env},
            model=spec.executor.model, args=spec.executor.args,
            jail=seal.jail, cancel=cancel,
        )
        with self._step(att, cancel, "executor"):
            try:
                outcome = executor.run(request)
            except RateLimited as exc:
                raise self._broker_wait(att, exc) from exc
            except CredentialRejected as exc:  # the broker saw the 401 too: its words, once
                broker = att.seal.broker if att.seal is not None else None
                refused = broker.credential_refused if broker is not None else None
                raise (CredentialRejected(refused) if refused else exc) from exc
            outcome = self._metered(att, outcome)
        summary = mask(outcome.summary, self.secrets)[-SUMMARY_CHARS:]
        error = mask(outcome.error, self.secrets) if outcome.error is not None else None
        att.executed = replace(outcome, summary=summary, error=error)
        if cancel.is_set():
            raise _Stop("stopped", "executor stopped: the claim was lost or the agent stops")
        if outcome.limit == "timeout":
            raise _Stop("timed_out", f"executor exceeded the task timeout of {spec.timeout}s")
        if outcome.limit is not None:
            raise _Stop("failed", f"{outcome.limit} exceeded")
        if not outcome.ok:
            raise _Stop("failed", f"executor failed: {outcome.error or 'no reason given'}")

    def _push_unfinished(self, att: _Attempt, ws: Workspace) -> None:
        """Push work that failed verify, without a pull request: the retry resumes from it."""
        try:
            att.head = self.workspaces.push(ws, max(att.remaining(), UNFINISHED_PUSH_SECONDS))
            att.note(f"pushed unfinished work on {ws.branch} at {att.head} for the retry")
        except SecretInChanges as exc:
            raise _Stop("failed", str(exc)) from exc
        except ClusterError as exc:
            att.note(f"could not push unfinished work: {mask(str(exc), self.secrets)}")

    def _new_log(self, name: str) -> Path:
        """A log file of this run's own: an attempt that ran before and was paused or stopped
        (not counted, so the same attempt number) keeps its log, and this run writes the next
        ``<name>.runN.log``; each record names its own run's file."""
        self.logs.mkdir(parents=True, exist_ok=True)
        for run in range(1, 10_000):
            path = self.logs / (f"{name}.log" if run == 1 else f"{name}.run{run}.log")
            try:
                path.touch(exist_ok=False)
            except FileExistsError:
                continue
            return path
        raise ClusterError(f"{self.logs}: too many logs of {name}")

    @staticmethod
    def _broker_wait(att: _Attempt, exc: RateLimited) -> RateLimited:
        """A rate limit for which the executor has only its default backoff takes the wait the
        broker read from the 429's headers (retry-after, the ratelimit resets), when it read one."""
        usage = att.seal.usage if att.seal is not None else None
        until = usage.rate_limited_until if usage is not None else None
        wait = until - time.time() if until is not None else 0.0
        if exc.stated or wait <= 0:
            return exc
        return RateLimited(wait, f"{exc.detail} (the wait as the broker read it)")

    def _metered(self, att: _Attempt, outcome: ExecutionOutcome) -> ExecutionOutcome:
        """The outcome with what the broker measured: its token and dollar counts replace the
        executor's own report, a budget it refused ends the run, a rate limit it relayed
        pauses it."""
        usage = att.seal.usage if att.seal is not None else None
        if usage is None or not usage.requests:
            return outcome
        broker = att.seal.broker if att.seal is not None else None
        if not outcome.ok and broker is not None and broker.credential_refused is not None:
            raise CredentialRejected(broker.credential_refused)
        metered = replace(outcome, input_tokens=usage.input_tokens,
                          output_tokens=usage.output_tokens, cost_usd=usage.cost_usd)
        if usage.limit_hit is not None:
            return replace(metered, ok=False, limit=usage.limit_hit,
                           error=f"the broker refused more: {usage.limit_hit} spent")
        if not outcome.ok and usage.rate_limited_until is not None:
            wait = max(usage.rate_limited_until - time.time(), 0.0)
            raise RateLimited(wait, "the model API rate-limited the run (seen by the broker)")
        return metered

    def _prompt_file(self, att: _Attempt) -> Path:
        """Where task code reads its prompt: in the jail's HOME (logs are not in the jail)."""
        jail = att.jail
        return (jail.home if jail is not None else att.log.parent) / f"{att.log.stem}.prompt.md"

    def _verify(self, att: _Attempt, cancel: threading.Event, ws: Workspace, cmd: str) -> None:
        self._check(att, cancel, "verify")
        env = child_env(ws.path, self._task_env(att, self._prompt_file(att)))
        ended = shell_step("verify", cmd, ws.path, timeout=att.remaining(),
                           task_timeout=att.spec.timeout, log=att.log, env=env, cancel=cancel,
                           jail=att.jail)
        if ended is not None:
            raise _Stop(*ended)

    def _prompt(self, att: _Attempt) -> str:
        spec = att.spec
        if spec.follow_up is not None:
            pull = self.forge.pull(spec.repo, spec.follow_up.pull_request)
            att.pull_request = pull.url
            refused = followup.refusal(spec.follow_up, pull)
            if refused is not None:
                raise _Stop("invalid", refused)
            return followup.prompt(self.forge, spec, pull)
        parts = [spec.prompt.strip() or spec.title]
        if spec.issue is not None:
            parts.append(self.forge.issue_text(spec.repo, spec.issue).strip())
        return "\n\n".join(parts) + "\n"

    def _task_env(self, att: _Attempt, prompt_file: Path) -> dict[str, str]:
        return {
            "CLUSTER_TASK_ID": att.spec.id,
            "CLUSTER_ATTEMPT": str(att.held.claim.attempt),
            "CLUSTER_PROMPT_FILE": str(prompt_file),
        }

    def _pr_body(self, att: _Attempt) -> str:
        spec = att.spec
        lines = [f"Task `{spec.id}`, attempt {att.held.claim.attempt}, by claude-cluster.", ""]
        lines.append(f"Verified with `{spec.verify}`." if spec.verify else "No verify command.")
        if spec.issue is not None and is_slug(spec.repo):
            lines += ["", f"Closes #{spec.issue}"]
        summary = att.executed.summary.strip() if att.executed else ""
        if summary:
            lines += ["", "Executor summary:", "", "```", summary[-1500:], "```"]
        return mask("\n".join(lines) + "\n", self.secrets)

    def _check(self, att: _Attempt, cancel: threading.Event, step: str) -> None:
        if cancel.is_set():
            raise _Stop("stopped", f"stopped before {step}: the claim was lost or the agent stops")
        if att.remaining() <= 0:
            raise _Stop("timed_out", f"{step}: the task timeout of {att.spec.timeout}s was reached")

    @contextlib.contextmanager
    def _step(self, att: _Attempt, cancel: threading.Event, step: str) -> Iterator[None]:
        """Checks cancel and time first; turns rate limits into ``paused`` and errors into
        ``failed`` (or ``timed_out`` when the clock ran out meanwhile), naming the step."""
        self._check(att, cancel, step)
        try:
            yield
        except CredentialRejected as exc:  # not the task's fault: released, not counted
            raise _Stop("paused", f"{step}: {exc}", cause="credential") from exc
        except RateLimited as exc:  # the model API's or the forge's (ForgeRateLimited)
            raise _Stop("paused", f"{step}: {exc}", exc.retry_after, exc.cause) from exc
        except SecretInChanges as exc:
            raise _Stop("failed", str(exc)) from exc  # never retried as a timeout
        except ClusterError as exc:
            att.note(f"{step} failed: {mask(str(exc), self.secrets)}")
            if att.remaining() <= 0:
                raise _Stop("timed_out", f"{step}: the task timeout of {att.spec.timeout}s "
                                         f"was reached ({exc})") from exc
            raise _Stop("failed", f"{step}: {exc}") from exc

    def _outcome(self, att: _Attempt) -> Outcome:
        """The executor's outcome (masked, metered) completed with what the attempt did
        around it: the one value the release or result carries."""
        finished = time.time()
        return replace(
            att.executed or Outcome(), started_at=att.started, finished_at=finished,
            duration_s=round(finished - att.started, 3),
            branch=att.workspace.branch if att.workspace else None, head=att.head,
            pull_request=att.pull_request, log=str(att.log), replied_to=att.replied_to,
            round=att.spec.follow_up.round if att.spec.follow_up else None,
        )

    def _mask_log(self, log: Path) -> None:
        if not log.exists():
            return
        text = log.read_text(encoding="utf-8", errors="replace")
        masked = mask(text, self.secrets)
        if masked != text:
            log.write_text(masked, encoding="utf-8")
