"""Tokens in mailed links (verification, password reset, magic login, email change).

A link token is 32 random bytes; the server keeps only its SHA-256, with its purpose, the address
it was mailed to and an expiry. It is consumed by one atomic find-and-delete, so it works once.
Nothing about it is a JWT: holding JWT_SECRET (downstream services do) does not help to forge one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from bson import ObjectId

from .errors import Problem
from .models import LinkToken, utcnow

VERIFY = "verify"
RESET = "reset"
MAGIC = "magic"
EMAIL_CHANGE = "email_change"
EMAIL_CHANGE_CANCEL = "email_change_cancel"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue(user_id: ObjectId, purpose: str, email: str, ttl_seconds: int,
          new_email: str | None = None) -> str:
    """A new link token; the user's previous link of the same purpose stops working (one
    document per purpose and user, replaced in one operation)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    LinkToken._get_collection().replace_one(
        {"_id": f"{purpose}:{user_id}"},
        {
            "hash": _digest(token),
            "userId": user_id,
            "purpose": purpose,
            "email": email,
            "newEmail": new_email,
            "createdAt": now,
            "expiresAt": now + dt.timedelta(seconds=ttl_seconds),
        },
        upsert=True,
    )
    return token


def _invalid() -> Problem:
    return Problem("link_invalid", "This link is no longer valid: it was used, expired, or "
                   "replaced by a newer one. Please ask for a new one.")


def peek(token: str, purposes: tuple[str, ...]) -> LinkToken:
    """The token's record, left in place (to check a request before the link is used up); 410
    like ``consume``."""
    found = LinkToken.objects(
        token_hash=_digest(token), purpose__in=list(purposes), expires_at__gt=utcnow()
    ).first()
    if found is None:
        raise _invalid()
    return found


def consume(token: str, purposes: tuple[str, ...]) -> LinkToken:
    """The token's record, deleted in the same operation; 410 if it was used, replaced by a newer
    link, expired, or never existed."""
    found = LinkToken.objects(
        token_hash=_digest(token), purpose__in=list(purposes), expires_at__gt=utcnow()
    ).modify(remove=True)
    if found is None:
        raise _invalid()
    return found


def revoke(user_id: ObjectId, *purposes: str) -> None:
    """End the user's pending links of these purposes (all of them when none are named)."""
    query = LinkToken.objects(user_id=user_id)
    if purposes:
        query = query.filter(purpose__in=list(purposes))
    query.delete()
