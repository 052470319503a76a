"""Origins: the app's own origin plus the `allowed_origins` setting (OriginPolicy), and the
collections each origin may use (`collection_origins`, CollectionOrigins)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import Scope


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

    def cors_origins(self) -> list[str]:
        """The allowed origins as browsers send them (CORSMiddleware compares exactly)."""
        if self.any:
            return ["*"]
        out: list[str] = []
        for o in self.allowed:
            parts = urlsplit(o)
            out.append(o)
            if parts.scheme and parts.hostname:
                base = f"{parts.scheme.lower()}://{parts.hostname.lower()}"
                default = {"http": 80, "https": 443}.get(parts.scheme.lower())
                try:
                    port = parts.port
                except ValueError:
                    continue
                out.append(base if port in (None, default) else f"{base}:{port}")
        return list(dict.fromkeys(out))




class CollectionOrigins:
    """`collection_origins`: per collection, the only other origins whose pages may use it.

    It applies to cross-origin requests (a browser on another site: the widget); a request
    from the app's own pages, or without an `Origin` header (a program, curl), is not a
    cross-origin use. A collection not named in the setting is open to every allowed origin
    (the global `allowed_origins` check comes first, in app.py's OriginGate).
    """

    def __init__(self, mapping: dict[str, list[str]], policy: OriginPolicy) -> None:
        self.policy = policy
        self.rules = {name: {normalize_origin(o) for o in origins if o.strip()}
                      for name, origins in mapping.items()}

    def cross_origin(self, scope: Scope, headers: Headers) -> str | None:
        """The request's Origin when it is another site's; None otherwise."""
        origin = headers.get("origin")
        if origin is None:
            return None
        return origin if self.policy.is_allowed(origin, scope, headers)[1] else None

    def may_use(self, collection: str, origin: str | None) -> bool:
        if origin is None or collection not in self.rules:
            return True
        return "*" in self.rules[collection] or normalize_origin(origin) in self.rules[collection]

    def refusal(self, collection: str, scope: Scope, headers: Headers) -> str | None:
        """Why this request may not use `collection`, or None when it may."""
        origin = self.cross_origin(scope, headers)
        if self.may_use(collection, origin):
            return None
        return (f"Origin {origin} may not use the collection {collection!r}; the "
                "collection_origins setting names the sites that may.")

    def visible(self, names: list[str], scope: Scope, headers: Headers) -> list[str]:
        """Of `names`, those this request's origin may use."""
        origin = self.cross_origin(scope, headers)
        return [n for n in names if self.may_use(n, origin)]
