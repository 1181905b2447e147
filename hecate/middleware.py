"""Pure ASGI layers around the Connexion app: request id, one structured log line per request,
security headers, and the body size limit. Pure ASGI, so they apply however the app is served
(uvicorn, FaaS)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from .core.errors import Problem, render
from .services import Services

log = logging.getLogger("hecate.request")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Scope = dict[str, Any]


class _TooLarge(Exception):
    pass


class RequestLog:
    """Outermost: request id, the log line and security headers, on every answer (CORS
    preflights and errors included)."""

    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["hecate"] = self.services
        started = time.perf_counter()
        offered = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        status = 0

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _security_headers(message.get("headers") or [],
                                                       request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),  # never the query string
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "request_id": request_id,
                },
            )


def _security_headers(raw: list[tuple[bytes, bytes]],
                      request_id: str) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in raw}
    extra = [(b"x-request-id", request_id.encode()), (b"x-content-type-options", b"nosniff")]
    if b"cache-control" not in present:
        # Answers carry tokens or personal data: never cache them.
        extra.append((b"cache-control", b"no-store"))
    return list(raw) + extra


class BodyLimit:
    """Inside CORS (so a 413 is readable by the SPA): bodies over MAX_BODY_BYTES get 413. A chunked
    body (no Content-Length) is read up to the limit and handed on with a Content-Length, since
    Connexion decides from that header whether a body exists."""

    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        self.limit = services.settings.max_body_bytes
        self.error_format = services.settings.error_format

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            length = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            length = 0
        if length > self.limit:
            await self._too_large(send)
            return
        if b"content-length" not in headers and b"chunked" in headers.get(
                b"transfer-encoding", b"").lower():
            try:
                body = await self._read(receive)
            except _TooLarge:
                await self._too_large(send)
                return
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"]
                                if k.lower() != b"transfer-encoding"]
            scope["headers"].append((b"content-length", str(len(body)).encode()))
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read(self, receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _TooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _too_large(self, send: Any) -> None:
        problem = Problem("payload_too_large",
                          f"The request body is larger than {self.limit} bytes.")
        status, headers, body = render(problem, self.error_format)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        raw.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay
