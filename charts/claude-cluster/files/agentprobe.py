"""The agent pod's liveness probe and metrics relay (stdlib only; run by the image's python3).
Readiness is `claude-cluster agent health` (heartbeat fresh, not blocked), the compose
healthcheck's own command.

live:  the agent's metrics endpoint (127.0.0.1:PORT, cluster/agent/metrics.py) answers and
       names this agent (CLUSTER_AGENT_ID): the process is up and its loop serving.
relay: serve BIND:RELAY_PORT/metrics (BIND: every address by default) from 127.0.0.1:PORT,
       for a ServiceMonitor (the agent binds its metrics to loopback only).
"""

import http.server
import os
import sys
import urllib.request

AGENT = os.environ.get("CLUSTER_AGENT_ID", "")
PORT = int(os.environ.get("CLUSTER_AGENT_METRICS_PORT", "9464"))


def metrics() -> str:
    url = f"http://127.0.0.1:{PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read(1 << 20).decode("utf-8", "replace")


def live() -> int:
    try:
        text = metrics()
    except OSError as exc:
        print(f"metrics endpoint 127.0.0.1:{PORT}: {exc}")
        return 1
    if f'agent="{AGENT}"' not in text:
        print(f"metrics endpoint answers, but not for agent {AGENT}")
        return 1
    return 0


class Relay(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib's name
        try:
            body, code = metrics().encode(), 200
        except OSError as exc:
            body, code = str(exc).encode(), 503
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


def relay(port: int, bind: str) -> int:
    http.server.ThreadingHTTPServer((bind, port), Relay).serve_forever()
    return 0


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "relay":
        bind = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"  # noqa: S104 - the pod's own IP
        sys.exit(relay(int(sys.argv[2]), bind))
    sys.exit(live() if what == "live" else 2)
