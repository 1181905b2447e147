"""Device cookies (OWASP's scheme against lockout): after a successful sign-in the browser gets a
random device id; the account keeps its hash. Login attempts that carry a device id the account
knows are rate limited per device, not per account, so a stranger's guessing elsewhere cannot lock
the owner's browser out."""

from __future__ import annotations

import hashlib
import secrets

from .models import User

MAX_DEVICES = 20
DEVICE_COOKIE_MAX_AGE = 365 * 86400


def _digest(device_id: str) -> str:
    return hashlib.sha256(device_id.encode("utf-8", "surrogatepass")).hexdigest()


def recognise(user: User | None, device_id: str | None) -> str | None:
    """The limiter key of a device cookie this account issued, else None."""
    if user is None or not device_id or len(device_id) > 128:
        return None
    digest = _digest(device_id)
    return f"{user.id}:{digest}" if digest in (user.devices or []) else None


def remember(user: User) -> str:
    """A new device id for this browser; the account keeps the newest MAX_DEVICES."""
    device_id = secrets.token_urlsafe(24)
    User._get_collection().update_one(
        {"_id": user.id},
        {"$push": {"devices": {"$each": [_digest(device_id)], "$slice": -MAX_DEVICES}}},
    )
    return device_id
