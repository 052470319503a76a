"""Hand-run benchmark of the local LLM (not collected by pytest).

    PYTHONPATH=src .venv/bin/python tests/llm/bench_llm.py [--assemble]

Prints model assembly/verify/load times, and for a ~300-token prompt: time to first token,
prompt-processing and generation tokens/s (llama.cpp's own timings). Each run changes the
start of the prompt so llama.cpp's prompt cache cannot skip the work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

from assistant.llm.local import LocalLlama
from assistant.llm.local_model import (
    assemble_model,
    default_model_path,
    sha256_file,
    verify_model,
)

PASSAGE = (
    "Ransomware groups increasingly target backup systems before encrypting production data, "
    "so that victims cannot restore without paying. Offline, immutable backups and regular "
    "restore drills reduce that leverage. Network segmentation limits lateral movement, and "
    "multi-factor authentication on remote access blocks the most common entry point. "
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assemble", action="store_true", help="also time a fresh assembly")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    data = Path(os.environ.get("ASSISTANT_DATA_DIR", Path(__file__).resolve().parents[2] / "data"))
    model = assemble_model(default_model_path(data).parent)
    print(f"load average: {os.getloadavg()}")
    if args.assemble:
        scratch = data / "bench-assemble"
        t0 = time.perf_counter()
        assemble_model(scratch)
        print(f"fresh assembly (copy + hash): {time.perf_counter() - t0:.1f} s")
        shutil.rmtree(scratch)
    t0 = time.perf_counter()
    verify_model(model)
    print(f"verify with marker: {(time.perf_counter() - t0) * 1000:.2f} ms")
    t0 = time.perf_counter()
    sha256_file(model)
    print(f"full SHA-256 rehash: {time.perf_counter() - t0:.2f} s")

    llm = LocalLlama(model)
    llm.load()
    print(f"load: {llm.load_seconds:.2f} s")
    ttft, pp, tg, ptok = [], [], [], []
    for i in range(args.runs):
        question = f"Run {i}: using only the notes below, list three defences against ransomware."
        content = question + "\n\nNotes:\n" + PASSAGE * 4
        t0 = time.perf_counter()
        first = None
        for _ in llm.stream([{"role": "user", "content": content}], max_tokens=64):
            if first is None:
                first = time.perf_counter() - t0
        t = llm.last_timings or {}
        assert first is not None and llm.last_usage
        ttft.append(first)
        pp.append(t["prompt_per_second"])
        tg.append(t["predicted_per_second"])
        ptok.append(llm.last_usage["prompt_tokens"])
        print(
            f"run {i}: prompt {llm.last_usage['prompt_tokens']} tok (processed {t['prompt_n']}), "
            f"TTFT {first:.2f} s, pp {t['prompt_per_second']:.1f} tok/s, "
            f"gen {t['predicted_per_second']:.1f} tok/s ({t['predicted_n']} tok)"
        )
    med = statistics.median
    print(
        f"median: prompt {med(ptok):.0f} tok, TTFT {med(ttft):.2f} s, "
        f"pp {med(pp):.1f} tok/s, gen {med(tg):.1f} tok/s"
    )
    llm.close()


if __name__ == "__main__":
    main()
