"""Which wheels hosts import in place (the archive on ``sys.path``) instead of unpacking them.

Unpacking writes one file per module and per compiled module on every host: the anthropic SDK
alone is some 3,000 modules, 6,000 files with their bytecode, most of a release's inodes. Python
imports pure modules straight from a zip archive (``zipimport``; ``importlib.metadata`` and
``importlib.resources`` read from it too), so such a wheel costs one file instead. A wheel
qualifies only when nothing in it has to be a real file:

- it installs into purelib (``Root-Is-Purelib: true``) and has no ``.data`` directory (scripts,
  headers, data files go elsewhere than site-packages);
- it carries no native code (``dlopen`` needs a file) and no ``.pth`` file (read from
  site-packages only);
- no module mentions ``__file__``: code that finds its data beside itself on disk would look
  inside the archive's path and fail, so any mention, used or not, means unpacking.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from email.parser import HeaderParser
from pathlib import Path

NATIVE = (".so", ".pyd", ".dylib")
_FILE = re.compile(rb"\b__file__\b")


def why_unpacked(wheel: zipfile.ZipFile) -> str | None:
    """Why this wheel must be unpacked; None when it can be imported in place."""
    names = [n for n in wheel.namelist() if not n.endswith("/")]
    meta = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/WHEEL")]
    if len(meta) != 1:
        return "no single .dist-info/WHEEL"
    headers = HeaderParser().parsestr(wheel.read(meta[0]).decode("utf-8", "replace"))
    if str(headers.get("Root-Is-Purelib", "")).strip().lower() != "true":
        return "not purelib"
    for name in names:
        top = name.split("/", 1)[0]
        if top.endswith(".data"):
            return f"installs outside site-packages ({top})"
        if "/" not in name and name.endswith(".pth"):
            return f"has a .pth file ({name})"
        if name.endswith(NATIVE) or ".so." in name.rsplit("/", 1)[-1]:
            return f"native code ({name})"
        if name.endswith(".py") and _FILE.search(wheel.read(name)):
            return f"{name} uses __file__"
    return None


def in_place(wheels: Iterable[Path]) -> frozenset[str]:
    """The names of ``wheels`` that hosts import in place; anything unreadable is unpacked."""
    chosen = set()
    for path in wheels:
        try:
            with zipfile.ZipFile(path) as wheel:
                if why_unpacked(wheel) is None:
                    chosen.add(path.name)
        except (OSError, zipfile.BadZipFile):
            continue
    return frozenset(chosen)
