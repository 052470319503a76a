"""`assistant serve`: the chat page, the HTTP API and the widget in one process (uvicorn)."""

from __future__ import annotations

import argparse
import sys

from ..settings import Settings


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (default: the host setting, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: the port setting, 7860)")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default: warning)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from ..core import Assistant
    from .app import make_app
    from .transport import uvicorn_config

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
    if overrides:
        settings = settings.with_overrides(**overrides)
    assistant = Assistant(settings)
    print(f"loading the index and the {assistant.mode} generator ...", flush=True)
    try:
        assistant.warm_up()  # the first visitor should not wait for a model to load
    except Exception as exc:  # the server still starts; answers say what went wrong
        print(f"warning: warm-up failed: {exc}", file=sys.stderr)
    health = assistant.health()
    if not health["chunks"]:
        print("warning: the index is empty; run `assistant ingest` first", file=sys.stderr)
    app = make_app(assistant, settings)
    url = f"http://{settings.host}:{settings.port}"
    print(f"{health['documents']} documents, {health['chunks']} chunks; "
          f"generators: {', '.join(assistant.generators)}")
    print(f"chat page  {url}/\nAPI        {url}/api/chat  (health: {url}/api/health)\n"
          f"OpenAI     {url}/v1/chat/completions\nwidget     {url}/widget.js\n"
          "Ctrl-C stops the server.", flush=True)
    uvicorn.Server(uvicorn_config(app, settings, log_level=args.log_level)).run()
    return 0
