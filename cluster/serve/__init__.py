"""``claude-cluster serve``: a read-only, stateless dashboard server over the state repo.

app (routes), api (JSON shapes), state (the one reading of the repo), chain (a task's
attempt history), metrics (fleet metrics), auth (the token), server (HTTP and the event stream).
"""
