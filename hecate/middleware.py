"""Pure ASGI layers around and inside the Connexion app: the client address behind trusted
proxies, request id, one structured log line per request, the audit trail's client, security
headers, the Swagger UI page's content security policy, the body size limit and the CSRF check.
Pure ASGI, so they apply however the app is served (uvicorn, FaaS)."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import uuid
from typing import Any

from .core import audit, metrics
from .core.errors import Problem, render
from .services import Services
from .verify import SAME_SITE_FETCHES, UNSAFE_METHODS, origin_of

log = logging.getLogger("hecate.request")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Scope = dict[str, Any]


class _TooLarge(Exception):
    pass


class ProxyHeaders:
    """TRUSTED_PROXIES = N: the client address is the N-th X-Forwarded-For entry from the right
    (the one the outermost trusted proxy saw), the scheme the last X-Forwarded-Proto. Entries
    further left were written by the client and are ignored; with fewer than N entries nothing
    changes. Outermost, so the rate limits, the audit trail and the Origin check see them."""

    def __init__(self, app: Any, hops: int) -> None:
        self.app = app
        self.hops = hops

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            forwarded_for: list[str] = []
            proto = ""
            for name, value in scope.get("headers") or []:
                if name == b"x-forwarded-for":
                    forwarded_for += [v.strip() for v in value.decode("latin-1").split(",")]
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
            scope = dict(scope)
            if len(forwarded_for) >= self.hops and forwarded_for[-self.hops]:
                port = scope["client"][1] if scope.get("client") else 0
                scope["client"] = (forwarded_for[-self.hops], port)
            if proto in {"http", "https"}:
                scope["scheme"] = proto
        await self.app(scope, receive, send)


class RequestLog:
    """Outermost (but for ProxyHeaders): request id, the log line and security headers, on every
    answer (CORS preflights and errors included)."""

    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["hecate"] = self.services
        headers = dict(scope.get("headers") or [])
        # Audit events recorded while serving the request carry its client; the thread pool
        # that runs the handlers copies this context.
        client = scope.get("client")
        audit.bind(client[0] if client else None,
                   headers.get(b"user-agent", b"").decode("latin-1"))
        # Connexion's routing records the operation in a shallow copy of the scope: a dict put
        # here first is shared with that copy, so the operation can be read back below.
        extensions = scope.setdefault("extensions", {})
        started = time.perf_counter()
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        status = 0
        counted = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                routing = extensions.get("connexion_routing") or {}
                # No answer started: an error escaped the app (the server answers 500).
                metrics.request_answered(routing.get("operation_id"), status or 500,
                                         time.perf_counter() - started)

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _security_headers(message.get("headers") or [],
                                                       request_id)
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Counted before the last byte leaves: a client that has its answer (and then
                # scrapes the metrics) finds the request counted.
                count()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # Servers run each request in a task of its own, so the binding would not outlive
            # it anyway; cleared all the same for any host that reuses one context.
            audit.unbind()
            count()
            elapsed = time.perf_counter() - started
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),  # never the query string
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                    "request_id": request_id,
                },
            )


def _security_headers(raw: list[tuple[bytes, bytes]],
                      request_id: str) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in raw}
    extra = [(b"x-request-id", request_id.encode()), (b"x-content-type-options", b"nosniff"),
             # Links in mails carry tokens in the URL: never leak a URL onwards.
             (b"referrer-policy", b"no-referrer"),
             # No answer is meant to be framed (clickjacking of the Swagger UI's forms).
             (b"x-frame-options", b"DENY")]
    if b"cache-control" not in present:
        # Answers carry tokens or personal data: never cache them.
        extra.append((b"cache-control", b"no-store"))
    if b"content-security-policy" not in present:
        # Answers are JSON: should a browser render one as a document, it may load nothing.
        extra.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
    return list(raw) + extra


_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>",
                            re.DOTALL | re.IGNORECASE)
_INLINE_STYLE = re.compile(rb"<style[^>]*>(.*?)</style\s*>", re.DOTALL | re.IGNORECASE)


def _hashes(pattern: re.Pattern[bytes], page: bytes) -> str:
    return "".join(" 'sha256-" + base64.b64encode(hashlib.sha256(block).digest()).decode() + "'"
                   for block in pattern.findall(page))


def swagger_ui_policy(page: bytes) -> str:
    """A strict policy for the Swagger UI page: scripts and styles from this origin and, by hash,
    the inline bootstrap script and style block the page carries (the script's text depends on
    the base path, so the page is hashed as served). Swagger UI's own inline styles are set
    through the DOM, which style-src does not govern."""
    return (f"default-src 'self'; script-src 'self'{_hashes(_INLINE_SCRIPT, page)}; "
            f"style-src 'self'{_hashes(_INLINE_STYLE, page)}; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class SwaggerUIPolicy:
    """Inside RequestLog (which gives every other answer a policy that allows nothing): the
    Swagger UI page gets a policy that lets it run and nothing else."""

    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        ui = services.settings.api_path + "/ui/"
        self.pages = {ui, ui + "index.html"}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope.get("method") not in {"GET", "HEAD"}
                or scope.get("path") not in self.pages):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def buffered(message: dict[str, Any]) -> None:
            # The page is small; hold it back until its inline script can be hashed.
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body" or not start:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = b"".join(chunks)
            headers = [(k, v) for k, v in start.get("headers") or []
                       if k.lower() != b"content-security-policy"]
            headers.append((b"content-security-policy", swagger_ui_policy(page).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, buffered)


class OriginCheck:
    """CSRF defence. The cookies are SameSite=None for SPAs on another site, so a browser sends them
    with any site's requests. Every operation that changes something therefore (a) takes JSON only:
    a browser sends that content type cross-origin only after a CORS preflight, which CORS_ORIGINS
    decides, and an HTML form cannot send it at all; and (b) must come from an allowed origin,
    where the browser says where it comes from (Origin, else Referer, else Sec-Fetch-Site).
    Clients that send none of those headers are not browsers and carry no victim's cookies.

    After routing (only the spec's operations are checked: other methods and paths keep their
    405/404) and before the cookie check; inside CORS, which answers preflights first and lets the
    SPA read a refusal. A refusal is a Problem, rendered by the app's error handlers."""

    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        self.allowed = frozenset(services.settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope.get("method") in UNSAFE_METHODS
                and scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")):
            self.check(scope)
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        headers = {name.lower(): value.decode("latin-1")
                   for name, value in scope.get("headers") or []}
        media_type = headers.get(b"content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise Problem("unsupported_media_type", "Send requests that change something with "
                          "Content-Type: application/json (with a body of {} if there is "
                          "nothing to send).")
        if not self._from_allowed_origin(scope, headers):
            raise Problem("origin_not_allowed", "This request comes from a site that may not "
                          "change anything here.")

    def _from_allowed_origin(self, scope: Scope, headers: dict[bytes, str]) -> bool:
        origin = headers.get(b"origin")
        if origin is not None:
            # "null" (sandboxed frames, privacy-redirected form posts) is no origin we trust.
            return self._allowed(origin.strip().lower(), scope, headers)
        referer = headers.get(b"referer", "").strip()
        if referer:
            return self._allowed(origin_of(referer), scope, headers)
        site = headers.get(b"sec-fetch-site")
        if site is not None:
            return site.strip().lower() in SAME_SITE_FETCHES
        return True

    def _allowed(self, origin: str, scope: Scope, headers: dict[bytes, str]) -> bool:
        if origin in self.allowed:
            return True
        # Our own origin: the Swagger UI page served by this app. Only a page on this very origin
        # (scheme, host and port the browser sent the request to) makes the two match.
        host = headers.get(b"host", "").strip().lower()
        return bool(host) and origin == f"{scope.get('scheme', 'http')}://{host}"


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
