"""The one ASGI app: FastAPI routes first (/api, /v1, /widget.js, the document view /docs/...),
the Gradio page mounted last.

Standard pieces where they fit, outermost first:
- `JsonErrors`: every error response that is not already JSON `{"error": ...}` (a framework's
  plain-text 400, a mounted app's `{"detail": ...}`) is rewritten into that shape (OpenAI's
  under /v1);
- uvicorn's `ProxyHeadersMiddleware`, only for the proxies named in `trusted_proxies`;
- Starlette's `TrustedHostMiddleware`: only the `allowed_hosts` are answered (DNS rebinding);
- `Guard`, the product's own policy for every path, Gradio's included (below);
- Starlette's `CORSMiddleware`: CORS headers and preflights for the allowed origins (Gradio's
  own CORS middleware steps aside when the parent app has one).

`Guard`:
- origins: a request that carries an `Origin` other than the app's own or an allowed one is
  refused (403) before it reaches any route (CORS alone would still run it);
- `Content-Security-Policy: frame-ancestors 'self' <allowed origins>` and `nosniff`;
- an optional API key for every path but /api/health, /widget.js and /docview.js (Gradio's
  page and routes, and the document view, included): `Authorization: Bearer <key>`, or the
  HttpOnly SameSite=Strict cookie a browser gets by typing the key into the small form the
  page shows instead;
- a per-client limit on wrong keys (bearer or form): past it the key is not even checked
  and the answer is 429 with Retry-After;
- a per-client rate limit on the answering endpoints (the Gradio chat function uses the same
  limiter; both on the `limits` library), and a cap on every request body (API and Gradio
  routes alike), by Content-Length up front and counted as it arrives (so a chunked body
  without Content-Length is capped too), with a deadline for the whole body (408);
- Gradio's upload route is refused: the chat page takes no files;
- document management (/api/documents, admin.py) exists only with an admin key, needs it as a
  bearer key on every request (the API key and the page's cookie never grant it; wrong admin
  keys count towards the same per-client limit), and is refused to other origins; its
  uploads have their own body cap (upload_max_files x upload_max_bytes);
- the status of an error the chat function reports through Gradio's HTTP API (/run, /api):
  422 for a question it cannot take, 429 past the rate limit, 503 when busy, not 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from ..store import StoreError
from .admin import ADMIN_PREFIX, upload_cap
from .api import ApiError, AssistantLike, error_response, make_api_router, store_unavailable
from .docview import SCRIPT_PATH, make_docs_router
from .origins import CollectionOrigins, OriginPolicy, normalize_origin

__all__ = ["OriginPolicy", "make_app", "normalize_origin"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # every route: the page's JSON bodies are small, it has no upload
BODILESS_METHODS = ("GET", "HEAD", "OPTIONS")  # passed through uncounted (the queue's SSE is a GET)
WRONG_KEYS_PER_MINUTE = 10  # per client: room for typos, far too few for guessing
API_PREFIXES = ("/api/", "/v1/")
RATE_LIMITED_PATHS = ("/api/chat", "/v1/chat/completions")
PUBLIC_PATHS = ("/api/health", "/widget.js", SCRIPT_PATH)  # open even with an API key
KEY_COOKIE = "assistant_session"
MAX_KEY_FORM_BYTES = 4096
CORS_ALLOW_HEADERS = ["authorization", "content-type", "x-gradio-user"]
REFUSED_PATHS = ("/gradio_api/upload",)  # the chat page takes no files
LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
# Set by the chat function (ui.py) in the request's scope["state"]: (status, message, headers)
# of an error it raised, so Gradio's HTTP API answers that status instead of 500.
GRADIO_ERROR = "assistant.gradio_error"


# -- rate limit --------------------------------------------------------------------------------
class RateLimiter:
    """At most `per_minute` hits per client in any `window_s`-second moving window (the
    `limits` library, in memory); 0 disables it."""

    def __init__(self, per_minute: int, window_s: int = 60) -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerSecond(max(per_minute, 1), max(int(window_s), 1))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, client: str) -> float:
        """Record a hit; returns 0 when allowed, else the seconds until one is allowed."""
        if self.per_minute <= 0 or self._limiter.hit(self._item, client):
            return 0.0
        return self._retry_after(client)

    def wait(self, client: str) -> float:
        """Like `hit` but records nothing: 0 when a hit would be allowed now."""
        if self.per_minute <= 0 or self._limiter.test(self._item, client):
            return 0.0
        return self._retry_after(client)

    def _retry_after(self, client: str) -> float:
        stats = self._limiter.get_window_stats(self._item, client)
        return max(stats.reset_time - time.time(), 0.1)


def client_key(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# -- the API key ------------------------------------------------------------------------------
class KeyCheck:
    """The optional API key, presented as a bearer header or as the page's session cookie.

    The cookie holds an HMAC of the key (not the key itself), so changing the key ends every
    browser session.
    """

    def __init__(self, key: str) -> None:
        self.key = key.encode()
        self.cookie_value = hmac.new(self.key, b"assistant page session",
                                     hashlib.sha256).hexdigest()

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.strip().encode(), self.key)

    @staticmethod
    def bearer(headers: Headers) -> str | None:
        """The key an `Authorization: Bearer <key>` header presents, if any."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token.strip() else None

    def has_cookie(self, headers: Headers) -> bool:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == KEY_COOKIE and hmac.compare_digest(value.encode(),
                                                          self.cookie_value.encode()):
                return True
        return False

    def set_cookie(self, response: Response, scope: Scope) -> None:
        response.set_cookie(KEY_COOKIE, self.cookie_value, path="/", httponly=True,
                            samesite="strict", secure=scope.get("scheme") == "https")


KEY_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Document assistant: key needed</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 26rem; margin: 15vh auto;
       padding: 0 1rem; color: #1d1d1f; }}
input, button {{ font: inherit; padding: .45rem .6rem; }}
input {{ width: 100%; box-sizing: border-box; margin: .5rem 0 .8rem; }}
.wrong {{ color: #b00020; }}
</style></head>
<body><main>
<h1>Document assistant</h1>
<p>This assistant needs its API key.</p>{note}
<form method="post">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open</button>
</form>
</main></body></html>
"""


class BodyTooLarge(Exception):
    pass


# -- the guards ----------------------------------------------------------------------------------
class OriginGate:
    """Outside CORSMiddleware: refuses foreign origins (403) and sets the security headers."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.origins = OriginPolicy(list(settings.allowed_origins))
        self.security_headers = {
            "content-security-policy": self.origins.frame_ancestors(),
            "x-content-type-options": "nosniff",
            "referrer-policy": "strict-origin-when-cross-origin",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared with the routes below (see GRADIO_ERROR)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and not self.origins.is_allowed(origin, scope, headers)[0]:
            log.info("refused origin %s for %s", origin, scope["path"])
            response = error_response(
                scope["path"], 403, f"Origin {origin} is not allowed. Add it to the "
                "allowed_origins setting (ASSISTANT_ALLOWED_ORIGINS) to use the "
                "assistant from that site.")
            await response(scope, receive, self._wrap_send(send))
            return
        await self.app(scope, receive, self._wrap_send(send))

    def _wrap_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                for name, value in self.security_headers.items():
                    if name not in h:
                        h[name] = value
            await send(message)

        return wrapped


class Guard:
    """Pure ASGI middleware (so streaming responses pass through untouched), inside
    CORSMiddleware so that its refusals carry CORS headers for allowed origins."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: RateLimiter) -> None:
        self.app = app
        self.key = KeyCheck(settings.api_key) if settings.api_key else None
        self.admin = KeyCheck(settings.admin_key) if settings.admin_key else None
        self.origins = OriginPolicy(list(settings.allowed_origins))
        self.upload_cap = upload_cap(settings)
        self.limiter = limiter
        self.wrong_keys = RateLimiter(WRONG_KEYS_PER_MINUTE)
        self.body_timeout_s = settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.key is not None and not self._credentials(
                scope, Headers(scope=scope))[0]:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})  # the server answers 403
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        headers = Headers(scope=scope)
        path: str = scope["path"]
        method: str = scope["method"]
        if path.rstrip("/") in REFUSED_PATHS:
            await self._reply(scope, receive, send, error_response(
                path, 403, "File uploads are not accepted: the chat page takes no files."))
            return
        admin = path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")
        if admin:  # the admin key, and only it, opens these routes
            admin_refusal = self._admin_refusal(scope, headers, path)
            if admin_refusal is not None:
                await self._reply(scope, receive, send, admin_refusal)
                return
        elif self.key is not None and path not in PUBLIC_PATHS:
            key_refusal = await self._key_refusal(scope, receive, headers, path, method)
            if key_refusal is not None:
                await self._reply(scope, receive, send, key_refusal)
                return
        limit = self.upload_cap if admin and method == "POST" else MAX_BODY_BYTES
        refusal = self._check_request(scope, headers, path, method, limit)
        if refusal is not None:
            await self._reply(scope, receive, send, refusal)
            return
        if method in BODILESS_METHODS:
            await self.app(scope, receive, self._wrap_send(send, scope))
            return
        await self._call_capped(scope, receive, send, path, limit)

    # -- the admin key
    def _admin_refusal(self, scope: Scope, headers: Headers, path: str) -> Response | None:
        """None for the admin key as a bearer key from the app's own origin (or no browser
        origin); else 404 without an admin key set, 403 from another origin, 401 for a missing
        or wrong key, 429 past WRONG_KEYS_PER_MINUTE (shared with the API key)."""
        if self.admin is None:
            return error_response(path, 404, f"Not found: {path} (document management is "
                                  "off; it needs the admin_key setting).")
        origin = headers.get("origin")
        if origin is not None and self.origins.is_allowed(origin, scope, headers)[1]:
            return error_response(path, 403, "Document management is open only to this "
                                  "app's own pages and to programs, not to other sites.")
        token = self.admin.bearer(headers)
        if token is None:
            return error_response(path, 401, "Missing admin key: send the header "
                                  "'Authorization: Bearer <admin key>'.",
                                  {"WWW-Authenticate": "Bearer"})
        client = client_key(scope)
        wait = self.wrong_keys.wait(client)
        if wait:
            return too_many(path, "Too many wrong keys.", wait)
        if self.admin.matches(token):
            return None
        self.wrong_keys.hit(client)
        log.info("wrong admin key from %s", client)
        return error_response(path, 401, "Wrong admin key.", {"WWW-Authenticate": "Bearer"})

    # -- the API key
    async def _key_refusal(self, scope: Scope, receive: Receive, headers: Headers, path: str,
                           method: str) -> Response | None:
        """None for the session cookie or a right key; else 401: JSON for programs, for a
        browser the key form (a correct key sets the cookie); 429 for a client past
        WRONG_KEYS_PER_MINUTE.

        The form posts back to the page's own URL, so it works under any path prefix.
        """
        assert self.key is not None
        allowed, wait = self._credentials(scope, headers)
        if allowed:
            return None
        if wait:
            return too_many(path, "Too many wrong API keys.", wait)
        form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        if method == "POST" and form and not path.startswith(API_PREFIXES):
            try:
                body = await read_body(receive, MAX_KEY_FORM_BYTES)
            except BodyTooLarge:
                return self._too_large(path, MAX_KEY_FORM_BYTES)
            key = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0]
            allowed, wait = self._try_key(scope, key, "the page's form")
            if wait:
                seconds = math.ceil(wait)
                return self._key_page(f"Too many wrong keys. Try again in {seconds} s.", 429,
                                      {"Retry-After": str(seconds)})
            if allowed:
                back = Response(status_code=303, headers={
                    "Location": _same_page(scope),
                    "Cache-Control": "no-store"})
                self.key.set_cookie(back, scope)
                return back
            return self._key_page("That key is not right.")
        if method in ("GET", "HEAD") and "text/html" in headers.get("accept", ""):
            return self._key_page()
        return error_response(path, 401, "Missing or wrong API key: send the header "
                              "'Authorization: Bearer <key>'.",
                              {"WWW-Authenticate": "Bearer"})

    def _credentials(self, scope: Scope, headers: Headers) -> tuple[bool, float]:
        """(allowed, retry_after) for the session cookie or a bearer key (see `_try_key`).

        The cookie is not counted: it is an HMAC, no easier to guess than the key.
        """
        assert self.key is not None
        if self.key.has_cookie(headers):
            return True, 0.0
        token = self.key.bearer(headers)
        if token is None:
            return False, 0.0
        return self._try_key(scope, token, "a bearer header")

    def _try_key(self, scope: Scope, candidate: str, source: str) -> tuple[bool, float]:
        """(right, retry_after): a client past the limit of wrong keys gets its key not even
        checked (retry_after > 0), so guessing costs a minute per WRONG_KEYS_PER_MINUTE tries.
        """
        assert self.key is not None
        client = client_key(scope)
        wait = self.wrong_keys.wait(client)
        if wait:
            log.debug("refused an API key from %s unchecked: too many wrong keys", client)
            return False, wait
        if self.key.matches(candidate):
            return True, 0.0
        self.wrong_keys.hit(client)
        log.info("wrong API key from %s in %s", client, source)
        return False, 0.0

    @staticmethod
    def _key_page(note: str = "", status: int = 401,
                  headers: dict[str, str] | None = None) -> Response:
        html = f'\n<p class="wrong" role="alert">{note}</p>' if note else ""
        return HTMLResponse(KEY_PAGE.format(note=html), status_code=status,
                            headers={"Cache-Control": "no-store", **(headers or {})})

    # -- every route
    def _check_request(self, scope: Scope, headers: Headers, path: str,
                       method: str, limit: int = MAX_BODY_BYTES) -> Response | None:
        """413 for a declared over-size body; 429 past the rate limit of the answering paths."""
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            log.info("refused a %s-byte request body for %s", length, path)
            return self._too_large(path, limit)
        if method == "POST" and path in RATE_LIMITED_PATHS:
            wait = self.limiter.hit(client_key(scope))
            if wait:
                return too_many(path, f"Too many requests: the limit is "
                                f"{self.limiter.per_minute} per minute.", wait)
        return None

    @staticmethod
    def _too_large(path: str, limit: int = MAX_BODY_BYTES) -> JSONResponse:
        return error_response(path, 413, f"The request body is too large "
                              f"(over {limit} bytes).", {"Connection": "close"})

    async def _call_capped(self, scope: Scope, receive: Receive, send: Send, path: str,
                           limit: int = MAX_BODY_BYTES) -> None:
        """Run the app with the body counted as it is read (Content-Length may be absent),
        and with a deadline for the whole body.

        Past MAX_BODY_BYTES (413) or the deadline (408) the guard answers itself (unless a
        response has begun), tells the app the client left, and drops what the app still sends.
        """
        received = 0
        started = cut = refused = body_done = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        send_inner = self._wrap_send(send, scope)

        async def cut_off(response: Response) -> Message:
            nonlocal cut, refused
            cut = True
            if not started:
                refused = True
                await self._reply(scope, receive, send, response)
            return {"type": "http.disconnect"}

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if cut:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(remaining, 0.001)):
                    message = await receive()
            except TimeoutError:
                log.info("refused a request body slower than %g s for %s",
                         self.body_timeout_s, path)
                return await cut_off(error_response(
                    path, 408, f"The request body did not arrive within "
                    f"{self.body_timeout_s:g} s.", {"Connection": "close"}))
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.info("refused a request body over %d bytes for %s", limit, path)
                    return await cut_off(self._too_large(path, limit))
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send_inner(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:  # an app failing on the "disconnect" after our reply is expected
                raise

    # -- responses
    @staticmethod
    def _wrap_send(send: Send, scope: Scope) -> Send:
        """Turns a 500 from Gradio's HTTP API into the status the chat function reported
        (GRADIO_ERROR), with the one error body."""
        replaced = False

        async def wrapped(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start" and message["status"] == 500:
                reported = scope.get("state", {}).get(GRADIO_ERROR)
                if reported is not None:
                    replaced = True
                    status, text, extra = reported
                    await error_response(scope["path"], status, text, extra)(
                        scope, _no_receive, send)
                    return
            await send(message)

        return wrapped

    @staticmethod
    async def _reply(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
        await response(scope, receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def too_many(path: str, message: str, wait: float) -> JSONResponse:
    seconds = math.ceil(wait)
    return error_response(path, 429, f"{message} Try again in {seconds} s.",
                          {"Retry-After": str(seconds)})


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or BodyTooLarge once it passes `limit` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            break
    return bytes(body)


def _same_page(scope: Scope) -> str:
    """This page's URL, relative (so it holds under a proxy's path prefix): './<last segment>'."""
    raw = scope.get("raw_path") or scope["path"].encode()
    last = raw.decode("latin-1").split("?", 1)[0].rsplit("/", 1)[-1]
    query = scope.get("query_string", b"").decode("latin-1")
    return "./" + last + (f"?{query}" if query else "")


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


BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's, e.g. for invalid UTF-8


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, exc.headers, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _describe(list(exc.errors()))
        return error_response(request.url.path, status, message)

    @app.exception_handler(StoreError)
    async def _store_down(request: Request, exc: StoreError) -> JSONResponse:
        err = store_unavailable(exc)  # 503 JSON naming the store, wherever it was raised
        return error_response(request.url.path, err.status, err.message, err.headers, err.kind)
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = _detail_text(exc.detail, request.method, request.url.path, exc.status_code)
        return error_response(request.url.path, exc.status_code, message,
                              dict(exc.headers or {}))


def _detail_text(detail: Any, method: str, path: str, status: int) -> str:
    """A framework's error detail (a string, or a list of validation errors) as one sentence."""
    if isinstance(detail, list):
        parts = [f"{'.'.join(str(x) for x in d.get('loc', ()) if x != 'body')}: {d.get('msg')}"
                 if isinstance(d, dict) else str(d) for d in detail[:5]]
        return "Invalid request: " + "; ".join(parts) + "."
    text = str(detail).strip() if detail is not None else ""
    if text == BODY_PARSE_ERROR:
        return "The request body could not be read: send JSON encoded as UTF-8."
    if status == 404 and text in ("", "Not Found"):
        return f"Not found: {method} {path}"
    if status == 405 and text in ("", "Method Not Allowed"):
        return f"Method {method} is not allowed on {path}."
    try:
        return text or HTTPStatus(status).phrase
    except ValueError:
        return text or "error"


MAX_REWRITTEN_ERROR_BYTES = 64 * 1024


class JsonErrors:
    """Outermost: an error response that is not JSON {"error": ...} becomes one.

    Rewrites plain-text errors (TrustedHostMiddleware's "Invalid host header", CORSMiddleware's
    "Disallowed CORS ...", Gradio's upload errors) and JSON {"detail": ...} (the mounted Gradio
    app's 404s and validation errors) into the one shape; HTML (the key form) and bodies that
    are already {"error": ...} pass as they are. Other headers are kept.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                ctype = Headers(raw=message.get("headers", [])).get("content-type", "")
                if message["status"] >= 400 and ctype.startswith(("text/plain",
                                                                  "application/json")):
                    start = message  # held until the body is known
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.extend(message.get("body", b""))
                if message.get("more_body", False) and len(body) <= MAX_REWRITTEN_ERROR_BYTES:
                    return
                held, start = start, None
                await self._send_error(scope, held, bytes(body),
                                       message.get("more_body", False), send)
                return
            await send(message)

        await self.app(scope, receive, wrapped)

    @staticmethod
    async def _send_error(scope: Scope, start: Message, body: bytes, more_body: bool,
                          send: Send) -> None:
        message = None if more_body else _error_text(start, body, scope)
        if message is None:  # already the right shape (or too large to look at)
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": more_body})
            return
        response = error_response(scope["path"], start["status"], message)
        kept = [(k, v) for k, v in start.get("headers", [])
                if k.lower() not in (b"content-type", b"content-length")]
        response.raw_headers = [*kept, *((k, v) for k, v in response.raw_headers
                                         if k in (b"content-type", b"content-length"))]
        await response(scope, _no_receive, send)


def _error_text(start: Message, body: bytes, scope: Scope) -> str | None:
    """The message for an error body to rewrite; None when it is fine as it is."""
    ctype = Headers(raw=start.get("headers", [])).get("content-type", "")
    status, method, path = start["status"], scope.get("method", ""), scope["path"]
    text = body.decode("utf-8", "replace")
    if ctype.startswith("text/plain"):
        if text.strip() == "Invalid host header":  # TrustedHostMiddleware's
            return ("This server does not answer for the host named in the request's Host "
                    "header; add it to the allowed_hosts setting (ASSISTANT_ALLOWED_HOSTS).")
        return _detail_text(text, method, path, status)
    try:
        data = json.loads(text)
    except ValueError:
        return _detail_text("", method, path, status)
    if isinstance(data, dict) and "error" in data:
        error = data["error"]
        if (isinstance(error, str) and error) or (isinstance(error, dict)
                                                  and error.get("message")):
            return None
        return _detail_text("", method, path, status)  # e.g. Gradio's {"error": null}
    if isinstance(data, dict) and "detail" in data:
        return _detail_text(data["detail"], method, path, status)
    return _detail_text("", method, path, status)


# -- the app -----------------------------------------------------------------------------------
def widget_source(name: str = "widget.js") -> str:
    return resources.files("assistant.server").joinpath(f"static/{name}").read_text("utf-8")


def allowed_hosts(settings: Settings) -> list[str]:
    """The Host header values answered: the setting, or the loopback names plus the bind
    address (unless it is a wildcard address, which names no host)."""
    if settings.allowed_hosts:
        return [h.strip().lower() for h in settings.allowed_hosts if h.strip()]
    hosts = list(LOCAL_HOSTS)
    host = settings.host.strip().lower()
    if host and host not in ("0.0.0.0", "::", "[::]"):
        hosts.append(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return list(dict.fromkeys(hosts))


def _warn_unreachable_origins(settings: Settings, policy: OriginPolicy) -> None:
    """collection_origins may only narrow allowed_origins: say so for an origin it names
    that allowed_origins does not (its pages are refused before any collection is chosen)."""
    if policy.any:
        return
    allowed = {normalize_origin(o) for o in policy.allowed}
    for name, origins in settings.collection_origins.items():
        for origin in origins:
            if origin.strip() not in ("", "*") and normalize_origin(origin) not in allowed:
                log.warning("collection_origins names %s for %r, but allowed_origins does "
                            "not: its pages are refused", origin, name)


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
    origin_policy = OriginPolicy(list(settings.allowed_origins))
    collection_origins = CollectionOrigins(dict(settings.collection_origins), origin_policy)
    _warn_unreachable_origins(settings, origin_policy)
    app.include_router(make_api_router(assistant, collection_origins))
    if settings.admin_key:
        from ..uploads import DocumentManager
        from .admin import make_admin_router

        manager = DocumentManager(assistant, settings.data_dir, settings.corpus_dir)
        app.include_router(make_admin_router(manager, settings))

    widget = widget_source()

    @app.get("/widget.js", include_in_schema=False)
    async def widget_js() -> Response:
        return Response(widget, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    # The document view (/docs/...) and its script: the page's key and origin rules apply.
    app.include_router(make_docs_router(assistant, origin_policy.frame_ancestors()))

    docview_script = widget_source("docview.js")

    @app.get(SCRIPT_PATH, include_in_schema=False)
    async def docview_js() -> Response:
        return Response(docview_script, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                   include_in_schema=False)
    async def api_not_found(rest: str) -> JSONResponse:  # not Gradio's HTML 404
        return error_response("/api/", 404, f"No such endpoint: /api/{rest}")

    if ui:
        import gradio as gr

        from .ui import make_ui

        blocks = make_ui(assistant, settings, limiter, collection_origins)
        app = gr.mount_gradio_app(app, blocks, path="/", footer_links=["api"],
                                  run_history=False, ssr_mode=False)
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(Guard, settings=settings, limiter=limiter)
    app.add_middleware(CORSMiddleware, allow_origins=OriginPolicy(
        list(settings.allowed_origins)).cors_origins(), allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=CORS_ALLOW_HEADERS, expose_headers=["Retry-After"], max_age=600)
    app.add_middleware(OriginGate, settings=settings)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings),
                       www_redirect=False)
    if settings.trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    app.add_middleware(JsonErrors)
    return app
