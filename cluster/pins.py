"""Versions pinned in one place: setup.sh, deploy and the agent image all read this file.

setup.sh reads ``CLAUDE_CODE_VERSION`` with sed, so keep it one ``NAME = "x.y.z"`` line.
"""

# The Claude Code CLI (npm @anthropic-ai/claude-code): setup.sh installs it on the control host,
# deploy packs that installation and ships it to the hosts whose agents use the `claude-code`
# executor (cluster/deploy/claudecli.py), the agent image carries the same tarball. Tests script
# the Messages API traffic of exactly this version. To change it: docs/deploy.md.
CLAUDE_CODE_VERSION = "2.1.332"
