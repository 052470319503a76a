"""How the server runs on uvicorn: the HTTP/1.1 connection limits below the ASGI app.

`uvicorn_config()` is what `assistant serve` (and the tests and probes that start a real
server) use:
- proxy headers off: uvicorn would otherwise trust `X-Forwarded-For` from 127.0.0.1, so any
  local client could pick its own address (and with it its rate limit); proxies named in
  the `trusted_proxies` setting are honoured by the app itself (see app.py);
- the h11 parser (not httptools, which has no limit on header size) with the request head
  capped at `max_header_bytes`;
- a deadline for the request line and headers (`header_timeout_s`), which uvicorn does not
  have: a client that connects and sends nothing, or trickles its headers, gets 408 and is
  disconnected; idle keep-alive connections close after `keep_alive_timeout_s`.
Errors at this level are JSON `{"error": ...}` like the app's own.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from ..settings import Settings


def _limited_h11(max_header_bytes: int, header_timeout_s: float) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(H11Protocol):
        """uvicorn's h11 protocol plus a header deadline and JSON protocol errors."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None
            self._cycle_at_arm: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first bytes of the next request on a kept-alive connection
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not self._cycle_at_arm:
                self._disarm()  # a new request's head is complete

        def _arm(self) -> None:
            self._cycle_at_arm = self.cycle
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.cycle is self._cycle_at_arm and not self.transport.is_closing():
                self._reply_and_close(408, f"The request headers did not arrive within "
                                           f"{header_timeout_s:g} s.")

        def send_400_response(self, msg: str) -> None:
            self._disarm()
            if len(self.conn.trailing_data[0]) > max_header_bytes:
                self._reply_and_close(431, f"The request headers are too large (over "
                                           f"{max_header_bytes} bytes).")
            else:
                self._reply_and_close(400, "Invalid HTTP request.")

        def _reply_and_close(self, status: int, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                    "content-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
            self.transport.write(head.encode("ascii") + body)
            self.transport.close()

    return LimitedH11Protocol


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> Any:
    """A uvicorn.Config for `app` with this module's limits, on settings.host:settings.port."""
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": _limited_h11(settings.max_header_bytes, settings.header_timeout_s),
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "log_level": "warning",
        "timeout_graceful_shutdown": 3,
        **overrides,
    }
    return uvicorn.Config(app, **options)
