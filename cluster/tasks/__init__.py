"""Invoke task collections; tasks.py at the top of the project assembles them."""
