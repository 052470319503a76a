"""`assistant ingest --watch`: keep the index in step with folders while their files change.

The folders are watched with watchfiles (the operating system's file events, or polling
where there are none). Changes are collected until the folders have been quiet for
`quiet_s` seconds (and every changed file is at least that old, so a file still being
copied is not read half-written); then the batch runs the ordinary ingest over all the
watched paths: incremental (unchanged files cost a hash), under the index's writer lock,
crash-safe (a new generation, switched to in one step). Added and changed files are
embedded, removed ones leave the index (unless `sync` is off, as with `--keep`).

An ingest that fails as a whole (another ingest kept the index too long, the Chroma server
is down) is retried after a pause, with or without new changes; a file that cannot be read
is reported and skipped as in any ingest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .documents import skipped_name
from .ingest import IngestReport

if TYPE_CHECKING:
    from .core import Assistant

log = logging.getLogger(__name__)

QUIET_S = 1.5  # the default quiet period before a batch is ingested
WAKE_MS = 1000  # the watcher wakes this often without changes (retries, the first ingest)
MAX_SETTLE_S = 60.0  # longest wait for files that keep changing
RETRY_S = (5.0, 15.0, 60.0)  # pauses before retrying a failed ingest, then every 60 s


@dataclass
class Batch:
    """One ingest run by the watcher: the first one (`changes` 0), then one per batch."""

    changes: int  # changed paths in the batch
    report: IngestReport | None = None
    error: str = ""  # the ingest failed as a whole; it is retried
    retry_s: float = 0.0

    def line(self) -> str:
        """The batch in one line, for the terminal and the log."""
        when = time.strftime("%H:%M:%S")
        what = "first ingest" if not self.changes else \
            f"{self.changes} change{'s' if self.changes != 1 else ''}"
        if self.error:
            return f"{when} {what}: {self.error}; retrying in {self.retry_s:.0f} s"
        r = self.report
        assert r is not None
        parts = [f"{len(names)} {label}{_names(names)}"
                 for label, names in (("added", r.added), ("updated", r.updated),
                                      ("removed", r.removed)) if names]
        if r.failures:
            parts.append(f"{len(r.failures)} failed")
        done = ", ".join(parts) if parts else "no change to the index"
        return (f"{when} {what}: {done}; {r.documents} documents, {r.chunks} chunks "
                f"({r.seconds:.1f} s)")


def _names(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most]) + (f", +{len(names) - most} more" if len(names) > most
                                       else "")
    return f" ({shown})"


class _Filter:
    """Which changed paths matter: files under a watched folder that an ingest would read
    (not hidden, no Office owner files) or a watched file itself, never anything under the
    data folder."""

    def __init__(self, folders: list[Path], files: set[Path], ignore: list[Path]) -> None:
        self.folders, self.files, self.ignore = folders, files, ignore

    def __call__(self, change: Any, path: str) -> bool:
        p = Path(path)
        if any(p == i or i in p.parents for i in self.ignore):
            return False
        if p in self.files:
            return True
        for folder in self.folders:
            if folder in p.parents:
                return not any(skipped_name(part) for part in p.relative_to(folder).parts)
        return False


def _settle(paths: Sequence[Path], quiet_s: float, stop: threading.Event) -> None:
    """Wait until none of `paths` has been written to for `quiet_s` seconds."""
    deadline = time.monotonic() + MAX_SETTLE_S
    while not stop.is_set() and time.monotonic() < deadline:
        newest = 0.0
        for p in paths:
            try:
                newest = max(newest, p.stat().st_mtime)
            except OSError:  # removed meanwhile
                continue
        wait = newest + quiet_s - time.time()
        if wait <= 0:
            return
        stop.wait(min(wait, 0.5))


def watch(assistant: Assistant, paths: Sequence[Path] | None = None, *, sync: bool = True,
          quiet_s: float = QUIET_S, stop: threading.Event | None = None,
          on_batch: Callable[[Batch], None] | None = None,
          notify: Callable[[str], None] | None = None,
          collection: str | None = None) -> None:
    """Ingest `paths` (default: the corpus folder) into `collection`, then again after every
    batch of changes, until `stop` is set (or KeyboardInterrupt). `on_batch` hears each
    ingest."""
    from watchfiles import watch as watch_changes

    stop = stop or threading.Event()
    sources = [Path(p) for p in paths] if paths else [assistant.settings.corpus_dir]
    resolved = [p.resolve() for p in sources]
    folders = [p for p in resolved if p.is_dir()]
    files = {p for p in resolved if not p.is_dir()}
    targets = sorted({str(p) for p in folders} | {str(p.parent) for p in files})
    missing = [t for t in targets if not Path(t).is_dir()]
    if missing:
        raise FileNotFoundError(f"cannot watch {missing[0]}: no such folder")
    ignore = [Path(assistant.settings.data_dir).resolve()]
    accept = _Filter(folders, files, ignore)

    failures_in_a_row = 0

    def run(changed: set[str]) -> Batch:
        """One ingest; a batch with `error` when it failed as a whole (it is retried)."""
        nonlocal failures_in_a_row
        batch = Batch(changes=len(changed))
        try:
            batch.report = assistant.ingest(sources, sync=sync, notify=notify,
                                            collection=collection)
            failures_in_a_row = 0
        except Exception as exc:  # store down, lock kept too long, a bug: keep watching
            log.warning("watch: ingest failed: %s", exc, exc_info=not _expected(exc))
            failures_in_a_row += 1
            batch.error = f"ingest failed ({exc})"
            batch.retry_s = RETRY_S[min(failures_in_a_row, len(RETRY_S)) - 1]
        log.info("watch: %s", batch.line())
        if on_batch is not None:
            on_batch(batch)
        return batch

    pending: set[str] = set()  # changed paths not yet ingested (a failed ingest keeps them)
    first = True  # the first ingest has not succeeded yet
    retry_at = 0.0
    log.info("watch: watching %s", ", ".join(targets))
    for changes in watch_changes(*targets, watch_filter=accept, step=int(quiet_s * 1000),
                                 debounce=max(10_000, int(quiet_s * 4000)),
                                 rust_timeout=WAKE_MS, yield_on_timeout=True,
                                 stop_event=stop):
        # The watcher runs before the first ingest reads the files: nothing that changes
        # from then on is missed.
        pending |= {path for _, path in changes}
        if not (first or pending) or time.monotonic() < retry_at:
            continue
        if changes:
            _settle([Path(p) for _, p in changes], quiet_s, stop)
        if stop.is_set():
            return
        changed, pending = pending, set()
        batch = run(set() if first else changed)
        if batch.error:
            pending |= changed
            retry_at = time.monotonic() + batch.retry_s
        else:
            first = False


def _expected(exc: Exception) -> bool:
    from .store import StoreError

    return isinstance(exc, StoreError | OSError)
