"""Functions-as-a-service entry points.

- Google Cloud Functions / Cloud Run functions: ``main.py`` at the repository root exposes
  ``cloud_function`` as the target ``hecate`` for functions-framework (WSGI mode, a flask.Request
  in, a flask.Response out).
- AWS Lambda (API Gateway HTTP API and REST API events, Function URLs): the handler
  ``hecate.serverless.lambda_handler``, through Mangum.

Both serve the same Connexion app as ``hecate serve``, so validation, security, CORS and cookies
behave the same. One app per process, built at the first invocation and kept for the warm
container's later ones (with its one MongoDB client): not at import, because settings are read
then (tests set them first), and because functions-framework imports this module in gunicorn's
master process, before the fork.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import flask

    from .app import HecateApp
    from .core.settings import Settings

log = logging.getLogger("hecate")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Answers whose bodies Mangum returns as text; anything else is base64. Problem JSON is listed or
# every error body would come back base64 (the defaults only match application/json).
TEXT_MIME_TYPES = ["text/", "application/json", "application/problem+json",
                   "application/javascript", "application/xml", "application/vnd.oai.openapi"]

# Hop-by-hop headers are the server's business, not a WSGI application's (PEP 3333).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailers", "transfer-encoding", "upgrade"})


class PublicPrefix:
    """Routes live at PUBLIC_BASE_PATH + /api, and the refresh cookie's Path follows them, so the
    app must see the path the browser sent. Some platforms strip the prefix before the function
    sees the request (a REST API's stage: /prod/api/... arrives as /api/...; the function name of
    a cloudfunctions.net URL, if the platform removes it): put it back. Paths that still carry
    it (an HTTP API's named stage, a custom domain's base path mapping) are left alone."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (self.prefix and scope["type"] in {"http", "websocket"}
                and path != self.prefix and not path.startswith(self.prefix + "/")):
            scope = dict(scope)
            scope["path"] = self.prefix + path
            if scope.get("raw_path"):
                scope["raw_path"] = self.prefix.encode() + scope["raw_path"]
        await self.app(scope, receive, send)


@dataclass
class Served:
    """What a warm process keeps between invocations."""

    connexion_app: HecateApp
    settings: Settings
    asgi: PublicPrefix
    wsgi: Callable[..., Iterable[bytes]] | None = None  # a2wsgi adapter, for functions-framework
    mangum: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None  # for Lambda


_lock = threading.Lock()
_served: Served | None = None


def served() -> Served:
    """The process's app, built on first use. functions-framework runs requests on several
    threads: the lock makes sure only one builds it."""
    global _served
    if _served is None:
        with _lock:
            if _served is None:
                from .asgi import create, deployment_settings

                settings = deployment_settings()
                app = create(settings)
                _served = Served(app, settings, PublicPrefix(app, settings.public_base_path))
    return _served


def _reset() -> None:
    """Forget the process's app and close its clients (tests only: a new environment applies at
    the next invocation)."""
    global _served
    with _lock:
        if _served is not None:
            from .core import models

            _served.connexion_app.services.close()
            models.disconnect()
        _served = None


# --- Google Cloud Functions (functions-framework) ---------------------------------------------

def _wsgi(current: Served) -> Callable[..., Iterable[bytes]]:
    if current.wsgi is None:
        with _lock:
            if current.wsgi is None:
                # Created in the serving process: its event loop runs on a thread of its own, which
                # a fork (gunicorn's) would not carry over.
                from a2wsgi import ASGIMiddleware

                current.wsgi = ASGIMiddleware(current.asgi)  # type: ignore[arg-type]
    return current.wsgi


def _body_length(request: flask.Request, environ: dict[str, Any],
                 limit: int) -> dict[str, Any]:
    """The adapter reads as many body bytes as Content-Length says, and Connexion decides from it
    whether there is a body at all: give a chunked body one (reading at most one byte over the
    limit, so the body limit still answers 413)."""
    if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get(
            "HTTP_TRANSFER_ENCODING", "").lower():
        return environ
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = request.stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    environ = {k: v for k, v in environ.items() if k != "HTTP_TRANSFER_ENCODING"}
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input"] = BytesIO(body)
    return environ


def cloud_function(request: flask.Request) -> flask.Response:
    """The functions-framework target: the request's WSGI environ through the Connexion app."""
    import flask
    from werkzeug.datastructures import Headers

    try:
        current = served()
        app = _wsgi(current)
    except Exception:
        # Logged in full for the operator; the client learns nothing about the configuration
        # (functions-framework's own handler would send the exception's text).
        log.exception("the app could not be built")
        from .core.errors import Problem, render

        status, headers, body = render(Problem("internal_error",
                                               "An unexpected error occurred."))
        return flask.Response(body, status=status, headers=headers)

    environ = _body_length(request, request.environ, current.settings.max_body_bytes)
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        started["status"] = status
        started["headers"] = headers
        return lambda _data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)  # start_response is called while the body is produced
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    response = flask.Response(body, status=started["status"])
    # The app's headers exactly (repeated Set-Cookie included); no default Content-Type added.
    response.headers = Headers([(name, value) for name, value in started["headers"]
                                if name.lower() not in _HOP_BY_HOP])
    return response


# --- AWS Lambda (Mangum) -----------------------------------------------------------------------

def _mangum(current: Served) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    if current.mangum is None:
        from mangum import Mangum

        # lifespan off: nothing to start or stop per invocation; the app is built above.
        current.mangum = Mangum(current.asgi, lifespan="off",
                                text_mime_types=TEXT_MIME_TYPES)
    return current.mangum


def _with_content_length(event: dict[str, Any]) -> dict[str, Any]:
    """Connexion decides from Content-Length whether a request has a body; an event whose
    headers lack it (the gateway has already de-chunked the body) gets the body's length."""
    body = event.get("body")
    if not body:
        return event
    headers = dict(event.get("headers") or {})
    multi = event.get("multiValueHeaders") or {}
    if any(name.lower() == "content-length" for name in [*headers, *multi]):
        return event
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()
    headers["content-length"] = str(len(raw))
    return {**event, "headers": headers}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler: ``hecate.serverless.lambda_handler``."""
    return _mangum(served())(_with_content_length(event), context)
