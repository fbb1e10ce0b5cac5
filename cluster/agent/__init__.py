"""The agent daemon: claims tasks it serves, runs them within limits, publishes results."""
