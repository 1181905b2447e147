"""Who is calling: the client address (as forwarded by trusted proxies, when TRUSTED_PROXIES says
so) and the rate limits to charge."""

from __future__ import annotations

from ..core.limits import RateLimits
from .web import client_ip as ip
from .web import services

__all__ = ["ip", "limits"]


def limits() -> RateLimits:
    limiter = services().limits
    assert limiter is not None, "create_app sets the rate limits"
    return limiter
