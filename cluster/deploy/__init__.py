"""Deploying agents: one Nornir task per host, each host driven through one runtime contract.

Wheels (and the agent image, for container hosts) are built once on the control host. Every
host goes facts, preflight, plan, apply, verify by heartbeat, undo on failure (hostrun), through
``runtime.HostRuntime``, which systemd hosts (systemdhost, plan) and container hosts
(containerhost, containerplan) implement. Beside them: the lock, rollback, the summary. The
test beds for the real-host tests are in ``cluster.testhosts``.
"""
