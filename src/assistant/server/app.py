"""The one ASGI app: FastAPI routes first (/api, /v1, /widget.js), the Gradio page mounted last.

`Guard`, the outermost middleware, owns the security policy for every path, Gradio's included:
- origins: a request that carries an `Origin` other than the app's own or an allowed one is
  refused (403) before it reaches any route, and CORS headers are sent to allowed ones only;
- `Content-Security-Policy: frame-ancestors 'self' <allowed origins>` and `nosniff`;
- an optional API key (`Authorization: Bearer ...`) for /api and /v1 (not /api/health);
- a per-client rate limit on the answering endpoints (the Gradio chat function uses the same
  limiter), and a cap on request body size.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections import deque
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from .api import ApiError, AssistantLike, error_response, make_api_router

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
RATE_LIMITED_PATHS = ("/api/chat", "/v1/chat/completions")
CORS_ALLOW_HEADERS = "authorization, content-type, x-gradio-user"


# -- origins -----------------------------------------------------------------------------------
def normalize_origin(origin: str) -> str:
    """'HTTP://Example.com' -> 'http://example.com:80': scheme, host and explicit port."""
    parts = urlsplit(origin.strip().rstrip("/"))
    if not parts.scheme or not parts.hostname:
        return origin.strip()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    except ValueError:
        return origin.strip()
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}:{port}"


class OriginPolicy:
    """The app's own origin (from the request's Host) plus the `allowed_origins` setting."""

    def __init__(self, allowed: list[str]) -> None:
        self.any = "*" in allowed
        self.allowed = [o.strip().rstrip("/") for o in allowed if o.strip() and o != "*"]
        self._normalized = {normalize_origin(o) for o in self.allowed}

    def own_origin(self, scope: Scope, headers: Headers) -> str:
        host = headers.get("host") or ""
        return normalize_origin(f"{scope.get('scheme', 'http')}://{host}")

    def is_allowed(self, origin: str, scope: Scope, headers: Headers) -> tuple[bool, bool]:
        """(allowed, cross_origin) for a request carrying `Origin: origin`."""
        o = normalize_origin(origin)
        if o == self.own_origin(scope, headers):
            return True, False
        return self.any or o in self._normalized, True

    def frame_ancestors(self) -> str:
        if self.any:
            return "frame-ancestors *"
        return " ".join(["frame-ancestors 'self'", *self.allowed])


# -- rate limit --------------------------------------------------------------------------------
class RateLimiter:
    """At most `per_minute` hits per client in any 60-second window; 0 disables it."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._last_sweep = time.monotonic()

    def hit(self, client: str) -> float:
        """Record a hit; returns 0 when allowed, else the seconds until one is allowed."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if now - self._last_sweep > self.window_s:  # forget idle clients
                self._hits = {k: v for k, v in self._hits.items()
                              if v and now - v[-1] < self.window_s}
                self._last_sweep = now
            hits = self._hits.setdefault(client, deque())
            while hits and now - hits[0] >= self.window_s:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(self.window_s - (now - hits[0]), 0.1)
            hits.append(now)
            return 0.0


def client_key(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# -- the guard ---------------------------------------------------------------------------------
class Guard:
    """Pure ASGI middleware (so streaming responses pass through untouched)."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: RateLimiter) -> None:
        self.app = app
        self.origins = OriginPolicy(list(settings.allowed_origins))
        self.api_key = settings.api_key
        self.limiter = limiter
        self.security_headers = {
            "content-security-policy": self.origins.frame_ancestors(),
            "x-content-type-options": "nosniff",
            "referrer-policy": "strict-origin-when-cross-origin",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        method: str = scope["method"]
        origin = headers.get("origin")
        cross = False
        if origin is not None:
            allowed, cross = self.origins.is_allowed(origin, scope, headers)
            if not allowed:
                log.info("refused origin %s for %s", origin, path)
                await self._reply(scope, receive, send, error_response(
                    path, 403, f"Origin {origin} is not allowed. Add it to the "
                    "allowed_origins setting (ASSISTANT_ALLOWED_ORIGINS) to use the "
                    "assistant from that site."))
                return
            if method == "OPTIONS" and "access-control-request-method" in headers:
                await self._reply(scope, receive, send, self._preflight(), cors=origin)
                return
        cors = origin if cross else None
        if path.startswith(("/api/", "/v1/")) and method != "OPTIONS":
            refusal = self._check_api(scope, headers, path, method)
            if refusal is not None:
                await self._reply(scope, receive, send, refusal, cors=cors)
                return
        await self.app(scope, receive, self._wrap_send(send, cors))

    def _check_api(self, scope: Scope, headers: Headers, path: str,
                   method: str) -> Response | None:
        if self.api_key and path != "/api/health":
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    token.strip().encode(), self.api_key.encode()):
                return error_response(path, 401, "Missing or wrong API key: send the header "
                                      "'Authorization: Bearer <key>'.",
                                      {"WWW-Authenticate": "Bearer"})
        if method == "POST":
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
                return error_response(path, 413, f"The request body is too large "
                                      f"(over {MAX_BODY_BYTES} bytes).")
            if path in RATE_LIMITED_PATHS:
                wait = self.limiter.hit(client_key(scope))
                if wait:
                    return error_response(
                        path, 429, f"Too many requests: the limit is "
                        f"{self.limiter.per_minute} per minute. Try again in "
                        f"{math.ceil(wait)} s.", {"Retry-After": str(math.ceil(wait))})
        return None

    def _preflight(self) -> Response:
        return Response(status_code=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": "600",
        })

    def _wrap_send(self, send: Send, cors: str | None, inner: bool = True) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                if inner:  # this policy is the only one: drop what an inner app decided
                    for name in {k for k in h if k.lower().startswith("access-control-")}:
                        del h[name]
                for name, value in self.security_headers.items():
                    if name not in h:
                        h[name] = value
                if cors is not None:
                    h["Access-Control-Allow-Origin"] = cors
                    h["Access-Control-Expose-Headers"] = "Retry-After"
                    h.add_vary_header("Origin")
            await send(message)

        return wrapped

    async def _reply(self, scope: Scope, receive: Receive, send: Send, response: Response,
                     cors: str | None = None) -> None:
        await response(scope, receive, self._wrap_send(send, cors, inner=False))


# -- error handlers ----------------------------------------------------------------------------
def _describe(errors: list[dict[str, Any]]) -> tuple[int, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "The request body is not valid JSON."
    parts = []
    for e in errors[:5]:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        where = ".".join(loc)
        if not where:  # no body, or not a JSON object
            return 422, ('Send a JSON object (Content-Type: application/json) like '
                         '{"messages": [{"role": "user", "content": "your question"}]}.')
        msg = e.get("msg", "invalid")
        if e.get("type") == "literal_error" and loc and loc[-1] == "role":
            msg = f"role must be one of {e.get('ctx', {}).get('expected', 'user, assistant')}"
        parts.append(f"{where}: {msg}" if where else msg)
    return 422, "Invalid request: " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, exc.headers, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _describe(list(exc.errors()))
        return error_response(request.url.path, status, message)


# -- the app -----------------------------------------------------------------------------------
def widget_source() -> str:
    return resources.files("assistant.server").joinpath("static/widget.js").read_text("utf-8")


def make_app(assistant: AssistantLike | None = None, settings: Settings | None = None, *,
             ui: bool = True) -> FastAPI:
    """The whole server. `ui=False` leaves out the Gradio page (API-only tests)."""
    if assistant is None:
        from ..core import Assistant

        settings = settings or Settings()
        assistant = Assistant(settings)
    settings = settings or getattr(assistant, "settings", None) or Settings()
    limiter = RateLimiter(settings.rate_limit_per_minute)

    app = FastAPI(title="Document assistant API", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")  # Swagger UI would load scripts from a CDN
    app.state.assistant = assistant
    app.state.limiter = limiter
    install_error_handlers(app)
    app.include_router(make_api_router(assistant))

    widget = widget_source()

    @app.get("/widget.js", include_in_schema=False)
    async def widget_js() -> Response:
        return Response(widget, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                   include_in_schema=False)
    async def api_not_found(rest: str) -> JSONResponse:  # not Gradio's HTML 404
        return error_response("/api/", 404, f"No such endpoint: /api/{rest}")

    if ui:
        import gradio as gr

        from .ui import make_ui

        blocks = make_ui(assistant, settings, limiter)
        app = gr.mount_gradio_app(app, blocks, path="/", footer_links=["api"],
                                  run_history=False, ssr_mode=False)
    app.add_middleware(Guard, settings=settings, limiter=limiter)
    return app
