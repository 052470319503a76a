"""Run llama.cpp's own OpenAI-compatible HTTP server (via xllamacpp) in a child process.

    python -m assistant.llm.llamacpp_server --model PATH [--host 127.0.0.1] [--port N]

The child binds loopback only, prints ``LISTENING <url>`` on stdout once the model is loaded,
and serves until SIGTERM/SIGINT. The API key, if any, is passed in the environment variable
``ASSISTANT_LLM_API_KEY`` rather than argv so it does not show up in ``ps``.
:func:`start_llamacpp_server` starts the child and returns a handle with ``.url``, ``.pid``
and ``.stop()``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx

from .base import LLMError

API_KEY_ENV = "ASSISTANT_LLM_API_KEY"
_READY_PREFIX = "LISTENING "


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LlamaCppServer:
    """Handle on a running server child. ``url`` is the root (``http://127.0.0.1:N``);
    OpenAI clients want ``base_url`` (``url + "/v1"``)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        url: str,
        api_key: str | None,
        log_path: Path,
        model_name: str,
        own_log: bool = False,
    ) -> None:
        self._proc = proc
        self._own_log = own_log
        self.url = url
        self.base_url = url + "/v1"
        self.api_key = api_key
        self.log_path = log_path
        self.model_name = model_name

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout_s`. Idempotent."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._proc.stdout:
            self._proc.stdout.close()
        if self._own_log:  # a temp log we created: nothing went wrong worth keeping it for
            self.log_path.unlink(missing_ok=True)
            self._own_log = False

    def __enter__(self) -> LlamaCppServer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _log_tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip()
    except OSError:
        return ""


def start_llamacpp_server(
    model_path: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    n_ctx: int = 2048,
    n_threads: int = 2,
    *,
    startup_timeout_s: float = 120.0,
    log_path: Path | None = None,
) -> LlamaCppServer:
    """Start the server child and wait until ``/health`` answers 200.

    `port=0` lets llama.cpp pick a free port (reported back by the child). Only loopback
    hosts are accepted. Raises LLMError (with the tail of the child's log) if it fails.
    """
    if not _is_loopback(host):
        raise ValueError(f"refusing to bind {host!r}: the local LLM server binds loopback only")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise LLMError(f"model file not found: {model_path}")
    own_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="llamacpp-server-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    env = dict(os.environ)
    env.pop(API_KEY_ENV, None)
    if api_key:
        env[API_KEY_ENV] = api_key
    # Make sure the child can import this package even when it was put on sys.path by hand.
    src_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH")) if p)
    cmd = [
        sys.executable,
        "-m",
        "assistant.llm.llamacpp_server",
        "--model",
        str(model_path),
        "--host",
        host,
        "--port",
        str(port),
        "--n-ctx",
        str(n_ctx),
        "--threads",
        str(n_threads),
        "--exit-with-parent",
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env
        )
    model_name = model_path.name.removesuffix(".gguf")
    try:
        url = _wait_listening(proc, startup_timeout_s, log_path)
        handle = LlamaCppServer(proc, url, api_key, log_path, model_name, own_log)
        _wait_healthy(handle, startup_timeout_s)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        raise
    return handle


def _wait_listening(proc: subprocess.Popen[bytes], timeout_s: float, log_path: Path) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                data = os.read(proc.stdout.fileno(), 4096)
                if not data:  # child closed stdout: it died
                    break
                buf += data
                for line in buf.decode(errors="replace").splitlines():
                    if line.startswith(_READY_PREFIX):
                        return line[len(_READY_PREFIX) :].strip()
            elif proc.poll() is not None:
                break
    finally:
        sel.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)  # stdout closed: the child is exiting; collect its code
    what = (
        f"exited with code {proc.returncode}"
        if proc.returncode is not None
        else f"did not report ready within {timeout_s:g} s"
    )
    raise LLMError(f"llama.cpp server {what}; log {log_path}:\n{_log_tail(log_path)}")


def _wait_healthy(handle: LlamaCppServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not handle.alive():
                raise LLMError(
                    f"llama.cpp server died during start-up; log {handle.log_path}:\n"
                    f"{_log_tail(handle.log_path)}"
                )
            try:
                r = client.get(handle.url + "/health")
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                last = str(e)
            time.sleep(0.2)
    raise LLMError(f"llama.cpp server at {handle.url} not healthy after {timeout_s:g} s ({last})")


# -- child process entry point --------------------------------------------------------------


def _watch_parent(parent_pid: int, stop: threading.Event) -> None:
    # If whoever started us dies without stopping us (a crashed test run), exit rather than
    # keep 1 GB of model and a port.
    while not stop.wait(1.0):
        if os.getppid() != parent_pid:
            stop.set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m assistant.llm.llamacpp_server",
        description="Serve a GGUF model with llama.cpp's OpenAI-compatible server on loopback.",
    )
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exit-with-parent", action="store_true")
    args = ap.parse_args(argv)
    if not _is_loopback(args.host):
        ap.error(f"refusing to bind {args.host!r}: loopback only")

    from .local import build_params, check_gguf

    try:
        check_gguf(args.model)
    except LLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import xllamacpp as xlc

    api_key = os.environ.get(API_KEY_ENV) or None
    params = build_params(
        args.model,
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        hostname=args.host,
        port=args.port,
        api_key=api_key,
        alias=args.model.name.removesuffix(".gguf"),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(os.getppid(), stop), daemon=True).start()
    try:
        server = xlc.Server(params)  # blocks until the model is loaded and the port is bound
    except Exception as e:
        print(f"error: could not start llama.cpp server: {e}", file=sys.stderr)
        return 1
    print(_READY_PREFIX + server.listening_address, flush=True)
    while not stop.wait(1.0):  # wake regularly so signal handlers run promptly
        pass
    with contextlib.suppress(Exception):
        del server  # stops llama.cpp's loop and HTTP listener
    return 0


if __name__ == "__main__":
    sys.exit(main())
