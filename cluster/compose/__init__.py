"""A cluster on one host under Docker Compose: a state service and one service per specialty."""
