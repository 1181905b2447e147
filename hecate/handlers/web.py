"""The request a handler serves and the answers it gives, over the ASGI scope Connexion binds for
each operation (visible in the thread pool that runs the synchronous handlers too).

Handlers build Starlette responses directly: Connexion's AsyncApp passes them through as they
are. Cookies are written by werkzeug's ``dump_cookie`` (werkzeug is imported by Connexion anyway),
so their attributes read exactly as they did under Flask (``SameSite=Lax``, ``Expires`` next to
``Max-Age``, an empty value for a cleared cookie).
"""

from __future__ import annotations

from typing import Any

from connexion.context import scope as _scope
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from werkzeug.http import dump_cookie

from ..services import Services
from ..verify import parse_cookie_header

__all__ = ["JSONResponse", "Response", "client_ip", "header", "json", "read_cookie",
           "services", "set_cookie"]


def _current() -> dict[str, Any]:
    current: dict[str, Any] = _scope._get_current_object()  # type: ignore[attr-defined]
    return current


def services() -> Services:
    """Put in the scope by the outermost middleware (hecate.middleware.RequestLog)."""
    found: Services = _current()["hecate"]
    return found


def header(name: str, default: str = "") -> str:
    return Headers(scope=_current()).get(name, default)


def client_ip() -> str | None:
    """The peer's address, or the one trusted proxies forwarded (hecate.middleware.ProxyHeaders
    rewrites the scope when TRUSTED_PROXIES says so)."""
    client = _current().get("client")
    return client[0] if client else None


def read_cookie(name: str) -> str | None:
    """A cookie by its full name, parsed as leniently as the security handler does."""
    return parse_cookie_header(header("cookie")).get(name)


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def set_cookie(response: Response, name: str, value: str, **attributes: Any) -> None:
    response.raw_headers.append(
        (b"set-cookie", dump_cookie(name, value, **attributes).encode("latin-1")))
