"""``invoke dashboard``: ``claude-cluster serve`` over the local cluster's state repo."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from cluster.tasks.local import LOCAL


@task(help={"port": "port on 127.0.0.1 (0 picks a free one)",
            "refresh": "re-read the state repo at most this often, in seconds",
            "state": "another state repo URL or path (default: the local cluster's)"})
def dashboard(c: Context, port: int = 8090, refresh: float = 2.0, state: str = "") -> None:
    """Serve the dashboard, its JSON API and fleet metrics for the local cluster (invoke up)
    on 127.0.0.1 until Ctrl-C; read-only."""
    del c
    from cluster.cli.serve import build_server, serve_until_stopped
    from cluster.cli.serving import stop_on_signals
    from cluster.errors import ClusterError

    target = state or str(LOCAL / "state.git")
    if not state and not (LOCAL / "state.git" / "HEAD").exists():
        raise Exit(f"no local cluster at {LOCAL}: run `invoke up` first, or give --state",
                   code=1)
    try:
        server = build_server(target, "127.0.0.1", port, None, refresh)
    except ClusterError as exc:
        raise Exit(f"dashboard: {exc}", code=1) from exc
    serve_until_stopped(server, stop_on_signals())
