"""Git hooks of the state repo: the server's pre-receive and people's pre-commit guard rails."""
