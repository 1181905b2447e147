"""Verify Hecate's access tokens in your own services, without calling Hecate.

Needs only the standard library and pyjwt[crypto]. The Flask, Starlette and FastAPI helpers import
their framework when first used, so a FastAPI service does not need Flask and vice versa.

    from hecate.verify import Verifier
    verifier = Verifier(secret=os.environ["JWT_SECRET"], allowed_origins=["https://app.example.com"])

    @app.get("/api/notes")                      # Flask
    @verifier.require_user
    def notes(): ...                            # flask.g.user_id, flask.g.token_claims

    @app.get("/api/notes")                      # FastAPI
    async def notes(user: dict = Depends(verifier.fastapi_user)): ...

    app = HecateAuthMiddleware(app, verifier)   # any ASGI app: scope["state"]["user"]

One exception type, :class:`InvalidToken`; its message never contains the token.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import jwt

__all__ = ["HecateAuthMiddleware", "InvalidToken", "Verifier", "verify_access_token"]

HMAC_ALGORITHM = "HS256"
# Only for keys from a JWKS; never "none", never an HMAC algorithm (a public key used as an HMAC
# secret would let anybody sign).
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
MAX_TOKEN_LENGTH = 4096  # far above any token Hecate issues; refuse to parse larger input
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAME_SITE_FETCHES = frozenset({"same-origin", "same-site", "none"})
_TITLES = {401: "Unauthorized", 403: "Forbidden"}


class InvalidToken(Exception):
    """The token is missing, malformed, expired, not an access token, or not Hecate's.

    ``code`` is the problem code a service answers with: ``"invalid_token"``, or
    ``"authentication_required"`` when no token was sent at all."""

    def __init__(self, message: str, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _OriginNotAllowed(Exception):
    pass


def key_id(secret: str) -> str:
    """The ``kid`` Hecate puts in the header of tokens signed with ``secret``."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def _secrets(secret: str | Iterable[str] | None) -> tuple[str, ...]:
    if secret is None:
        return ()
    # A string is split like Hecate's JWT_SECRET: "NEW OLD" while a key is being rotated.
    found = tuple(secret.split()) if isinstance(secret, str) else tuple(secret)
    if not found or not all(isinstance(s, str) and s for s in found):
        raise ValueError("secret must be a non-empty string or a list of non-empty strings")
    return found


class _Jwks:
    """A JWKS endpoint's keys by ``kid``: fetched at first use, again after ``lifespan`` seconds,
    and at once when a token names an unknown kid (a new key), but then at most once per
    ``refetch_cooldown`` seconds, so tokens with made-up kids cannot make us hammer the endpoint."""

    def __init__(self, url: str, lifespan: float, refetch_cooldown: float,
                 timeout: float) -> None:
        self.client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        self.lifespan = lifespan
        self.cooldown = refetch_cooldown
        self.keys: dict[str, jwt.PyJWK] | None = None
        self.fetched_at = -math.inf
        self.forced_at = -math.inf
        self.lock = threading.Lock()

    def _fetch(self, now: float) -> None:
        try:
            jwk_set = self.client.get_jwk_set(refresh=True)
        except jwt.PyJWTError:
            if self.keys is None:
                raise InvalidToken("The signing keys could not be fetched.") from None
            # Keep serving the keys we have; try again after the cooldown.
            self.fetched_at = now - self.lifespan + self.cooldown
            return
        self.keys = {key.key_id: key for key in jwk_set.keys
                     if key.key_id and key.public_key_use in ("sig", None)}
        self.fetched_at = now

    def _stale(self, now: float) -> bool:
        return self.keys is None or now - self.fetched_at >= self.lifespan

    def would_fetch(self, kid: str | None) -> bool:
        """Whether key(kid) may block on the network (async callers then use a thread)."""
        now = time.monotonic()
        if self._stale(now):
            return True
        assert self.keys is not None
        return kid not in self.keys and now - self.forced_at >= self.cooldown

    def key(self, kid: str | None) -> jwt.PyJWK:
        with self.lock:
            now = time.monotonic()
            fetched = False
            if self._stale(now):
                self._fetch(now)
                fetched = True
            assert self.keys is not None
            found = self.keys.get(kid) if kid else None
            if found is None and kid and not fetched and now - self.forced_at >= self.cooldown:
                self.forced_at = now
                self._fetch(now)
                found = self.keys.get(kid)
        if found is None:
            raise InvalidToken("The token is signed with an unknown key.")
        return found


class Verifier:
    """How your service checks Hecate's access tokens, and the helpers that use it.

    secret: Hecate's JWT_SECRET (several, space-separated or as a list, while rotating keys).
    jwks_url: a JWKS with Hecate's public keys (RS256, ES256 or EdDSA). Give either or both.
    issuer, audience: must match JWT_ISSUER / JWT_AUDIENCE. leeway: seconds of clock skew.
    cookie_prefix: Hecate's COOKIE_PREFIX ("__Host-" reads the ``__Host-access`` cookie).
    allowed_origins: origins whose pages may POST/PUT/PATCH/DELETE (Hecate's CORS_ORIGINS).
    """

    def __init__(self, *, secret: str | Iterable[str] | None = None, jwks_url: str | None = None,
                 issuer: str = "hecate", audience: str | None = None, leeway: float = 30,
                 cookie_prefix: str = "", allowed_origins: Iterable[str] = (),
                 jwks_lifespan: float = 300, jwks_refetch_cooldown: float = 10,
                 jwks_timeout: float = 5) -> None:
        self.secrets = _secrets(secret)
        if not self.secrets and not jwks_url:
            raise ValueError("give secret (Hecate's JWT_SECRET) or jwks_url")
        # Tried in order when a token names no known kid; by kid the first of equal ones wins.
        self._by_kid = {key_id(s): s for s in reversed(self.secrets)}
        self._jwks = (_Jwks(jwks_url, jwks_lifespan, jwks_refetch_cooldown, jwks_timeout)
                      if jwks_url else None)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.cookie_name = cookie_prefix + "access"
        allowed = {o.strip().lower().rstrip("/") for o in allowed_origins}
        if "*" in allowed:
            raise ValueError("allowed_origins must list origins: '*' would let any site act")
        self.allowed_origins = frozenset(allowed)
        self._fastapi_user: Callable[..., Awaitable[dict[str, Any]]] | None = None

    # What a token is -------------------------------------------------------------------------
    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; else raises InvalidToken."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("The token is malformed.")
        header = _header(token)
        if header is None:
            raise InvalidToken("The token is malformed.")
        alg, kid = header.get("alg"), header.get("kid")
        kid = kid if isinstance(kid, str) else None
        if alg == HMAC_ALGORITHM and self.secrets:
            known = self._by_kid.get(kid) if kid else None
            # Without a known kid (tokens of the Node original have none) every secret is tried.
            candidates: tuple[Any, ...] = (known,) if known is not None else self.secrets
        elif alg in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            jwk = self._jwks.key(kid)
            if jwk.algorithm_name != alg:
                raise InvalidToken("The token's algorithm does not match its key.")
            candidates = (jwk.key,)
        else:
            raise InvalidToken("The token is signed with an unexpected algorithm.")
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=[alg], issuer=self.issuer, audience=self.audience,
                    leeway=self.leeway, options={"require": ["exp", "iss", "sub"]})
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise InvalidToken("The token has expired.") from None
            except jwt.ImmatureSignatureError:
                raise InvalidToken("The token is not yet valid.") from None
            except jwt.InvalidAudienceError:
                raise InvalidToken("The token is meant for another audience.") from None
            except jwt.InvalidIssuerError:
                raise InvalidToken("The token was not issued by the expected issuer.") from None
            except jwt.MissingRequiredClaimError as exc:
                raise InvalidToken(f"The token has no {exc.claim!r} claim.") from None
            except jwt.PyJWTError:
                raise InvalidToken("The token is invalid.") from None
        else:
            raise InvalidToken("The token signature is invalid.")
        # Refresh tokens are signed with the same key: only an access token is meant for us.
        if claims.get("type") != "access":
            raise InvalidToken("This is not an access token.")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("The token names no user.")
        return claims

    async def verify_async(self, token: str) -> dict[str, Any]:
        """verify() that fetches a JWKS in a worker thread, not on the event loop."""
        if self._jwks is not None and isinstance(token, str) and len(token) <= MAX_TOKEN_LENGTH:
            header = _header(token) or {}
            kid = header.get("kid")
            if (header.get("alg") in ASYMMETRIC_ALGORITHMS
                    and self._jwks.would_fetch(kid if isinstance(kid, str) else None)):
                import anyio.to_thread  # Starlette's own dependency

                return await anyio.to_thread.run_sync(self.verify, token)
        return self.verify(token)

    # How a token travels ---------------------------------------------------------------------
    def token_from(self, authorization: str | None, cookie_header: str | None) -> str:
        """The token of a request: ``Authorization: Bearer ...``, else the access cookie."""
        if authorization:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        token = parse_cookie_header(cookie_header).get(self.cookie_name)
        if not token:
            raise InvalidToken("Sign in first.", code="authentication_required")
        return token

    def origin_allowed(self, method: str, headers: Callable[[str], str | None],
                       scheme: str = "http") -> bool:
        """Hecate's CSRF rule for requests that change something: the page's origin (Origin,
        else Referer's, else Sec-Fetch-Site) must be allowed; requests that carry none of these
        headers are no browser's and carry no victim's cookies. GET and HEAD are not checked:
        CORS keeps other sites from reading the answers."""
        if method.upper() not in UNSAFE_METHODS:
            return True
        origin = headers("origin")
        if origin is None:
            referer = (headers("referer") or "").strip()
            if not referer:
                site = headers("sec-fetch-site")
                return site is None or site.strip().lower() in SAME_SITE_FETCHES
            origin = origin_of(referer)
        # "null" (sandboxed frames, privacy-redirected form posts) is no origin we trust.
        origin = origin.strip().lower()
        if origin in self.allowed_origins:
            return True
        # A page of this very service (scheme, host and port the request went to).
        host = (headers("host") or "").strip().lower()
        return bool(host) and origin == f"{scheme}://{host}"

    def authenticate(self, method: str, headers: Callable[[str], str | None],
                     scheme: str = "http") -> dict[str, Any]:
        """Origin check, then the token: the claims, or _OriginNotAllowed / InvalidToken."""
        if not self.origin_allowed(method, headers, scheme):
            raise _OriginNotAllowed
        return self.verify(self.token_from(headers("authorization"), headers("cookie")))

    async def authenticate_async(self, method: str, headers: Callable[[str], str | None],
                                 scheme: str = "http") -> dict[str, Any]:
        if not self.origin_allowed(method, headers, scheme):
            raise _OriginNotAllowed
        return await self.verify_async(
            self.token_from(headers("authorization"), headers("cookie")))

    # Flask -----------------------------------------------------------------------------------
    def require_user(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """Flask view decorator: sets ``g.user_id`` and ``g.token_claims``, or answers 401/403
        problem JSON."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            import flask

            request = flask.request
            try:
                claims = self.authenticate(request.method, request.headers.get, request.scheme)
            except (InvalidToken, _OriginNotAllowed) as exc:
                status, headers, body = refusal(exc)
                return flask.Response(body, status=status, headers=headers)
            flask.g.user_id = claims["sub"]
            flask.g.token_claims = claims
            return view(*args, **kwargs)

        return wrapper

    # Starlette / FastAPI ---------------------------------------------------------------------
    @property
    def fastapi_user(self) -> Callable[..., Awaitable[dict[str, Any]]]:
        """A FastAPI dependency: ``user: dict = Depends(verifier.fastapi_user)`` gives the
        claims (also on ``request.state.user``) or raises a 401/403 HTTPException whose detail
        is the problem body; ``install_problem_handler(app)`` makes the answer the bare problem
        JSON, as Hecate's own."""
        if self._fastapi_user is None:
            from starlette.requests import Request

            async def hecate_user(request: Request) -> dict[str, Any]:
                try:
                    claims = await self.authenticate_async(
                        request.method, request.headers.get, request.url.scheme)
                except (InvalidToken, _OriginNotAllowed) as exc:
                    status, headers, body = refusal(exc)
                    raise _problem_exception()(status, json.loads(body), headers) from None
                request.state.user = claims
                return claims

            # FastAPI reads the parameter's type to inject the request; the module's postponed
            # annotations would name a class it cannot find here.
            hecate_user.__annotations__ = {"request": Request, "return": dict}
            self._fastapi_user = hecate_user
        return self._fastapi_user

    @staticmethod
    def install_problem_handler(app: Any) -> None:
        """Answer fastapi_user's refusals as ``application/problem+json`` (type, title, status,
        detail, code, message) instead of FastAPI's ``{"detail": ...}``."""
        from starlette.responses import Response

        async def handler(request: Any, exc: Any) -> Any:
            return Response(json.dumps(exc.problem), status_code=exc.status_code,
                            headers={**(exc.headers or {}),
                                     "Content-Type": "application/problem+json"})

        app.add_exception_handler(_problem_exception(), handler)


@functools.cache
def _problem_exception() -> type[Exception]:
    from starlette.exceptions import HTTPException

    class HecateHTTPException(HTTPException):
        def __init__(self, status: int, problem: dict[str, Any],
                     headers: dict[str, str]) -> None:
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            super().__init__(status, detail=problem, headers=headers)  # type: ignore[arg-type]
            self.problem = problem

    return HecateHTTPException


class HecateAuthMiddleware:
    """Pure ASGI middleware: every HTTP request (and websocket handshake) must carry a valid
    access token; its claims go to ``scope["state"]["user"]`` (Starlette: ``request.state.user``).
    Refusals are answered here as 401/403 problem JSON; a websocket is closed with 1008.
    Paths in ``public_paths`` (exact) and OPTIONS requests (CORS preflights) pass without a
    token. Put a CORS middleware outside this one, so refusals carry CORS headers.

        app = HecateAuthMiddleware(app, Verifier(secret=...))     # or
        Starlette(middleware=[Middleware(HecateAuthMiddleware, verifier=verifier)])
    """

    def __init__(self, app: Any, verifier: Verifier, *,
                 public_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] not in ("http", "websocket") or scope.get("path") in self.public_paths
                # CORS preflights carry no cookies; a CORS middleware outside answers them.
                or scope.get("method") == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = _asgi_headers(scope)
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        scheme = {"wss": "https", "ws": "http"}.get(scope.get("scheme", "http"),
                                                     scope.get("scheme", "http"))
        try:
            claims = await self.verifier.authenticate_async(method, headers.get, scheme)
        except (InvalidToken, _OriginNotAllowed) as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            status, response_headers, body = refusal(exc)
            raw = [(k.lower().encode(), v.encode()) for k, v in response_headers.items()]
            raw.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["user"] = claims
        await self.app(scope, receive, send)


def verify_access_token(token: str, *, secret: str | Iterable[str] | None = None,
                        jwks_url: str | None = None, issuer: str = "hecate",
                        audience: str | None = None, leeway: float = 30) -> dict[str, Any]:
    """The claims of a valid Hecate access token, else InvalidToken. Verifiers (and with them
    a JWKS's cached keys) are kept per configuration."""
    secrets = _secrets(secret) if secret is not None else None
    return _verifier(secrets, jwks_url, issuer, audience, leeway).verify(token)


@functools.lru_cache(maxsize=16)
def _verifier(secrets: tuple[str, ...] | None, jwks_url: str | None, issuer: str,
              audience: str | None, leeway: float) -> Verifier:
    return Verifier(secret=secrets, jwks_url=jwks_url, issuer=issuer, audience=audience,
                    leeway=leeway)


# Helpers ---------------------------------------------------------------------------------------
def problem(status: int, code: str, detail: str) -> dict[str, Any]:
    """Hecate's problem JSON (RFC 9457 plus ``code`` and ``message``)."""
    return {"type": f"https://hecate.dev/problems/{code.replace('_', '-')}",
            "title": _TITLES.get(status, "Error"), "status": status, "detail": detail,
            "code": code, "message": detail}


def refusal(exc: Exception) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer to a refused request."""
    headers = {"Content-Type": "application/problem+json", "Cache-Control": "no-store"}
    if isinstance(exc, InvalidToken):
        status, code, detail = 401, exc.code, exc.message
        headers["WWW-Authenticate"] = ('Bearer error="invalid_token"'
                                       if code == "invalid_token" else "Bearer")
    else:
        status, code = 403, "origin_not_allowed"
        detail = "This request comes from a site that may not change anything here."
    return status, headers, json.dumps(problem(status, code, detail)).encode()


def parse_cookie_header(header: str | None) -> dict[str, str]:
    """Lenient Cookie parsing: an unrelated malformed cookie must not hide ours. The first
    occurrence of a name wins (browsers send the most specific path first)."""
    cookies: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name and name not in cookies:
            cookies[name] = value
    return cookies


def _header(token: str) -> dict[str, Any] | None:
    """The JOSE header, only to pick the key: jwt.decode checks the whole token strictly
    afterwards. A third of pyjwt's own get_unverified_header's cost."""
    head = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return None
    return header if isinstance(header, dict) else None


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased; "" when it has none (also Hecate's own)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()


def _asgi_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or []:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in headers:
            # HTTP/2 may split Cookie into several fields; other repeats: the first wins.
            if name == "cookie":
                headers[name] += "; " + value
            continue
        headers[name] = value
    return headers
