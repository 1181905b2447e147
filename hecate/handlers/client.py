"""Who is calling: the client address (after ProxyFix, when TRUSTED_PROXIES says so) and the
rate limits to charge."""

from __future__ import annotations

import flask

from ..core.limits import RateLimits
from .cookies import services


def ip() -> str | None:
    return flask.request.remote_addr


def limits() -> RateLimits:
    limiter = services().limits
    assert limiter is not None, "create_app sets the rate limits"
    return limiter
