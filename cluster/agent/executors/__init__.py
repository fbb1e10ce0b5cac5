"""Executors: the code that does a task's work in its workspace: claude, claude-code, command."""
