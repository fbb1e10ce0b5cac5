"""Intake: labelled GitHub issues, and reviews, comments and failed checks on the agents' pull
requests (follow-ups), become tasks on the state repo's main."""
