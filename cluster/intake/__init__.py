"""Issue intake: GitHub issues with a label become tasks on the state repo's main."""
