"""The web front ends over one `Assistant`: the HTTP API, the Gradio chat page and the widget.

- `api.py`     FastAPI routes: /api/chat (JSON or SSE), /api/health, /v1/chat/completions
- `ui.py`      the Gradio chat page (gr.ChatInterface) at /
- `docview.py` the document view at /docs/<document>: a cited passage in its document
- `app.py`     builds the one ASGI app (routes first, Gradio mounted last) and its middleware:
               error shape, hosts, origins (CORS), security headers, API key, rate limits
- `transport.py` how uvicorn runs it: h11 with a header cap and deadlines, no proxy headers
- `cli.py`     `assistant serve`
- `faults.py`  `python -m assistant.server.faults`: fault-injection probes against a server
- `loadtest.py` `python -m assistant.server.loadtest`: latency under concurrent clients
- `static/widget.js` the embeddable chat widget, served at /widget.js
- `static/docview.js` the document view's one script (scrolls to the passage)
"""

from __future__ import annotations

import os
from typing import Any

# Set before gradio is imported anywhere in the process: no analytics, no version check.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__all__ = ["make_app"]


def __getattr__(name: str) -> Any:
    # Lazy: `assistant --help` imports server.cli and must not pay for importing gradio.
    if name == "make_app":
        from .app import make_app

        return make_app
    raise AttributeError(name)
