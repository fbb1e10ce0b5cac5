"""Day-two operations on the fleet: add and remove agents, read logs, restart."""
