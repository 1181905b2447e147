"""The audit trail: security events, stored in the ``events`` collection (each expires after
AUDIT_RETENTION, by a TTL index) and written to the structured log.

``record()`` is called where an event happens, in handlers and in core. It never raises: a
database error while auditing is logged and the request goes on (an outage of the trail must not
become an outage of sign-in). The client's IP and User-Agent come from the request being served
(``bind()``, called by the app for each request), so core code need not know about HTTP.

What is never stored: passwords, hashes, tokens, cookie values, email addresses. A failed
sign-in with an unknown email is stored without the address and without a hash of it: such an
address is personal data of someone who may have no account here, and a hash of an email is
easily reversed by guessing. The IP is what tells credential stuffing apart anyway.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
from typing import Any, Final

from bson import ObjectId

from .models import Event, utcnow

log = logging.getLogger("hecate.audit")

# The events, as stored and as answered by GET /api/user/activity (openapi.yaml lists the same).
ACCOUNT_CREATED = "account.created"
LOGIN_SUCCEEDED = "login.succeeded"
LOGIN_FAILED = "login.failed"
REFRESH_REUSED = "refresh.reused"
PASSWORD_CHANGED = "password.changed"
PASSWORD_RESET = "password.reset"
EMAIL_CHANGE_REQUESTED = "email.change_requested"
EMAIL_CHANGE_CONFIRMED = "email.change_confirmed"
SESSION_LOGOUT = "session.logout"
SESSION_REVOKED = "session.revoked"
SESSIONS_INVALIDATED = "sessions.invalidated"
ACCOUNT_DELETED = "account.deleted"
RATE_LIMIT_HIT = "rate_limit.hit"
OPERATOR_ACCOUNT_DISABLED = "operator.account_disabled"
OPERATOR_ACCOUNT_ENABLED = "operator.account_enabled"
OPERATOR_SESSIONS_ENDED = "operator.sessions_ended"
OPERATOR_ALL_SESSIONS_ENDED = "operator.all_sessions_ended"
OPERATOR_USER_SHOWN = "operator.user_shown"

EVENTS: Final = frozenset({
    ACCOUNT_CREATED, LOGIN_SUCCEEDED, LOGIN_FAILED, REFRESH_REUSED, PASSWORD_CHANGED,
    PASSWORD_RESET, EMAIL_CHANGE_REQUESTED, EMAIL_CHANGE_CONFIRMED, SESSION_LOGOUT,
    SESSION_REVOKED, SESSIONS_INVALIDATED, ACCOUNT_DELETED, RATE_LIMIT_HIT,
    OPERATOR_ACCOUNT_DISABLED, OPERATOR_ACCOUNT_ENABLED, OPERATOR_SESSIONS_ENDED,
    OPERATOR_ALL_SESSIONS_ENDED, OPERATOR_USER_SHOWN,
})

DEFAULT_RETENTION = 90 * 86400
USER_AGENT_MAX = 256
DETAIL_MAX = 128
# Detail names that could carry a secret are refused whatever their value: a careless call site
# must not put a token into the trail.
_SECRET_NAMES = re.compile(r"pass|token|hash|secret|jti|cookie|key|email", re.IGNORECASE)


class _FromRequest:
    def __repr__(self) -> str:
        return "FROM_REQUEST"


FROM_REQUEST: Final = _FromRequest()

_retention = DEFAULT_RETENTION
_client: contextvars.ContextVar[tuple[str | None, str | None] | None] = contextvars.ContextVar(
    "hecate_audit_client", default=None)


def configure(retention_seconds: int) -> None:
    """AUDIT_RETENTION, set by create_app and the operator CLI."""
    global _retention
    _retention = retention_seconds


def bind(ip: str | None, user_agent: str | None) -> None:
    """The client of the request being served (set at its start, cleared at its end)."""
    _client.set((ip, user_agent))


def unbind() -> None:
    _client.set(None)


def _user_id(value: object) -> ObjectId | None:
    if value is None or isinstance(value, ObjectId):
        return value
    return ObjectId(str(value)) if ObjectId.is_valid(str(value)) else None


def _details(details: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in details.items():
        if _SECRET_NAMES.search(name):
            log.error("audit detail refused: its name suggests a secret", extra={"detail": name})
            continue
        if isinstance(value, str):
            value = value[:DETAIL_MAX]
        elif not isinstance(value, (bool, int, float)) and value is not None:
            value = str(value)[:DETAIL_MAX]
        clean[name] = value
    return clean


def record(event: str, *, user_id: object = None, session_id: str | None = None,
           ip: str | None | _FromRequest = FROM_REQUEST,
           user_agent: str | None | _FromRequest = FROM_REQUEST, **details: Any) -> None:
    """Store and log one security event; never raises. ``ip`` and ``user_agent`` default to the
    current request's; pass None to leave them out. ``details`` are short facts (a reason, a
    count), never secrets."""
    try:
        client = _client.get() or (None, None)
        ip_value = client[0] if isinstance(ip, _FromRequest) else ip
        agent = client[1] if isinstance(user_agent, _FromRequest) else user_agent
        agent = (agent or "")[:USER_AGENT_MAX] or None
        now = utcnow()
        owner = _user_id(user_id)
        facts = _details(details)
        log.info(event, extra={"audit": True, "user_id": str(owner) if owner else None,
                               "session_id": session_id, "ip": ip_value, "user_agent": agent,
                               "details": facts})
        if event not in EVENTS:
            log.error("unknown audit event", extra={"audit_event": event})
        Event(time=now, event=event, user_id=owner, session_id=session_id, ip=ip_value,
              user_agent=agent, details=facts,
              expires_at=now + dt.timedelta(seconds=_retention)).save(force_insert=True)
    except Exception as error:  # noqa: BLE001 - the trail must never fail the request
        log.warning("audit event not stored", extra={"audit_event": event,
                                                     "error": type(error).__name__})


def recent(user_id: ObjectId, limit: int) -> list[Event]:
    """The user's newest events first: one query, filtered by the owner."""
    return list(Event.objects(user_id=user_id).order_by("-time", "-id").limit(limit))


def forget(user_id: ObjectId) -> int:
    """Delete every event of a user (account deletion)."""
    return int(Event.objects(user_id=user_id).delete())
