"""One writer at a time per index: the ingest lock.

Two ingests into one index at once would each build a generation from the same starting
manifest, and the later flip would drop the earlier one's documents; each one's clean-up
would also delete the other's half-written generation. So an ingest holds a writer lock
from reading the index state until its flip:

- embedded Chroma: an exclusive `flock` on `<data dir>/chroma/ingest.lock` (released by the
  kernel when the process dies);
- a Chroma server, which ingests on other machines share: a lease kept in the server itself.
  Each lease is a small collection `<name>-lease-<epoch>` whose metadata holds the owner and
  an expiry, renewed while the ingest runs. Taking the lease creates the next epoch's
  collection: Chroma refuses to create a name that exists, so of two ingests that both saw
  the previous lease free (released or expired) exactly one succeeds (the check-and-set).
  A holder whose lease expired (it stalled for longer than the lease lasts) and was taken
  over notices at its next renewal or before its flip, and stops without flipping.

A second ingest waits up to `wait_s` (ASSISTANT_INGEST_LOCK_WAIT_S), saying once that it
waits, then gives up with `IngestBusy`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .store import StoreError, is_unreachable

log = logging.getLogger(__name__)

Notify = Callable[[str], None]
POLL_S = 0.5


class IngestBusy(StoreError):
    """Another ingest kept the index for longer than this one may wait."""


class WriterLock(Protocol):
    def acquire(self, wait_s: float, notify: Notify | None = None) -> None: ...

    def check(self) -> None:
        """Raise StoreError when the lock is no longer ours (a lease that was taken over)."""

    def release(self) -> None: ...


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _wait_message(holder: str, where: str, wait_s: float) -> str:
    who = f" ({holder})" if holder else ""
    return f"another ingest{who} is writing to {where}; waiting up to {wait_s:g} s for it"


def _busy(holder: str, where: str, wait_s: float) -> IngestBusy:
    who = f" ({holder})" if holder else ""
    return IngestBusy(
        f"another ingest{who} is still writing to {where} after {wait_s:g} s; nothing was "
        "changed. Run the ingest again when it has finished (ASSISTANT_INGEST_LOCK_WAIT_S "
        "sets how long to wait)", location=where)


class FileLock:
    """An exclusive flock on a file beside the embedded store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def acquire(self, wait_s: float, notify: Notify | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder()
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise _busy(holder, str(self.path.parent), wait_s) from None
                if not announced and notify is not None:
                    notify(_wait_message(holder, str(self.path.parent), wait_s))
                announced = True
                time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{owner_id()} since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        self._fd = fd

    def check(self) -> None:
        if self._fd is None:
            raise StoreError("the ingest lock is not held", location=str(self.path.parent))

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class ChromaLease:
    """A lease on a Chroma server, shared by every machine that ingests into the index."""

    def __init__(self, client: Any, name: str, location: str, ttl_s: float = 60.0,
                 owner: str = "") -> None:
        self.client = client
        self.prefix = f"{name}-lease-"
        self.location = location
        self.ttl_s = ttl_s
        self.owner = owner or owner_id()
        self.epoch = 0
        self._expires = 0.0
        self._lost = ""
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- the leases on the server ----------------------------------------------------------
    def _name(self, epoch: int) -> str:
        return f"{self.prefix}{epoch:09d}"

    def _epochs(self) -> list[int]:
        out = []
        for col in self.client.list_collections():
            cname = col if isinstance(col, str) else col.name
            if cname.startswith(self.prefix) and cname[len(self.prefix):].isdigit():
                out.append(int(cname[len(self.prefix):]))
        return sorted(out)

    def _meta(self, epoch: int) -> dict[str, Any] | None:
        try:
            return dict(self.client.get_collection(self._name(epoch)).metadata or {})
        except Exception as exc:
            if isinstance(exc, StoreError) or is_unreachable(exc):
                raise
            return None  # deleted meanwhile

    @staticmethod
    def _free(meta: dict[str, Any] | None) -> bool:
        return meta is None or bool(meta.get("released")) or \
            float(meta.get("expires", 0)) < time.time()

    def _record(self, released: bool = False) -> dict[str, Any]:
        self._expires = time.time() + self.ttl_s
        return {"owner": self.owner, "expires": self._expires, "released": released,
                "ttl_s": self.ttl_s}

    # -- the lock --------------------------------------------------------------------------
    def acquire(self, wait_s: float, notify: Notify | None = None) -> None:
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            epochs = self._epochs()
            top = epochs[-1] if epochs else 0
            meta = self._meta(top) if top else None
            if self._free(meta) and self._take(top + 1):
                return
            holder = str((meta or {}).get("owner", ""))
            if time.monotonic() >= deadline:
                raise _busy(holder, self.location, wait_s)
            if not announced and notify is not None:
                notify(_wait_message(holder, self.location, wait_s))
            announced = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def _take(self, epoch: int) -> bool:
        try:
            self.client.create_collection(self._name(epoch), metadata=self._record(),
                                          embedding_function=None)
        except Exception as exc:
            if isinstance(exc, StoreError) or is_unreachable(exc):
                raise
            return False  # another ingest created this epoch first
        if any(e > epoch for e in self._epochs()):
            # A late taker that saw an old epoch as the newest: the newer lease wins.
            with contextlib.suppress(Exception):
                self.client.delete_collection(self._name(epoch))
            return False
        self.epoch = epoch
        self._lost = ""
        for old in self._epochs():
            if old < epoch:
                with contextlib.suppress(Exception):  # another taker may delete it too
                    self.client.delete_collection(self._name(old))
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="ingest-lease",
                                         daemon=True)
        self._renewer.start()
        return True

    def _still_ours(self) -> bool:
        epochs = self._epochs()
        if not epochs or epochs[-1] != self.epoch:
            return False
        meta = self._meta(self.epoch)
        return meta is not None and meta.get("owner") == self.owner

    def renew(self) -> None:
        if not self._still_ours():
            self._lost = "another ingest took the lease over"
            return
        self.client.get_collection(self._name(self.epoch)).modify(metadata=self._record())

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.renew()
            except Exception as exc:  # the server may be back before the lease runs out
                log.warning("could not renew the ingest lease: %s", exc)
            if self._lost:
                return

    def check(self) -> None:
        if not self.epoch:
            raise StoreError("the ingest lease is not held", location=self.location)
        if not self._lost and time.time() > self._expires:
            self._lost = "the lease ran out before it could be renewed"
        if not self._lost and not self._still_ours():
            self._lost = "another ingest took the lease over"
        if self._lost:
            raise StoreError(f"this ingest lost its lease on {self.location} ({self._lost}); "
                             "nothing was changed", location=self.location)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        if self.epoch and not self._lost:
            try:
                if self._still_ours():
                    self.client.get_collection(self._name(self.epoch)).modify(
                        metadata=self._record(released=True))
            except Exception as exc:  # it expires by itself
                log.warning("could not release the ingest lease: %s", exc)
        self.epoch = 0

