"""Finds the Debian mirror this machine's apt already uses, so no host name is hard-coded."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from cluster.errors import ConfigError

APT_DIR = Path("/etc/apt")
_SCHEMES = ("http://", "https://", "file:")


def deb822_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    """Yield (uri, suites) for each enabled ``deb`` stanza of a ``.sources`` text."""
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        suites = stanza.get("suites", "").split()
        for uri in stanza.get("uris", "").split():
            yield uri, suites


def one_line_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    """Yield (uri, [suite]) for each ``deb`` line of a ``sources.list`` text."""
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield words[0], [words[1]]


def choose_mirror(entries: Iterable[tuple[str, list[str]]], suite: str) -> str:
    """Return the first usable URI that serves ``suite`` itself (not -security, -updates)."""
    for uri, suites in entries:
        if suite in suites and uri.startswith(_SCHEMES):
            return uri
    raise ConfigError(
        f"no apt source serves suite {suite!r} over http(s) or file: "
        f"add a 'deb' entry for it to {APT_DIR}/sources.list(.d) or pass a mirror explicitly"
    )


def apt_entries(apt_dir: Path = APT_DIR) -> Iterator[tuple[str, list[str]]]:
    """Entries of apt's sources in apt's own order: sources.list, then sources.list.d/."""
    main = apt_dir / "sources.list"
    if main.is_file():
        yield from one_line_entries(main.read_text(encoding="utf-8", errors="replace"))
    parts = apt_dir / "sources.list.d"
    for path in sorted(parts.glob("*")) if parts.is_dir() else []:
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".sources":
            yield from deb822_entries(text)
        elif path.suffix == ".list":
            yield from one_line_entries(text)


def find_mirror(suite: str, apt_dir: Path = APT_DIR) -> str:
    """The mirror URI for ``suite`` read from apt's configuration at run time."""
    return choose_mirror(apt_entries(apt_dir), suite)


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif raw[0] in " \t" and key:
            fields[key] += " " + raw.strip()
        elif ":" in raw:
            name, value = raw.split(":", 1)
            key = name.strip().lower()
            fields[key] = value.strip()
