"""Sealed attempts: the sandbox every task process runs in, and the broker holding its secrets."""
