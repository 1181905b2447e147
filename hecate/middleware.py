"""The outermost ASGI layer: request id, one structured log line per request, the body size limit
and security headers. Pure ASGI, so it wraps every way of serving the app (uvicorn, FaaS)."""

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


class HecateMiddleware:
    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        self.services = services
        self.limit = services.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["hecate"] = self.services
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        status_holder = {"status": 0, "sent": False}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["sent"] = True
                message["headers"] = self._headers(message.get("headers") or [], request_id)
            await send(message)

        try:
            length = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            length = 0
        try:
            if length > self.limit:
                raise _TooLarge
            await self.app(scope, self._limited(receive), send_wrapper)
        except _TooLarge:
            if status_holder["sent"]:
                raise
            await self._problem(
                send_wrapper,
                Problem("payload_too_large",
                        f"The request body is larger than {self.limit} bytes."),
            )
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),  # never the query string
                    "status": status_holder["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "request_id": request_id,
                },
            )

    def _limited(self, receive: Any) -> Any:
        """Counts bodies sent without Content-Length (chunked) against the limit too."""
        received = 0
        limit = self.limit

        async def wrapped() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        return wrapped

    @staticmethod
    def _headers(raw: list[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
        present = {name.lower() for name, _ in raw}
        extra = [(b"x-request-id", request_id.encode()),
                 (b"x-content-type-options", b"nosniff")]
        if b"cache-control" not in present:
            # Answers carry tokens or personal data: never cache them.
            extra.append((b"cache-control", b"no-store"))
        return list(raw) + extra

    async def _problem(self, send: Any, problem: Problem) -> None:
        status, headers, body = render(problem, self.services.settings.error_format)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        raw.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
