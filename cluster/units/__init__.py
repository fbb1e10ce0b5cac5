"""Pure rendering of what an agent host runs: systemd unit, agent.yaml, secrets, container spec."""
