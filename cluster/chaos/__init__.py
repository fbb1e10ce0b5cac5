"""Fault injection on real test hosts and the reclaim-time analysis of its history."""
