"""Deploying agents: one Nornir task per host, each a systemd host or a container host.

Wheels (and the agent image, for container hosts) are built once on the control host. A systemd
host goes facts, preflight, plan, apply, verify by heartbeat, undo (hostrun, plan); a container
host has its own path: its files and container, verified by heartbeat, put back on failure
(containerhost). Beside them: the lock, rollback, the summary; statehost and testbed are test
beds for the real-host tests.
"""
