"""Fault injection: hostile and careless clients against a real server, and a store that fails.

    python -m assistant.server.faults                 # about 3-4 minutes on 2 cores
    python -m assistant.server.faults --no-chroma     # without the Chroma-server probes

Starts its own servers as `assistant serve` runs them (default settings, extractive generator,
a temp data dir, 127.0.0.1 and free ports): one without an API key, one with a key (for the
wrong-key lockout), and one on a `chroma run` server for the store probes. Each client probe
connects from its own loopback address (127.0.0.2, 127.0.0.3, ...), so the per-IP limits of
one probe do not spill into the next. Every server and child process is stopped by its PID.

Prints a Markdown table (probe / expected / observed / held) and writes it to
eval/reports/faults.md (`--out`). Exit code 0 when every probe held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
RATE_LIMIT = 60  # the default ASSISTANT_RATE_LIMIT_PER_MINUTE
WRONG_KEYS = 10  # app.WRONG_KEYS_PER_MINUTE
KEY = "faults-probe-key"
QUESTION = "How much did the NotPetya attack cost Maersk?"
CHAT = {"messages": [{"role": "user", "content": QUESTION}]}
SMALL_DOC = """# Harbour security

The Zorblat harbour protocol was signed by twelve harbour authorities in 2031.
The NotPetya attack cost Maersk over $300 million in damages.
"""


@dataclass
class Probe:
    name: str
    expected: str
    observed: str = "not run"
    held: bool = False


_next_ip = 1


def new_ip() -> str:
    """A fresh loopback source address for one probe's clients."""
    global _next_ip
    _next_ip += 1
    return f"127.0.0.{_next_ip}"


def client(ip: str, timeout: float = 30) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=ip), timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect(url: str, ip: str, timeout: float = 30) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(ip, 0))


def read_response(sock: socket.socket) -> tuple[int, Any]:
    """(status, JSON body or text) of what the server sends until it closes; (0, "") if none."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    if not data.startswith(b"HTTP/"):
        return 0, ""
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), json.loads(body)
    except ValueError:
        return int(head.split(b" ", 2)[1]), body[:200].decode("utf-8", "replace")


def is_error_json(body: Any, path: str) -> bool:
    if path == "/api/health":  # health reports its status beside the error
        return isinstance(body, dict) and body.get("status") == "unavailable" \
            and isinstance(body.get("error"), str) and bool(body["error"])
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    err = body["error"]
    if path.startswith("/v1/"):
        return isinstance(err, dict) and {"message", "type", "code"} <= set(err)
    return isinstance(err, str) and bool(err)


def body_of(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:200]


# -- processes ---------------------------------------------------------------------------------
def base_env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update({"ASSISTANT_DATA_DIR": str(data_dir), "ASSISTANT_GENERATOR": "extractive",
                "ASSISTANT_CONFIG": str(data_dir / "no-config.toml"),
                "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"})
    env.update({f"ASSISTANT_{k.upper()}": v for k, v in settings.items()})
    return env


def assistant_cmd(*args: str) -> list[str]:
    # Not `-m assistant.cli`: as __main__ it would be a second copy of the module.
    return [sys.executable, "-c", "import sys; from assistant.cli import main; sys.exit(main())",
            *args]


def run_ingest(env: dict[str, str], *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(assistant_cmd("ingest", *map(str, paths)), env=env, text=True,
                          capture_output=True, timeout=300)


class Server:
    """`assistant serve` as a child process, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            assistant_cmd("serve", "--host", "127.0.0.1", "--port", str(self.port)),
            env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with code {self.proc.returncode}; "
                                 f"see {self.log}")
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"no healthy server at {self.url} after {timeout:.0f} s")

    def stop(self) -> None:
        stop_process(self.proc)
        self._out.close()

    def tracebacks(self) -> int:
        return self.log.read_text("utf-8", "replace").count("Traceback (most recent call last)")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


# -- client probes -----------------------------------------------------------------------------
def probe_forwarded_rate_limit(url: str) -> Probe:
    p = Probe("spoofed X-Forwarded-For vs the rate limit",
              f"429 after {RATE_LIMIT} answers, whatever X-Forwarded-For says")
    with client(new_ip()) as c:
        for i in range(1, RATE_LIMIT + 11):
            r = c.post(url + "/api/chat", json=CHAT,
                       headers={"X-Forwarded-For": f"198.51.100.{i % 250 + 1}"})
            if r.status_code == 429:
                p.observed = f"429 at request {i}, each with a new X-Forwarded-For"
                p.held = i == RATE_LIMIT + 1 and is_error_json(body_of(r), "/api/chat")
                return p
            if r.status_code != 200:
                p.observed = f"request {i}: {r.status_code}"
                return p
    p.observed = f"no 429 in {RATE_LIMIT + 10} requests (the limit was reset)"
    return p


def probe_forwarded_lockout(url: str) -> Probe:
    p = Probe("spoofed X-Forwarded-For vs the wrong-key lockout",
              f"after {WRONG_KEYS} wrong keys the right key gets 429, whatever "
              "X-Forwarded-For says")
    with client(new_ip()) as c:
        for i in range(WRONG_KEYS):
            c.post(url + "/api/chat", json=CHAT, headers={
                "Authorization": "Bearer guess", "X-Forwarded-For": f"203.0.113.{i + 1}"})
        r = c.post(url + "/api/chat", json=CHAT, headers={
            "Authorization": f"Bearer {KEY}", "X-Forwarded-For": "192.0.2.99"})
    p.observed = f"right key with a new X-Forwarded-For: {r.status_code}"
    p.held = r.status_code == 429
    return p


def probe_foreign_host(url: str) -> Probe:
    p = Probe("foreign Host (DNS rebinding)",
              "400 JSON for Host: evil.example + Origin: http://evil.example "
              "on /api/chat and /config")
    port = url.rsplit(":", 1)[1]
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    seen = []
    with client(new_ip()) as c:
        for method, path in [("POST", "/api/chat"), ("GET", "/config")]:
            r = c.request(method, url + path, json=CHAT if method == "POST" else None,
                          headers=evil)
            seen.append((path, r.status_code, is_error_json(body_of(r), path)))
    p.observed = ", ".join(f"{path} {status}" for path, status, _ in seen)
    p.held = all(status == 400 and ok for _, status, ok in seen)
    return p


def probe_huge_header(url: str) -> Probe:
    p = Probe("100 MB request header",
              "431 JSON and the connection closed long before 100 MB; others still served")
    total, chunk = 100 * 1024 * 1024, b"a" * (1024 * 1024)
    outcome: dict[str, Any] = {}

    def send() -> None:
        sent = 0
        with connect(url, new_ip(), timeout=60) as sock:
            try:
                sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
                while sent < total:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError as exc:
                outcome["error"] = type(exc).__name__
            outcome["sent"] = sent
            outcome["status"], outcome["body"] = read_response(sock)

    sender = threading.Thread(target=send)
    t0 = time.monotonic()
    sender.start()
    waits: list[float] = []
    with client(new_ip()) as c:
        while sender.is_alive() and len(waits) < 5:
            t = time.monotonic()
            ok = c.get(url + "/api/health").status_code == 200
            waits.append((time.monotonic() - t) * 1000 if ok else float("inf"))
            time.sleep(0.2)
    sender.join(120)
    with client(new_ip()) as c:  # and after it
        t = time.monotonic()
        ok = c.get(url + "/api/health").status_code == 200
        waits.append((time.monotonic() - t) * 1000 if ok else float("inf"))
    sent_mb = outcome.get("sent", 0) / 1024 / 1024
    cut = "error" in outcome or outcome.get("status") in (400, 431)
    answered = (f"{outcome.get('status')} {json.dumps(outcome.get('body'))}"
                if outcome.get("status") else "no answer")
    p.observed = (f"{answered}; sending stopped after {sent_mb:.0f} MB"
                  f" ({outcome.get('error', 'all sent')}) in {time.monotonic() - t0:.1f} s; "
                  f"/api/health meanwhile and after: max {max(waits):.0f} ms")
    p.held = cut and sent_mb < 100 and all(w < 2000 for w in waits)
    return p


def trickle(url: str, head: bytes, drip: bytes, max_s: float) -> tuple[int, Any, float]:
    """Send `head`, then one byte of `drip` a second; (status, body, seconds) of the answer."""
    with connect(url, new_ip(), timeout=max_s + 10) as sock:
        t0 = time.monotonic()
        sock.sendall(head)
        sock.settimeout(1.0)
        for byte in drip:
            try:
                sock.recv(1, socket.MSG_PEEK)  # data, or b"" when the server closed
                answered = True
            except TimeoutError:
                answered = False
            except OSError:
                answered = True
            if answered:
                sock.settimeout(5)
                status, body = read_response(sock)
                return status, body, time.monotonic() - t0
            if time.monotonic() - t0 > max_s:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
        sock.settimeout(5)
        status, body = read_response(sock)
        return status, body, time.monotonic() - t0


def probe_slow_headers(url: str) -> Probe:
    p = Probe("slow client: headers one byte a second",
              "408 JSON within about 10 s (ASSISTANT_HEADER_TIMEOUT_S), connection closed")
    status, body, seconds = trickle(url, b"GET /api/health HTTP/1.1\r\n",
                                    b"Host: 127.0.0.1\r\nX-Slow: " + b"a" * 60, 25)
    p.observed = f"{status or 'nothing'} after {seconds:.1f} s {json.dumps(body)}"
    p.held = status == 408 and seconds < 15 and is_error_json(body, "/")
    return p


def probe_slow_body(url: str) -> Probe:
    p = Probe("slow client: body one byte a second",
              "408 JSON within about 30 s (ASSISTANT_BODY_TIMEOUT_S)")
    head = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n")
    status, body, seconds = trickle(url, head, b" " * 60, 45)
    p.observed = f"{status or 'nothing'} after {seconds:.1f} s {json.dumps(body)}"
    p.held = status == 408 and seconds < 35 and is_error_json(body, "/api/chat")
    return p


def probe_surrogate(url: str) -> Probe:
    p = Probe("lone surrogate in the question", "422 JSON naming the field")
    raw = b'{"messages": [{"role": "user", "content": "a \\ud800"}]}'
    with client(new_ip()) as c:
        r = c.post(url + "/api/chat", content=raw, headers={"content-type": "application/json"})
    p.observed = f"{r.status_code} {r.text[:120]}"
    p.held = r.status_code == 422 and is_error_json(body_of(r), "/api/chat")
    return p


def probe_upload(url: str, gradio_tmp: Path) -> Probe:
    p = Probe("Gradio upload without a key",
              "refused (403/404 JSON), also chunked past the body cap; no file left behind")

    def files() -> set[Path]:
        return {f for f in gradio_tmp.rglob("*") if f.is_file()} if gradio_tmp.exists() else set()

    before = files()
    form = {"content-type": "multipart/form-data; boundary=xx"}
    part = (b'--xx\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nhello\r\n--xx--\r\n")

    def chunked() -> Iterator[bytes]:
        yield part[:-8]
        for _ in range(40):
            yield b" " * 65536
        yield b"\r\n--xx--\r\n"

    with client(new_ip()) as c:
        small = c.post(url + "/gradio_api/upload", content=part, headers=form)
        big = c.post(url + "/gradio_api/upload", content=chunked(), headers=form)
    time.sleep(1)
    left = files() - before
    p.observed = (f"small file {small.status_code}, chunked 2.5 MB {big.status_code}; "
                  f"{len(left)} new file(s) in Gradio's temp dir")
    p.held = (all(r.status_code in (403, 404) and is_error_json(body_of(r), "/")
                  for r in (small, big)) and not left)
    return p


def probe_gradio_rate(url: str) -> Probe:
    p = Probe("Gradio /gradio_api/run/chat over the rate limit",
              f"429 JSON with Retry-After after {RATE_LIMIT} answers (not 500)")
    with client(new_ip()) as c:
        for i in range(1, RATE_LIMIT + 6):
            r = c.post(url + "/gradio_api/run/chat", json={"data": [QUESTION, []]})
            if r.status_code != 200:
                p.observed = f"{r.status_code} at request {i} {r.text[:100]}"
                p.held = (r.status_code == 429 and i == RATE_LIMIT + 1
                          and "retry-after" in r.headers)
                return p
    p.observed = f"no refusal in {RATE_LIMIT + 5} requests"
    return p


def probe_gradio_empty(url: str) -> Probe:
    p = Probe("Gradio /gradio_api/run/chat with an empty question", "422 JSON (not 500)")
    with client(new_ip()) as c:
        r = c.post(url + "/gradio_api/run/chat", json={"data": ["   ", []]})
    p.observed = f"{r.status_code} {r.text[:100]}"
    p.held = r.status_code == 422 and is_error_json(body_of(r), "/gradio_api/run/chat")
    return p


def probe_abandoned(url: str) -> Probe:
    p = Probe("abandoned answers: 20 clients close before the first token",
              "the server keeps serving: the next answers are 200")
    body = json.dumps({**CHAT, "stream": True}).encode()
    ip = new_ip()
    for i in range(20):
        data = body if i % 2 else json.dumps(CHAT).encode()
        with connect(url, ip) as sock:
            sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         b"application/json\r\nContent-Length: " + str(len(data)).encode()
                         + b"\r\n\r\n" + data)
    times, codes = [], []
    with client(new_ip()) as c:
        for _ in range(5):
            t = time.monotonic()
            codes.append(c.post(url + "/api/chat", json=CHAT).status_code)
            times.append((time.monotonic() - t) * 1000)
    p.observed = (f"20 abandoned (half streaming); next 5: {sorted(set(codes))}, "
                  f"max {max(times):.0f} ms")
    p.held = codes == [200] * 5
    return p


def probe_error_shapes(url: str) -> Probe:
    p = Probe("error shapes", 'every error {"error": "..."}; under /v1 '
                              '{"error": {"message", "type", "code"}}')
    json_ct = {"content-type": "application/json"}
    cases: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("POST", "/api/chat", b"{not json", json_ct),
        ("POST", "/api/chat", b'{"messages": "\xff"}', json_ct),
        ("POST", "/api/chat", b'{"messages": []}', json_ct),
        ("POST", "/v1/chat/completions", b"{not json", json_ct),
        ("POST", "/v1/chat/completions", b'{"messages": "\xff"}', json_ct),
        ("OPTIONS", "/api/chat", None, {}),
        ("OPTIONS", "/v1/chat/completions", None, {}),
        ("GET", "/no-such-page", None, {}),
        ("GET", "/gradio_api/no-such-route", None, {}),
        ("GET", "/v1/no-such-route", None, {}),
        ("DELETE", "/api/chat", None, {}),
    ]
    bad = []
    with client(new_ip()) as c:
        for method, path, content, headers in cases:
            r = c.request(method, url + path, content=content, headers=headers)
            if r.status_code < 400 or not is_error_json(body_of(r), path):
                bad.append(f"{method} {path}: {r.status_code} {r.text[:60]}")
    p.observed = (f"{len(cases) - len(bad)}/{len(cases)} in shape"
                  + ("; " + "; ".join(bad) if bad else ""))
    p.held = not bad
    return p


# -- store and ingest probes -------------------------------------------------------------------
def probe_concurrent_ingest(tmp: Path) -> Probe:
    p = Probe("two concurrent `assistant ingest` into one data dir",
              "both exit cleanly (or the second waits or refuses with a clear message); "
              "both documents present after")
    data = tmp / "ingest-data"
    folders = []
    for name in ("alpha", "beta"):
        folder = tmp / f"ingest-{name}"
        folder.mkdir()
        (folder / f"{name}.md").write_text(f"# The {name} report\n\nThe {name} report "
                                           f"describes {name} harbour security in 2031.\n")
        folders.append(folder)
    env = base_env(data)
    procs = [subprocess.Popen(assistant_cmd("ingest", str(f)), env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for f in folders]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            out, err = proc.communicate()
        results.append((proc.returncode, out, err))
    notes = []
    clean = True
    for i, (code, _, err) in enumerate(results):
        if "Traceback" in err:
            clean = False
            notes.append(f"ingest {i + 1}: exit {code} with a traceback "
                         f"({err.strip().splitlines()[-1][:80]})")
        elif code != 0:
            notes.append(f"ingest {i + 1}: exit {code}: {err.strip()[:80]}")
            again = run_ingest(env, folders[i])  # a clean refusal: try once more
            notes.append(f"rerun exit {again.returncode}")
        else:
            notes.append(f"ingest {i + 1}: exit 0")
    check = subprocess.run(
        [sys.executable, "-c", "import json; from assistant import Assistant, Settings; "
         "print(json.dumps(sorted(Assistant(Settings()).retriever.documents)))"],
        env=env, text=True, capture_output=True, timeout=300)
    try:
        docs = json.loads(check.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        docs = [f"(could not read the index: {check.stderr.strip()[-80:]})"]
    p.observed = "; ".join(notes) + f"; documents after: {', '.join(docs) or 'none'}"
    p.held = clean and len(docs) == 2
    return p


def chroma_probes(tmp: Path, corpus: Path) -> list[Probe]:
    stopped = Probe("Chroma server stopped (SIGSTOP)",
                    "/api/chat and /api/health answer 503 JSON within 15 s (waited 20 s)")
    killed = Probe("Chroma server killed", "/api/chat and /api/health answer 503 JSON "
                                           "naming the problem")
    chroma_bin = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(chroma_bin).exists():
        stopped.observed = killed.observed = "`chroma` not found: not run"
        return [stopped, killed]
    port = free_port()
    chroma_log = (tmp / "chroma.log").open("wb")
    chroma = subprocess.Popen([chroma_bin, "run", "--path", str(tmp / "chroma"), "--host",
                               "127.0.0.1", "--port", str(port)],
                              stdout=chroma_log, stderr=subprocess.STDOUT)
    server: Server | None = None
    try:
        chroma_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(chroma_url + "/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        env = base_env(tmp / "chroma-client-data", chroma_url=chroma_url)
        ingest = run_ingest(env, corpus)
        if ingest.returncode != 0:
            stopped.observed = killed.observed = f"ingest failed: {ingest.stderr[-120:]}"
            return [stopped, killed]
        server = Server(env, tmp / "server-chroma.log")
        server.wait()
        url = server.url

        def ask_both(ip: str) -> list[tuple[str, int | str, float, Any]]:
            """/api/chat and /api/health side by side, each given at most 20 s."""
            out: dict[str, tuple[str, int | str, float, Any]] = {}

            def ask(method: str, path: str) -> None:
                with client(ip, timeout=20) as c:
                    t = time.monotonic()
                    try:
                        r = c.request(method, url + path,
                                      json=CHAT if method == "POST" else None)
                        out[path] = (path, r.status_code, time.monotonic() - t, body_of(r))
                    except httpx.HTTPError as exc:
                        out[path] = (path, type(exc).__name__, time.monotonic() - t, None)

            askers = [threading.Thread(target=ask, args=call)
                      for call in (("POST", "/api/chat"), ("GET", "/api/health"))]
            for t in askers:
                t.start()
            for t in askers:
                t.join(60)
            return [out[path] for path in ("/api/chat", "/api/health") if path in out]

        def describe(results: list[tuple[str, int | str, float, Any]]) -> str:
            return "; ".join(f"{path} {status} in {sec:.1f} s"
                             + (f" {json.dumps(body)[:70]}" if isinstance(status, int)
                                and status >= 400 else "")
                             for path, status, sec, body in results)

        with client(new_ip()) as c:
            baseline = c.post(url + "/api/chat", json=CHAT).status_code
        os.kill(chroma.pid, signal.SIGSTOP)
        results = ask_both(new_ip())
        stopped.observed = f"before: {baseline}; " + describe(results)
        stopped.held = all(status == 503 and sec <= 15 and is_error_json(body, path)
                           for path, status, sec, body in results)
        os.kill(chroma.pid, signal.SIGCONT)
        chroma.kill()
        chroma.wait(15)
        results = ask_both(new_ip())
        killed.observed = describe(results)
        killed.held = all(status == 503 and is_error_json(body, path)
                          and "chroma" in json.dumps(body).lower()
                          for path, status, sec, body in results)
    finally:
        if server is not None:
            server.stop()
        stop_process(chroma)
        chroma_log.close()
    return [stopped, killed]


# -- report ------------------------------------------------------------------------------------
def table(probes: list[Probe]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| probe | expected | observed | held |", "| --- | --- | --- | --- |"]
    lines += [f"| {cell(p.name)} | {cell(p.expected)} | {cell(p.observed)} | "
              f"{'yes' if p.held else 'no'} |" for p in probes]
    return "\n".join(lines)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def corpus_dir(tmp: Path) -> Path:
    """The brochure when this is a checkout, else a small document of our own."""
    folder = tmp / "corpus"
    folder.mkdir()
    brochure = ROOT / "corpus" / "cyber-diplomacy-in-the-eu.md"
    if brochure.is_file():
        shutil.copy(brochure, folder / brochure.name)
    else:
        (folder / "harbour.md").write_text(SMALL_DOC, encoding="utf-8")
    return folder


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    probes: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="assistant-faults-") as name:
        tmp = Path(name)
        corpus = corpus_dir(tmp)
        data = tmp / "data"
        gradio_tmp = tmp / "gradio"
        env = base_env(data, corpus_dir=str(corpus))
        env["GRADIO_TEMP_DIR"] = str(gradio_tmp)
        print("ingesting ...", flush=True)
        ingest = run_ingest(env, corpus)
        if ingest.returncode != 0:
            raise SystemExit(f"ingest failed: {ingest.stderr[-500:]}")
        print("starting the servers ...", flush=True)
        open_server = Server(env, tmp / "server.log")
        key_server = Server({**env, "ASSISTANT_API_KEY": KEY}, tmp / "server-key.log")
        try:
            open_server.wait()
            key_server.wait()
            url = open_server.url
            slow: dict[str, Probe] = {}
            threads = [threading.Thread(target=lambda f=f, k=k: slow.__setitem__(k, f(url)))
                       for k, f in (("headers", probe_slow_headers),
                                    ("body", probe_slow_body))]
            for t in threads:
                t.start()
            steps: list[Callable[[], Probe]] = [
                lambda: probe_forwarded_rate_limit(url),
                lambda: probe_forwarded_lockout(key_server.url),
                lambda: probe_foreign_host(url),
                lambda: probe_huge_header(url),
                lambda: probe_surrogate(url),
                lambda: probe_upload(url, gradio_tmp),
                lambda: probe_gradio_rate(url),
                lambda: probe_gradio_empty(url),
                lambda: probe_abandoned(url),
                lambda: probe_error_shapes(url),
            ]
            for step in steps:
                probe = step()
                print(f"  {'held' if probe.held else 'FAILED'}: {probe.name}: {probe.observed}",
                      flush=True)
                probes.append(probe)
            for t in threads:
                t.join(120)
            probes[4:4] = [slow.get("headers", Probe("slow client: headers", "408")),
                           slow.get("body", Probe("slow client: body", "408"))]
            tracebacks = open_server.tracebacks() + key_server.tracebacks()
            probes.append(Probe("server logs", "no traceback in the servers' output",
                                f"{tracebacks} traceback(s)", tracebacks == 0))
        finally:
            open_server.stop()
            key_server.stop()
        print("ingest and store probes ...", flush=True)
        probes.append(probe_concurrent_ingest(tmp))
        if not args.no_chroma:
            probes.extend(chroma_probes(tmp, corpus))
    seconds = time.monotonic() - t0
    report = (f"# Fault injection\n\n`python -m assistant.server.faults` at {commit()}, "
              f"{time.strftime('%Y-%m-%d')}, {platform.machine()} with {os.cpu_count()} "
              f"cores, {seconds:.0f} s. Default settings, extractive generator, servers on "
              "127.0.0.1; each client probe from its own loopback address.\n\n"
              f"{table(probes)}\n\n{sum(p.held for p in probes)} of {len(probes)} held.\n")
    print("\n" + table(probes))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(f"\nwritten to {out} ({seconds:.0f} s)")
    return 0 if all(p.held for p in probes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.server.faults",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--out", default="eval/reports/faults.md", help="the report file")
    parser.add_argument("--no-chroma", action="store_true",
                        help="skip the probes that need a `chroma run` server")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
