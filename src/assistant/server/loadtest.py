"""Load benchmark: /api/chat latency under concurrent clients, from a separate client process.

    python -m assistant.server.loadtest                      # starts `assistant serve` itself
    python -m assistant.server.loadtest --url http://127.0.0.1:7860 --clients 1,10,50
    python -m assistant.server.loadtest --generator local --clients 1,4 --per-client 3 --append

Without --url it starts `assistant serve` on a free loopback port as a child process (with
ASSISTANT_RATE_LIMIT_PER_MINUTE=0, since every simulated client comes from 127.0.0.1) and stops
it by its PID at the end. Against a server of your own, turn the rate limit off the same way.
Each level runs N concurrent clients, each sending questions one after another; latency is
request-to-complete-answer (and time to the first streamed event with --stream). The table is
printed and written to eval/reports/load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FALLBACK_QUESTIONS = [
    "How much did the NotPetya attack cost Maersk?",
    "Which countries does the YAKSHA project cover?",
    "What is the EU Cyber Diplomacy Toolbox?",
    "Which botnet was used in the 2016 DDoS attacks against Dyn?",
    "What does the NIS Directive require?",
]


@dataclass
class Level:
    generator: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    first_event_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)  # which generator really answered
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.errors.values())

    def pct(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]

    def row(self) -> list[str]:
        lat = self.latencies_ms
        cells = [self.generator, str(self.clients), str(self.requests),
                 str(sum(self.errors.values())),
                 f"{self.pct(lat, 50):.0f}", f"{self.pct(lat, 95):.0f}",
                 f"{max(lat):.0f}" if lat else "-",
                 f"{len(lat) / self.seconds:.1f}" if self.seconds else "-"]
        if self.first_event_ms:
            cells.append(f"{self.pct(self.first_event_ms, 50):.0f}")
        return cells


def load_questions(path: Path | None) -> list[str]:
    if path and path.is_file():
        qs = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                q = item.get("question")
                # Questions the API rejects on purpose (empty, over-long) are not load.
                if not item.get("history") and isinstance(q, str) and 0 < len(q.strip()) < 2000:
                    qs.append(q)
        if qs:
            return qs
    return FALLBACK_QUESTIONS


def chat_body(question: str, generator: str | None, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": question}],
                            "stream": stream}
    if generator:
        body["generator"] = generator
    return body


async def one_request(client: httpx.AsyncClient, url: str, question: str, generator: str | None,
                      stream: bool, level: Level, headers: dict[str, str]) -> None:
    body = chat_body(question, generator, stream)
    t0 = time.perf_counter()
    try:
        if stream:
            first = None
            final = False
            async with client.stream("POST", url + "/api/chat", json=body,
                                     headers=headers) as r:
                if r.status_code != 200:
                    await r.aread()
                    raise RuntimeError(f"HTTP {r.status_code}")
                async for line in r.aiter_lines():
                    if first is None and line.startswith("event:"):
                        first = time.perf_counter()
                    if line.startswith("event: final"):
                        final = True
                    if line.startswith("event: error"):
                        raise RuntimeError("error event")
            if not final:
                raise RuntimeError("no final event")
            if first is not None:
                level.first_event_ms.append((first - t0) * 1000)
        else:
            r = await client.post(url + "/api/chat", json=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            body = r.json()
            if "answer" not in body:
                raise RuntimeError("malformed answer")
            mode = str(body.get("mode", "?"))
            level.modes[mode] = level.modes.get(mode, 0) + 1
    except Exception as exc:  # counted, not raised: the run goes on
        key = str(exc) or type(exc).__name__
        level.errors[key] = level.errors.get(key, 0) + 1
        return
    level.latencies_ms.append((time.perf_counter() - t0) * 1000)


async def abandon_request(client: httpx.AsyncClient, url: str, question: str,
                          generator: str | None, after_s: float,
                          headers: dict[str, str]) -> None:
    """A client that gives up: it asks for a streamed answer and closes the connection
    after `after_s`, before a local model's first token would arrive."""
    body = chat_body(question, generator, stream=True)
    try:
        async with asyncio.timeout(after_s):
            async with client.stream("POST", url + "/api/chat", json=body,
                                     headers=headers) as r:
                async for _ in r.aiter_lines():
                    pass
    except (TimeoutError, httpx.HTTPError):
        pass  # closing the connection is the point


async def run_level(url: str, clients: int, per_client: int, questions: list[str],
                    generator: str | None, stream: bool, timeout: float,
                    headers: dict[str, str], abandon: int = 0,
                    abandon_after_s: float = 0.5) -> Level:
    level = Level(generator or "default", clients)
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    counter = iter(range(10**9))  # one shared cycle: every level asks the same mix
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        async def worker(i: int) -> None:
            for _ in range(per_client):
                q = questions[next(counter) % len(questions)]
                await one_request(client, url, q, generator, stream, level, headers)

        t0 = time.perf_counter()
        # Clients that give up start first, so the real ones queue behind their work
        # unless the server stops that work when they leave.
        quitters = [abandon_request(client, url, questions[-1 - i % len(questions)],
                                    generator, abandon_after_s, headers)
                    for i in range(abandon)]
        await asyncio.gather(*quitters, *(worker(i) for i in range(clients)))
        level.seconds = time.perf_counter() - t0
    return level


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, generator: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASSISTANT_RATE_LIMIT_PER_MINUTE": "0", "GRADIO_ANALYTICS_ENABLED":
           "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if generator:  # the server's default generator too: extractive runs load no model
        env["ASSISTANT_GENERATOR"] = generator
    # Not `-m assistant.cli`: as __main__ it would be a second copy of the module, and
    # `serve` registers itself with the first.
    cmd = [sys.executable, "-c", "import sys; from assistant.cli import main; sys.exit(main())",
           "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            r = httpx.get(url + "/api/health", timeout=5)
            if r.status_code == 200:
                return dict(r.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no healthy server at {url} after {timeout:.0f} s")


HEADERS = ["generator", "clients", "requests", "errors", "p50 ms", "p95 ms", "max ms", "req/s"]


def table(levels: list[Level], stream: bool) -> str:
    head = HEADERS + (["first event p50 ms"] if stream else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(lv.row()) + " |" for lv in levels]
    return "\n".join(lines)


def load_average() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def report(levels: list[Level], health: dict[str, Any], args: argparse.Namespace,
           questions: list[str]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M")
    errors = {k: v for lv in levels for k, v in lv.errors.items()}
    lines = [
        f"## /api/chat, generator {args.generator or 'default'} ({when})",
        "",
        f"Machine: {os.cpu_count()} CPU cores, {platform.python_implementation()} "
        f"{platform.python_version()}; client and server on the same machine, over "
        f"loopback. Index: {health.get('documents')} documents, {health.get('chunks')} "
        f"chunks; server generator {health.get('generator')}. The clients share one cycle "
        f"through the same {len(questions)} questions; each sends its questions one after "
        f"another ({'streamed' if args.stream else 'JSON'} answers). Latency is request to "
        f"complete answer."
        + (f" At the start of each level {args.abandon} more clients each asked for a "
           f"streamed answer and hung up after {args.abandon_after:g} s; they are not in "
           f"the table." if args.abandon else "")
        + f" Load average (1, 5, 15 min) before the run: {args.load_before}; "
        f"after: {load_average()}.",
        "",
        table(levels, args.stream),
        "",
    ]
    if errors:
        lines += ["Errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()), ""]
    for lv in levels:
        if len(lv.modes) > 1:  # e.g. a model that timed out and fell back to extractive
            lines += [f"Answers at {lv.clients} clients by mode: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(lv.modes.items())), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m assistant.server.loadtest",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", help="a running server (default: start one on a free port)")
    p.add_argument("--clients", default="1,10,50", help="concurrency levels (default 1,10,50)")
    p.add_argument("--per-client", type=int, default=10,
                   help="questions each client sends per level (default 10)")
    p.add_argument("--generator", default="extractive",
                   help="generator for every request, and the started server's default: "
                        "extractive (default), local, openai")
    p.add_argument("--stream", action="store_true", help="ask for SSE and time the first event")
    p.add_argument("--min-requests", type=int, default=20,
                   help="at least this many requests per level (default 20)")
    p.add_argument("--questions", type=Path, default=Path("eval/questions.jsonl"))
    p.add_argument("--set-size", type=int, default=20,
                   help="cycle through the first N questions (default 20)")
    p.add_argument("--out", type=Path, default=Path("eval/reports/load.md"))
    p.add_argument("--append", action="store_true", help="add to --out instead of replacing")
    p.add_argument("--abandon", type=int, default=0,
                   help="at each level, this many more clients ask and hang up after "
                        "--abandon-after seconds (default 0)")
    p.add_argument("--abandon-after", type=float, default=0.5, help="seconds (default 0.5)")
    p.add_argument("--api-key", default=os.environ.get("ASSISTANT_API_KEY", ""))
    p.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    args = p.parse_args(argv)

    levels_n = [int(x) for x in args.clients.split(",") if x.strip()]
    questions = load_questions(args.questions)[:max(args.set_size, 1)]
    args.load_before = load_average()  # other work on the machine skews every figure
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    proc = None
    url = (args.url or "").rstrip("/")
    if not url:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        print(f"starting `assistant serve` on {url} ...", flush=True)
        proc = start_server(port, args.generator)
    try:
        health = wait_healthy(url, proc, 180)
        print(f"server: {health.get('documents')} documents, {health.get('chunks')} chunks, "
              f"generator {health.get('generator')}", flush=True)
        asyncio.run(run_level(url, 1, 2, questions, args.generator, args.stream,
                              args.timeout, headers))  # warm-up
        levels = []
        for n in levels_n:
            per_client = max(args.per_client, -(-args.min_requests // n))
            level = asyncio.run(run_level(url, n, per_client, questions, args.generator,
                                          args.stream, args.timeout, headers, args.abandon,
                                          args.abandon_after))
            levels.append(level)
            print(table([level], args.stream).splitlines()[-1], flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    text = report(levels, health, args, questions)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and args.out.exists():
        args.out.write_text(args.out.read_text(encoding="utf-8").rstrip() + "\n\n" + text,
                            encoding="utf-8")
    else:
        args.out.write_text("# Load benchmark\n\nWritten by `python -m assistant.server."
                            "loadtest`.\n\n" + text, encoding="utf-8")
    print(f"written to {args.out}")
    return 1 if any(lv.errors for lv in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
