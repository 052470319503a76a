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


TASKS = {"ingest": task_ingest, "latency": task_latency, "cold": task_cold}


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
    (out_dir / f"{stem}.md").write_text(markdown(meta, results), encoding="utf-8")
    print(markdown(meta, results))
    print(f"report: {out_dir / (stem + '.md')}, {out_dir / (stem + '.json')}")
    return 0


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return ""
    return f"{a / b:.2f}×"


def _ms(v: float | None) -> str:
    return "–" if v is None or v != v else (f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms")


def markdown(meta: dict[str, Any], r: dict[str, Any]) -> str:
    lines = ["# Performance benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if v not in ("", None)]
    cpus = os.cpu_count() or 1
    loads = [float(x) for k in ("load average at start", "load average at end")
             for x in str(meta.get(k, "")).split()[:1]]
    if loads and max(loads) > cpus:
        lines += ["", f"**The machine was busy during this run** (load average up to "
                  f"{max(loads):.1f} on {cpus} CPUs, other jobs running): absolute times are "
                  "inflated; compare the assistant and baseline columns, measured in the same "
                  "run."]
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
