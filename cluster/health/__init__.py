"""Fleet health: facts read from every host and the state repo, judged by a pure verdict."""
