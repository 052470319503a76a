"""Collections: named document sets in one deployment, each its own index.

A question is answered from one collection only (`default` unless it names another), so it
never sees another collection's passages: each collection is a separate `ChromaIndex` (its own
pointer, generations and writer lease).

Chroma names. The `collection` setting (`assistant` by default) stays the name prefix of the
`default` collection, so an index built before collections existed is the `default` collection
unchanged. Another collection NAME lives under `<prefix>.<NAME>.`: its pointer is
`<prefix>.<NAME>.-pointer`, its generations `<prefix>.<NAME>.-g<n>-...`. Names hold no period,
so no collection's Chroma names start with another's (`ChromaIndex` finds its generations by
prefix, and `reset()` deletes by prefix), and the default's (`<prefix>-...`) never match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

DEFAULT = "default"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
POINTER = "-pointer"


class CollectionError(ValueError):
    """A collection a request cannot use: `status` 422 (not a valid name), 404 (no such
    collection) or 403 (the request's origin may not use it)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def valid_name(name: object) -> str:
    """`name` when it is a valid collection name, else CollectionError (422)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name)[:80]
        raise CollectionError(
            f"Invalid collection name {shown}: use 1-63 lowercase letters, digits, '_' or "
            "'-', starting with a letter or a digit.", 422)
    return name


def index_name(prefix: str, name: str) -> str:
    """The Chroma name prefix of collection `name` (see the module doc)."""
    valid_name(name)
    return prefix if name == DEFAULT else f"{prefix}.{name}."


def names_in(prefix: str, chroma_names: Iterable[str]) -> list[str]:
    """The collections whose pointer is among `chroma_names`: `default` first (it always
    exists), then the others in alphabetical order."""
    found: set[str] = set()
    head = f"{prefix}."
    tail = f".{POINTER}"
    for cname in chroma_names:
        if cname.startswith(head) and cname.endswith(tail):
            name = cname[len(head):-len(tail)]
            if NAME_RE.fullmatch(name) and name != DEFAULT:
                found.add(name)
    return [DEFAULT, *sorted(found)]


def stats(pointer_metadata: dict[str, Any] | None) -> tuple[int, int | None]:
    """(documents, chunks) from a pointer's metadata; chunks is None when an entry of the
    manifest does not record its count (an index written by an older version)."""
    meta = pointer_metadata or {}
    try:
        manifest = json.loads(meta.get("manifest", "{}"))
    except ValueError:
        manifest = {}
    if not isinstance(manifest, dict):
        return 0, 0
    chunks = 0
    for entry in manifest.values():
        if not isinstance(entry, dict) or "chunks" not in entry:
            return len(manifest), None
        chunks += int(entry.get("chunks", 0))
    return len(manifest), chunks
