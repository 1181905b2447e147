"""Who is calling: the client address (after ProxyFix, when TRUSTED_PROXIES says so) and the
rate limits to charge."""

from __future__ import annotations

from typing import Any

import flask

from ..core import audit
from ..core.limits import RateLimits
from .cookies import services, user_agent


def ip() -> str | None:
    return flask.request.remote_addr


def limits() -> RateLimits:
    limiter = services().limits
    assert limiter is not None, "create_app sets the rate limits"
    return limiter


def bind_audit() -> None:
    """Before each request: audit events recorded while serving it carry its client."""
    audit.bind(ip(), user_agent())


def unbind_audit(_error: Any = None) -> None:
    audit.unbind()
