"""``--diff``: what a deploy would write, as unified diffs; secrets never shown."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence

from cluster.deploy.wanted import FileSpec
from cluster.secret import Secret, mask

Reader = Callable[[str], bytes | None]  # a file of the host by path; None when it has none


def file_diffs(
    files: Iterable[FileSpec], read: Reader, secrets: Sequence[Secret]
) -> tuple[str, ...]:
    """One diff per file, host side first; a secret file is named, its contents masked."""
    out = []
    for spec in files:
        if spec.secret:
            out.append(f"--- {spec.path} (secret: contents masked)\n+++ {spec.path}\n{spec.shown}")
            continue
        old = (read(spec.path) or b"").decode("utf-8", errors="replace")
        lines = difflib.unified_diff(old.splitlines(True), spec.shown.splitlines(True),
                                     f"{spec.path} (host)", f"{spec.path} (wanted)")  # fmt: skip
        out.append(mask("".join(lines), secrets))
    return tuple(out)
