"""Real SSH test hosts: systemd containers built without a registry, on their own network."""
