"""The work plane's protocol: tasks, claims, results and heartbeats kept in a git repo."""
