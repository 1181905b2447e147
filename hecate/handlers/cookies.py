"""How a token travels: the two HttpOnly cookies."""

from __future__ import annotations

from typing import Any

from ..core.models import User, utcnow
from ..core.sessions import Grant
from . import web
from .web import Response, services

ACCESS = "access"
REFRESH = "refresh"
DEVICE = "device"  # rate limiting only (core/devices.py): no session, no token


def user_agent() -> str:
    return web.header("User-Agent")


def read_cookie(name: str) -> str | None:
    """The request's cookie ``name``, under its COOKIE_PREFIX."""
    return web.read_cookie(services().settings.cookie_prefix + name)


def _set(response: Response, name: str, value: str, max_age: int, path: str) -> None:
    settings = services().settings
    web.set_cookie(
        response,
        # COOKIE_PREFIX: browsers accept a __Secure-/__Host- cookie only with Secure (and, for
        # __Host-, Path=/ and no Domain), so a sibling subdomain cannot plant or shadow ours.
        settings.cookie_prefix + name,
        value,
        max_age=max_age,
        path=path,
        domain=settings.cookie_domain,
        # Secure always: browsers accept it on http://localhost, and refuse SameSite=None
        # without it.
        secure=True,
        httponly=True,
        samesite=settings.cookie_samesite,
        # CHIPS: a cookie jar per top-level site, for an API embedded under one site.
        partitioned=settings.cookie_partitioned,
    )


def signed_in(body: dict[str, Any], status: int, user: User, grant: Grant) -> Response:
    """A JSON answer that carries fresh access and refresh cookies for ``grant``."""
    hecate = services()
    access, access_ttl = hecate.tokens.issue_access(str(user.id), grant.session_id,
                                                    bool(user.verified))
    refresh = hecate.tokens.issue_refresh(
        str(user.id), grant.session_id, grant.jti, int(grant.expires_at.timestamp()),
        remember=grant.remember, session_expires_at=int(grant.absolute_expires_at.timestamp()))
    refresh_ttl = max(int((grant.expires_at - utcnow()).total_seconds()), 0)
    response = web.json(body, status)
    _set(response, ACCESS, access, access_ttl, "/")
    _set(response, REFRESH, refresh, refresh_ttl, hecate.settings.refresh_cookie_path)
    return response


def signed_out(body: dict[str, Any], status: int = 200) -> Response:
    response = web.json(body, status)
    _set(response, ACCESS, "", 0, "/")
    _set(response, REFRESH, "", 0, services().settings.refresh_cookie_path)
    return response


def set_device_cookie(response: Response, device_id: str) -> None:
    from ..core.devices import DEVICE_COOKIE_MAX_AGE

    _set(response, DEVICE, device_id, DEVICE_COOKIE_MAX_AGE,
         services().settings.refresh_cookie_path)
