"""``python -m cluster`` is ``claude-cluster``."""

from __future__ import annotations

import sys

from cluster.cli import main

sys.exit(main())
