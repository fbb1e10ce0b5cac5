"""Deploying agents: wheels built once, host facts and preflight checks (Nornir tasks later)."""
