"""`assistant bench`: speed and memory of the assistant beside the naive llama-index baseline.

Every measurement runs in a fresh child process (`python -m assistant.evaluation.bench TASK
JSON`), so peak memory (ru_maxrss) belongs to that task alone and model loading is timed
apart from the work:

- ingest throughput: the brochure; the brochure plus ../shared/related; a synthetic corpus of
  at least 5,000 chunks made deterministically from the brochure's sentences. The assistant
  (structure-aware chunks, incremental ingest) beside llama-index's defaults
  (SimpleDirectoryReader, SentenceSplitter, VectorStoreIndex.from_documents into Chroma).
- unchanged re-ingest: the assistant's incremental ingest run again (llama-index's naive path
  has no incremental mode: it would embed everything again).
- warm latency p50/p95 over the question set: retrieval, answer, time to first token, on the
  brochure index and on the synthetic index.
- cold start to the first answer: a new interpreter that imports, loads and answers once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..settings import Settings
from .metrics import percentile


# -- the synthetic corpus ---------------------------------------------------------------------
def brochure_sentences(text: str) -> list[str]:
    """Plain sentences of the brochure's prose (no headings, lists, front matter)."""
    body = re.sub(r"^---\n.*?\n---\n", "", text, flags=re.S)
    out = []
    for line in body.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-", "*", ">", "|")) or len(line) < 60:
            continue
        line = line.replace("**", "")
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", line)
                if 40 <= len(s.strip()) <= 400]
    return out


def write_synthetic_corpus(dest: Path, sentences: list[str], chunks: int,
                           sections_per_doc: int = 20, seed: int = 5) -> int:
    """Documents of `sections_per_doc` headed sections, one paragraph (< 900 chars, so one
    chunk) each, made by recombining brochure sentences. Returns the number of sections."""
    if not sentences:
        raise ValueError("no sentences to recombine")
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    docs = -(-chunks // sections_per_doc)
    n = 0
    for d in range(docs):
        parts = [f"# Synthetic report {d + 1:04d}\n"]
        for s in range(sections_per_doc):
            if n >= chunks:
                break
            words = rng.choice(sentences).split()[:4]
            parts.append(f"## {d + 1}.{s + 1} {' '.join(w.strip(',.;:') for w in words)}\n")
            para: list[str] = []
            while sum(len(x) + 1 for x in para) < 500:
                candidate = rng.choice(sentences)
                if sum(len(x) + 1 for x in para) + len(candidate) > 860:
                    if para:
                        break
                    candidate = candidate[:800]
                para.append(candidate)
            parts.append(" ".join(para) + "\n")
            n += 1
        (dest / f"synthetic-{d + 1:04d}.md").write_text("\n".join(parts), encoding="utf-8")
    return n


# -- child tasks ------------------------------------------------------------------------------
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _chroma_client(path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(path=str(path),
                                     settings=ChromaSettings(anonymized_telemetry=False))


def _hf_embedding(model: str) -> Any:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from ..embeddings import packaged_model_path

    return HuggingFaceEmbedding(model_name=model or packaged_model_path(), device="cpu")


def _markdown_files(sources: list[str]) -> list[str]:
    files: list[str] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files += sorted(str(f) for f in p.rglob("*.md") if f.name != "README.md"
                            and f.name != "SOURCES.md")
        else:
            files.append(str(p))
    return files


def task_ingest(p: dict[str, Any]) -> dict[str, Any]:
    data_dir = Path(p["data_dir"])
    if p["mode"] == "assistant":
        from ..core import Assistant
        from ..embeddings import load_embedder

        t0 = time.perf_counter()
        embedder = load_embedder(p.get("model", ""))
        load_s = time.perf_counter() - t0
        assistant = Assistant(Settings(data_dir=data_dir), embedder=embedder)
        first = assistant.ingest([Path(s) for s in p["sources"]])
        out = {"load_s": load_s, "seconds": first.seconds, "chunks": first.chunks,
               "embedded": first.embedded_chunks, "sentences": first.embedded_sentences,
               "documents": first.documents,
               "failures": first.failures}
        again = assistant.ingest([Path(s) for s in p["sources"]])
        out["unchanged_s"] = again.seconds
        out["unchanged_embedded"] = again.embedded_chunks
    else:
        from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        t0 = time.perf_counter()
        embed = _hf_embedding(p.get("model", ""))
        load_s = time.perf_counter() - t0
        client = _chroma_client(data_dir / "baseline-chroma")
        t1 = time.perf_counter()
        docs = SimpleDirectoryReader(input_files=_markdown_files(p["sources"])).load_data()
        collection = client.get_or_create_collection("baseline")
        index = VectorStoreIndex.from_documents(
            docs, storage_context=StorageContext.from_defaults(
                vector_store=ChromaVectorStore(chroma_collection=collection)),
            embed_model=embed)
        seconds = time.perf_counter() - t1
        out = {"load_s": load_s, "seconds": seconds, "chunks": collection.count(),
               "documents": len(docs), "unchanged_s": None}
        del index
    out["peak_mb"] = _peak_mb()
    return out


def _assistant(p: dict[str, Any]) -> Any:
    from ..core import Assistant

    settings = Settings(data_dir=Path(p["data_dir"]), generator=p.get("generator", "extractive"),
                        embedding_model=p.get("model", ""), top_k=p.get("top_k", 5))
    if p.get("llm_model_path"):
        settings = settings.with_overrides(llm_model_path=p["llm_model_path"])
    if p.get("onnx_cache_dir"):  # the export made once, not in every index's folder
        settings = settings.with_overrides(onnx_cache_dir=Path(p["onnx_cache_dir"]))
    return Assistant(settings)


def _baseline(p: dict[str, Any]) -> Any:
    from .baseline import NaiveBaseline, chat_model_for

    settings = Settings(data_dir=Path(p["data_dir"]), generator=p.get("generator", "extractive"),
                        embedding_model=p.get("model", ""), top_k=p.get("top_k", 5))
    if p.get("llm_model_path"):
        settings = settings.with_overrides(llm_model_path=p["llm_model_path"])
    chat = chat_model_for(settings) if settings.generator != "extractive" else None
    return NaiveBaseline(settings, chat)


def _ask_assistant(assistant: Any, question: str, generator: str) -> tuple[float, float]:
    from ..core import Delta

    t0 = time.perf_counter()
    ttft = None
    for event in assistant.stream(question, (), generator=generator):
        if isinstance(event, Delta) and ttft is None and event.text:
            ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (ttft if ttft is not None else total) * 1000, total * 1000


def task_latency(p: dict[str, Any]) -> dict[str, Any]:
    questions: list[str] = p["questions"]
    generator = p.get("generator", "extractive")
    top_k = p.get("top_k", 5)
    retrieval, ttft, total = [], [], []
    if p["mode"] == "assistant":
        assistant = _assistant(p)
        retriever = assistant.retriever
        _ask_assistant(assistant, questions[0], generator)  # warm-up
        for q in questions:
            t0 = time.perf_counter()
            retriever.retrieve(q, top_k)
            retrieval.append((time.perf_counter() - t0) * 1000)
            a, b = _ask_assistant(assistant, q, generator)
            ttft.append(a)
            total.append(b)
    else:
        baseline = _baseline(p)
        retr = baseline.index.as_retriever(similarity_top_k=top_k)
        baseline.answer(questions[0])  # warm-up
        for q in questions:
            t0 = time.perf_counter()
            retr.retrieve(q)
            retrieval.append((time.perf_counter() - t0) * 1000)
            _, _, a, b = baseline.answer(q)
            ttft.append(a)
            total.append(b)
        baseline.close()
    return {"retrieval_ms": retrieval, "ttft_ms": ttft, "total_ms": total,
            "peak_mb": _peak_mb()}


def task_cold(p: dict[str, Any]) -> dict[str, Any]:
    """Imports, loads and answers once; the parent measures from before the interpreter
    started."""
    if p["mode"] == "assistant":
        assistant = _assistant(p)
        answer = assistant.ask(p["question"], (), generator=p.get("generator", "extractive"))
        text = answer.answer
    else:
        baseline = _baseline(p)
        text = baseline.answer(p["question"])[0]
        baseline.close()
    return {"answered_at": time.time(), "peak_mb": _peak_mb(), "answer": text[:120]}


# -- the scale benchmark ----------------------------------------------------------------------
DISTINCT_SECTIONS = 5000  # a larger scale corpus repeats these documents under other names
SCALE_BEGIN, SCALE_END = "<!-- scale benchmark -->", "<!-- /scale benchmark -->"


def write_scaled_corpus(dest: Path, sentences: list[str], chunks: int,
                        distinct: int = DISTINCT_SECTIONS) -> dict[str, int]:
    """A synthetic corpus of about `chunks` sections (one chunk each): up to `distinct` made by
    write_synthetic_corpus, then copies of those documents under other file names (other
    documents and chunk ids, the same texts), until `chunks` is reached."""
    base = min(chunks, distinct)
    write_synthetic_corpus(dest, sentences, base)
    files = sorted(dest.glob("synthetic-*.md"))
    sizes = {f: f.read_text(encoding="utf-8").count("\n## ") for f in files}
    n, copy = base, 1
    while n < chunks:
        copy += 1
        for f in files:
            if n >= chunks:
                break
            (dest / f"{f.stem}-copy{copy:03d}.md").write_bytes(f.read_bytes())
            n += sizes[f]
    return {"chunks": n, "distinct": base, "copies": copy}


class MemoEmbedder:
    """Embeds each distinct text once and hands out the same vector for its repeats: what
    makes a 100,000-chunk index of repeated documents affordable to build for the serving
    figures (the vectors are the model's, for these very texts)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.dimension = inner.name, inner.dimension
        self.backend = getattr(inner, "backend", "")
        self.cache: dict[str, Any] = {}
        self.embedded = 0
        self.seconds = 0.0

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            t0 = time.perf_counter()
            self.cache.update(zip(missing, self.inner.embed(missing), strict=True))
            self.seconds += time.perf_counter() - t0
            self.embedded += len(missing)
        if not texts:
            return self.inner.embed([])
        return np.stack([self.cache[t] for t in texts])


def task_scale_ingest(p: dict[str, Any]) -> dict[str, Any]:
    """One ingest of the scale corpus with the chosen backend, in a fresh process."""
    from ..core import Assistant
    from ..embeddings import load_embedder

    settings = Settings(data_dir=Path(p["data_dir"]), generator="extractive",
                        embedding_backend=p.get("backend", "onnx"),
                        onnx_cache_dir=Path(p["onnx_cache_dir"]) if p.get("onnx_cache_dir")
                        else None)
    t0 = time.perf_counter()
    embedder: Any = load_embedder(p.get("model", ""), settings.embedding_backend,
                                  settings.onnx_dir())
    load_s = time.perf_counter() - t0
    memo = MemoEmbedder(embedder) if p.get("memo") else None
    assistant = Assistant(settings, embedder=memo or embedder)
    report = assistant.ingest([Path(s) for s in p["sources"]])
    if not report.ok:
        raise RuntimeError(f"ingest failed: {report.failures}")
    texts = report.embedded_chunks + report.embedded_sentences
    return {"backend": getattr(embedder, "backend", ""), "load_s": load_s,
            "seconds": report.seconds, "estimate_s": report.estimate_s,
            "chunks": report.chunks, "sentences": report.embedded_sentences, "texts": texts,
            "distinct_texts": memo.embedded if memo else texts,
            "embed_s": memo.seconds if memo else None, "peak_mb": _peak_mb()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def serve_probe(data_dir: Path, questions: list[str], onnx_cache_dir: Path | None,
                timeout_s: float = 600) -> dict[str, Any]:
    """Start `assistant serve` on the index: seconds from the process start to /api/health
    answering ok, and to a first answer; then warm answers over HTTP; the process's peak
    memory (VmHWM) at the end."""
    import httpx

    port = _free_port()
    env = dict(os.environ, ASSISTANT_DATA_DIR=str(data_dir), ASSISTANT_GENERATOR="extractive",
               ASSISTANT_PORT=str(port), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               ANONYMIZED_TELEMETRY="False", GRADIO_ANALYTICS_ENABLED="False",
               ASSISTANT_RATE_LIMIT_PER_MINUTE="100000")
    if onnx_cache_dir is not None:
        env["ASSISTANT_ONNX_CACHE_DIR"] = str(onnx_cache_dir)
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out: dict[str, Any] = {}
    try:
        with httpx.Client(timeout=60) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("the server stopped: " + (proc.stderr.read()
                                                                 if proc.stderr else "")[-2000:])
                if time.perf_counter() - started > timeout_s:
                    raise RuntimeError(f"the server was not ready within {timeout_s:g} s")
                try:
                    r = client.get(f"{url}/api/health")
                    if r.status_code == 200 and r.json().get("status") == "ok":
                        out["health"] = r.json()
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            out["startup_s"] = time.perf_counter() - started

            def ask(q: str) -> float:
                t0 = time.perf_counter()
                r = client.post(f"{url}/api/chat",
                                json={"messages": [{"role": "user", "content": q}]})
                r.raise_for_status()
                return (time.perf_counter() - t0) * 1000

            ask(questions[0])
            out["first_answer_s"] = time.perf_counter() - started
            out["http_answer_ms"] = [ask(q) for q in questions]
            out["peak_mb"] = _vm_hwm_mb(proc.pid)
    finally:
        from ..server.faults import stop_process

        stop_process(proc)
    return out


TASKS = {"ingest": task_ingest, "latency": task_latency, "cold": task_cold,
         "scale_ingest": task_scale_ingest}


def run_child(task: str, params: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    started = time.time()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               ANONYMIZED_TELEMETRY="False", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, "-m", "assistant.evaluation.bench", task, json.dumps(params)],
        capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench task {task} ({params.get('mode')}) failed:\n"
                           + proc.stderr[-3000:])
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    out: dict[str, Any] = json.loads(last)
    out["wall_s"] = time.time() - started
    if "answered_at" in out:
        out["cold_start_s"] = out["answered_at"] - started
    return out


# -- the parent -------------------------------------------------------------------------------
def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def main(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "scale", None) or getattr(args, "backend_ab", 0):
        return scale_main(args, settings)
    from .dataset import default_eval_dir, load_items, related_dir

    eval_dir = default_eval_dir()
    out_dir: Path = args.out or eval_dir / "reports"
    n_chunks = 300 if args.quick else args.synthetic_chunks
    n_questions = 10 if args.quick else args.questions
    generator = "extractive"
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="assistant-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = settings.corpus_dir
    related = related_dir()
    items = [i for i in load_items(eval_dir / "questions.jsonl")
             if i.answerable and not i.history]
    questions = [i.question for i in items][:n_questions]
    model = settings.embedding_model
    results: dict[str, Any] = {"ingest": {}, "latency": {}, "cold": {}}
    log = sys.stderr
    started = dt.datetime.now(dt.UTC)
    load_at_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        corpora: list[tuple[str, list[Path]]] = [("brochure", [corpus])]
        if related is not None:
            corpora.append(("brochure + related", [corpus, related]))
        else:
            print("note: the related texts are not here (../shared/related next to the "
                  "checkout, or $ASSISTANT_SHARED_DIR/related): the 'brochure + related' "
                  "ingest is left out", file=log)
        if n_chunks:
            synth = work / "synthetic"
            if not synth.is_dir():
                brochure = next(iter(sorted(Path(corpus).glob("*.md"))))
                write_synthetic_corpus(synth, brochure_sentences(
                    brochure.read_text(encoding="utf-8")), n_chunks)
            corpora.append((f"synthetic ({n_chunks} sections)", [synth]))
        dirs: dict[str, Path] = {}
        for i, (name, sources) in enumerate(corpora):
            for mode in ("assistant", "baseline"):
                data_dir = work / f"{mode}-{i}"
                if data_dir.exists():
                    shutil.rmtree(data_dir)
                print(f"ingest {name}: {mode} ...", file=log, flush=True)
                results["ingest"].setdefault(name, {})[mode] = run_child("ingest", {
                    "mode": mode, "data_dir": str(data_dir), "model": model,
                    "sources": [str(s) for s in sources]})
                dirs[f"{mode}-{i}"] = data_dir
        lat_sets = [("brochure", dirs["assistant-0"], questions)]
        if n_chunks:
            lat_sets.append((corpora[-1][0], dirs[f"assistant-{len(corpora) - 1}"],
                             questions[: max(5, len(questions) // 2)]))
        for name, data_dir, qs in lat_sets:
            for mode in ("assistant", "baseline"):
                print(f"latency {name}: {mode} ...", file=log, flush=True)
                r = run_child("latency", {"mode": mode, "data_dir": str(data_dir),
                                          "model": model, "questions": qs,
                                          "generator": generator, "top_k": settings.top_k})
                results["latency"].setdefault(name, {})[mode] = {
                    "retrieval": _stats(r["retrieval_ms"]), "ttft": _stats(r["ttft_ms"]),
                    "total": _stats(r["total_ms"]), "peak_mb": r["peak_mb"]}
        for mode in ("assistant", "baseline"):
            print(f"cold start: {mode} ...", file=log, flush=True)
            runs = [run_child("cold", {"mode": mode, "data_dir": str(dirs["assistant-0"]),
                                       "model": model, "question": questions[0],
                                       "generator": generator}) for _ in range(2)]
            results["cold"][mode] = {"cold_start_s": min(r["cold_start_s"] for r in runs),
                                     "peak_mb": max(r["peak_mb"] for r in runs),
                                     "answer": runs[0]["answer"]}
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    meta = {"generated": started.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            "load average at start": load_at_start,
            "load average at end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "generator": generator, "top_k": settings.top_k,
            "questions": len(questions),
            "command": "assistant bench" + (" --quick" if args.quick else "")}
    from .report import clean, git_commit

    meta["commit"] = git_commit(eval_dir.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench-quick" if args.quick else "bench"
    (out_dir / f"{stem}.json").write_text(
        json.dumps(clean({"meta": meta, **results}), indent=1) + "\n", encoding="utf-8")
    report = out_dir / f"{stem}.md"
    kept = report.read_text(encoding="utf-8") if report.is_file() else ""
    report.write_text(markdown(meta, results), encoding="utf-8")
    if SCALE_BEGIN in kept and SCALE_END in kept:  # the scale figures are their own run's
        write_section(report, SCALE_BEGIN + kept.split(SCALE_BEGIN, 1)[1].split(SCALE_END, 1)[0]
                      + SCALE_END + "\n")
    print(markdown(meta, results))
    print(f"report: {out_dir / (stem + '.md')}, {out_dir / (stem + '.json')}")
    return 0


def scale_main(args: argparse.Namespace, settings: Settings) -> int:
    """`assistant bench --scale N[,M...]`: ingest, start-up, serving memory and warm latency
    at each scale, on synthetic indexes kept under --work-dir (default data_dir/bench) and
    reused by later runs (--rebuild makes them again)."""
    from .dataset import default_eval_dir, load_items
    from .report import clean, git_commit

    eval_dir = default_eval_dir()
    out_dir: Path = args.out or eval_dir / "reports"
    root: Path = args.work_dir or settings.data_dir / "bench"
    onnx_dir = settings.onnx_dir().resolve()
    items = [i for i in load_items(eval_dir / "questions.jsonl")
             if i.answerable and not i.history]
    questions = [i.question for i in items][: args.questions]
    brochure = next(iter(sorted(Path(settings.corpus_dir).glob("*.md"))))
    sentences = brochure_sentences(brochure.read_text(encoding="utf-8"))
    log = sys.stderr
    started = dt.datetime.now(dt.UTC)
    load_at_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results: dict[str, Any] = {"scales": {}, "backends": None}
    if args.backend_ab:
        results["backends"] = compare_backends(root / f"ab-{args.backend_ab}", sentences,
                                               args.backend_ab, args.reps, onnx_dir, log)
    for n in args.scale or []:
        where = (root / f"scale-{n}").resolve()
        record = where / "ingest.json"
        if record.is_file() and not args.rebuild:
            ingest = json.loads(record.read_text(encoding="utf-8"))
            ingest["reused"] = True
            print(f"scale {n}: reusing the index in {where}", file=log, flush=True)
        else:
            if where.exists():
                shutil.rmtree(where)
            corpus = write_scaled_corpus(where / "corpus", sentences, n)
            print(f"scale {n}: ingest of {corpus['chunks']} chunks ...", file=log, flush=True)
            ingest = {**run_child("scale_ingest", {
                "data_dir": str(where / "data"), "sources": [str(where / "corpus")],
                "backend": settings.embedding_backend, "onnx_cache_dir": str(onnx_dir),
                "model": settings.embedding_model, "memo": corpus["copies"] > 1},
                timeout=6 * 3600), **corpus, "reused": False,
                "measured": started.strftime("%Y-%m-%d %H:%M UTC")}
            record.write_text(json.dumps(ingest, indent=1), encoding="utf-8")
        print(f"scale {n}: server start-up and memory ...", file=log, flush=True)
        serve = serve_probe(where / "data", questions[: max(5, len(questions) // 2)], onnx_dir)
        print(f"scale {n}: warm latency ...", file=log, flush=True)
        lat = run_child("latency", {"mode": "assistant", "data_dir": str(where / "data"),
                                    "model": settings.embedding_model, "questions": questions,
                                    "generator": "extractive", "top_k": settings.top_k,
                                    "onnx_cache_dir": str(onnx_dir)})
        results["scales"][str(n)] = {
            "ingest": ingest,
            "serve": {"startup_s": serve["startup_s"], "first_answer_s": serve["first_answer_s"],
                      "peak_mb": serve["peak_mb"], "http_answer": _stats(serve["http_answer_ms"]),
                      "chunks": serve["health"].get("chunks")},
            "latency": {"retrieval": _stats(lat["retrieval_ms"]),
                        "answer": _stats(lat["total_ms"]), "peak_mb": lat["peak_mb"]}}
    meta = {"generated": started.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            "load average at start": load_at_start,
            "load average at end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "embedding backend": settings.embedding_backend, "questions": len(questions),
            "command": "assistant bench " + " ".join(
                [f"--scale {','.join(map(str, args.scale))}"] if args.scale else [])
            + (f" --backend-ab {args.backend_ab} --reps {args.reps}" if args.backend_ab else ""),
            "commit": git_commit(eval_dir.parent)}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or "bench-scale"
    (out_dir / f"{stem}.json").write_text(
        json.dumps(clean({"meta": meta, **results}), indent=1) + "\n", encoding="utf-8")
    section = scale_markdown(meta, results)
    if args.name:
        (out_dir / f"{stem}.md").write_text(section, encoding="utf-8")
    else:
        write_section(out_dir / "bench.md", section)
    print(section)
    return 0


def compare_backends(where: Path, sentences: list[str], chunks: int, reps: int,
                     onnx_dir: Path, log: Any) -> dict[str, Any]:
    """Ingest the same corpus with the torch and the ONNX backend alternately, `reps` times
    each, every run in a fresh process into a fresh index: both see the same machine load."""
    if where.exists():
        shutil.rmtree(where)
    write_synthetic_corpus(where / "corpus", sentences, chunks)
    runs: dict[str, list[dict[str, Any]]] = {"torch": [], "onnx": []}
    for rep in range(reps):
        for backend in ("torch", "onnx") if rep % 2 == 0 else ("onnx", "torch"):
            data = where / f"data-{backend}"
            if data.exists():
                shutil.rmtree(data)
            print(f"backends: {backend} ingest {rep + 1}/{reps} ...", file=log, flush=True)
            runs[backend].append(run_child("scale_ingest", {
                "data_dir": str(data), "sources": [str(where / "corpus")], "backend": backend,
                "onnx_cache_dir": str(onnx_dir)}))
    shutil.rmtree(where, ignore_errors=True)
    med = {b: percentile([r["seconds"] for r in rs], 50) for b, rs in runs.items()}
    return {"chunks": runs["onnx"][0]["chunks"], "texts": runs["onnx"][0]["texts"],
            "reps": reps, "seconds": {b: [r["seconds"] for r in rs] for b, rs in runs.items()},
            "median_s": med, "peak_mb": {b: max(r["peak_mb"] for r in rs)
                                         for b, rs in runs.items()},
            "speedup": med["torch"] / med["onnx"] if med["onnx"] else None}


def write_section(path: Path, section: str) -> None:
    """Put `section` (between the scale markers) at the top of the report, in place of the
    previous one; the rest of the report is kept."""
    old = path.read_text(encoding="utf-8") if path.is_file() else "# Performance benchmark\n"
    if SCALE_BEGIN in old and SCALE_END in old:
        head, rest = old.split(SCALE_BEGIN, 1)
        new = head + section + rest.split(SCALE_END, 1)[1]
    else:
        title, _, body = old.partition("\n")
        new = f"{title}\n\n{section}\n{body}"
    path.write_text(new, encoding="utf-8")


def _meta_lines(meta: dict[str, Any], busy_advice: str = "") -> list[str]:
    """The run's details as a list, and a warning when the machine was busy meanwhile."""
    lines = [f"- {k}: {v}" for k, v in meta.items() if v not in ("", None)]
    cpus = os.cpu_count() or 1
    loads = [float(x) for k in ("load average at start", "load average at end")
             for x in str(meta.get(k, "")).split()[:1]]
    if loads and max(loads) > cpus:
        lines += ["", f"**The machine was busy during this run** (load average up to "
                  f"{max(loads):.1f} on {cpus} CPUs, other jobs running): absolute times are "
                  f"inflated{busy_advice}."]
    return lines


def scale_markdown(meta: dict[str, Any], r: dict[str, Any]) -> str:
    lines = [SCALE_BEGIN, "## At scale: synthetic corpora of 5,000 to 100,000 chunks", ""]
    lines += _meta_lines(meta)
    b = r.get("backends")
    if b:
        lines += ["", "### Ingest throughput: torch against ONNX", "",
                  f"The same synthetic corpus ({b['chunks']} chunks, {b['texts']} texts "
                  f"embedded: chunks and their sentences) ingested {b['reps']} times with each "
                  "backend, alternately, each run in a fresh process into a fresh index.", "",
                  "| Backend | Seconds (each run) | Median | Chunks/s | Peak memory |",
                  "| --- | --- | --- | --- | --- |"]
        for name in ("torch", "onnx"):
            med = b["median_s"][name]
            runs = ", ".join(f"{x:.0f}" for x in b["seconds"][name])
            lines.append(f"| {name} | {runs} | {med:.0f} s | {b['chunks'] / med:.1f} | "
                         f"{b['peak_mb'][name]:.0f} MB |")
        if b.get("speedup"):
            lines += ["", f"Ingest throughput, ONNX over torch: **{b['speedup']:.2f}×** "
                      "(ratio of the medians)."]
    scales = r.get("scales") or {}
    if scales:
        lines += ["", "### Ingest, start-up, memory and latency by index size", "",
                  "| Chunks | Ingest | Ingest peak memory | Server start-up (to /api/health "
                  "ok) | To the first answer | Server peak memory | Retrieval p50 / p95 | "
                  "Extractive answer p50 / p95 | Answer over HTTP p50 |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for v in scales.values():
            ing, srv, lat = v["ingest"], v["serve"], v["latency"]
            repeated = ing.get("distinct_texts", ing["texts"]) < ing["texts"]
            how = (f"{ing['seconds']:.0f} s†" if repeated else f"{ing['seconds']:.0f} s "
                   f"({ing['chunks'] / ing['seconds']:.1f} chunks/s)")
            lines.append(
                f"| {ing['chunks']:,} | {how} | {ing['peak_mb']:.0f} MB | "
                f"{srv['startup_s']:.1f} s | {srv['first_answer_s']:.1f} s | "
                f"{srv['peak_mb']:.0f} MB | {_ms(lat['retrieval']['p50'])} / "
                f"{_ms(lat['retrieval']['p95'])} | {_ms(lat['answer']['p50'])} / "
                f"{_ms(lat['answer']['p95'])} | {_ms(srv['http_answer']['p50'])} |")
        notes = []
        for n, v in scales.items():
            ing = v["ingest"]
            if ing.get("reused"):
                notes.append(f"- {int(n):,} chunks: the index built on {ing.get('measured')} "
                             "was reused; its ingest figures are from that build.")
            if ing.get("distinct_texts", ing["texts"]) < ing["texts"]:
                per_text = (ing["embed_s"] or 0) / max(ing["distinct_texts"], 1)
                full = ing["seconds"] + per_text * (ing["texts"] - ing["distinct_texts"])
                notes.append(
                    f"- † {int(n):,} chunks: {ing['distinct']:,} distinct sections, their "
                    f"documents repeated under other names ({ing['copies']} copies in all). "
                    f"Each distinct text was embedded once ({ing['distinct_texts']:,} of "
                    f"{ing['texts']:,} texts, {ing['embed_s']:.0f} s of embedding); the rest "
                    "of the time is chunking, writing to Chroma and the keyword index. Every "
                    f"text embedded at the measured rate ({1 / per_text:.1f} texts/s) would "
                    f"take about {full / 60:.0f} minutes: an estimate, not a measurement.")
        lines += ["", *notes] if notes else []
        lines += ["", "Start-up: from starting `assistant serve` (a new interpreter) to "
                  "/api/health answering ok (imports, model, index, keyword index mapped); "
                  "the first answer adds Chroma loading its vector index. Server peak "
                  "memory: VmHWM of that process after the first answer and "
                  f"{next(iter(scales.values()))['serve']['http_answer']['n']} warm answers "
                  "over HTTP. Retrieval and extractive answer: in a fresh process, "
                  f"{next(iter(scales.values()))['latency']['answer']['n']} questions of the "
                  "development set after one warm-up question."]
    lines += ["", SCALE_END, ""]
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return ""
    return f"{a / b:.2f}×"


def _ms(v: float | None) -> str:
    return "–" if v is None or v != v else (f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms")


def markdown(meta: dict[str, Any], r: dict[str, Any]) -> str:
    lines = ["# Performance benchmark", ""]
    lines += _meta_lines(meta, "; compare the assistant and baseline columns, measured in the "
                               "same run")
    lines += ["", "Each figure comes from a fresh child process; \"baseline\" is a plain "
              "llama-index pipeline (SimpleDirectoryReader, default SentenceSplitter, "
              "VectorStoreIndex over Chroma, HuggingFaceEmbedding with the same local model; "
              "NoText query engine, top-1 node as the answer). Ratios are assistant / baseline.",
              "", "## Ingest throughput", "",
              "| Corpus | | Chunks | Sentences embedded | Seconds | Chunks/s | "
              "Unchanged re-ingest | Peak memory |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, modes in r["ingest"].items():
        for mode, v in modes.items():
            rate = v["chunks"] / v["seconds"] if v["seconds"] else 0.0
            again = (f"{v['unchanged_s']:.2f} s" if v.get("unchanged_s") is not None
                     else "n/a (no incremental mode: embeds again)")
            sentences = v.get("sentences", "–")
            lines.append(f"| {name} | {mode} | {v['chunks']} | {sentences} | {v['seconds']:.1f} | "
                         f"{rate:.1f} | {again} | {v['peak_mb']:.0f} MB |")
    lines += ["", "Seconds exclude loading the embedding model (timed apart: "
              + ", ".join(f"{m} {v['load_s']:.1f} s" for m, v in
                          next(iter(r["ingest"].values())).items()) + "). The baseline's "
              "default chunks are up to 1,024 tokens, of which the model embeds the first "
              "256 only; the assistant's chunks fit the window. The assistant also embeds "
              "each sentence of each chunk, for sentence search.", ""]
    for name, modes in r["latency"].items():
        a, b = modes.get("assistant"), modes.get("baseline")
        lines += [f"## Warm latency: {name} index", "",
                  "| Measure | Assistant p50 | Assistant p95 | Baseline p50 | Baseline p95 | "
                  "p50 ratio |", "| --- | --- | --- | --- | --- | --- |"]
        for key, label in (("retrieval", "Retrieval"), ("ttft", "Time to first token"),
                           ("total", "Answer (total)")):
            lines.append(f"| {label} | {_ms(a[key]['p50'])} | {_ms(a[key]['p95'])} | "
                         f"{_ms(b[key]['p50'])} | {_ms(b[key]['p95'])} | "
                         f"{_ratio(a[key]['p50'], b[key]['p50'])} |")
        lines += [f"| Peak memory (process) | {a['peak_mb']:.0f} MB | | {b['peak_mb']:.0f} MB | "
                  "| |", "", f"{a['total']['n']} questions, after one warm-up question.", ""]
    c = r["cold"]
    if c:
        lines += ["## Cold start to the first answer", "",
                  "| | Seconds | Peak memory |", "| --- | --- | --- |"]
        for mode, v in c.items():
            lines.append(f"| {mode} | {v['cold_start_s']:.1f} | {v['peak_mb']:.0f} MB |")
        lines += ["", "From starting a new Python interpreter to holding the answer (imports, "
                  "model load, index open, one question); best of two runs.", ""]
    return "\n".join(lines)


def _child_main(argv: list[str]) -> int:
    task, params = argv[0], json.loads(argv[1])
    import logging

    logging.basicConfig(level=logging.WARNING)
    out = TASKS[task](params)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
