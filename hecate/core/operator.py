"""What an operator does during an incident (`hecate user ...`, `hecate sessions end ...`): disable
and re-enable an account, end sessions, look at an account. Each action is an audit event."""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass
from typing import Any

from . import audit, links
from .models import Event, Session, User, iso_utc
from .sessions import Sessions
from .users import find_by_email


class UnknownAccount(LookupError):
    """No account has this email address."""


def _operator() -> str:
    # Who ran the command, for the trail; containers may have no name for their user.
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _record(event: str, user_id: object = None, **details: Any) -> None:
    audit.record(event, user_id=user_id, ip=None, user_agent=None, operator=_operator(),
                 **details)


def _user(email: str) -> User:
    user = find_by_email(email)
    if user is None:
        raise UnknownAccount(email)
    return user


def disable(sessions: Sessions, email: str) -> tuple[User, int]:
    """Mark the account disabled, then end its sessions and revoke its pending links (reset,
    magic login, email change: any of them could be in the wrong hands). Disabled first, so a
    sign-in racing this command cannot get a session that outlives it (refresh re-checks)."""
    user = _user(email)
    User.objects(id=user.id).update_one(set__disabled=True)
    ended = sessions.end_all(user.id)
    links.revoke(user.id)
    _record(audit.OPERATOR_ACCOUNT_DISABLED, user.id, sessions_ended=ended)
    return user, ended


def enable(email: str) -> User:
    user = _user(email)
    User.objects(id=user.id).update_one(set__disabled=False)
    _record(audit.OPERATOR_ACCOUNT_ENABLED, user.id)
    return user


def end_sessions(sessions: Sessions, email: str) -> tuple[User, int]:
    user = _user(email)
    ended = sessions.end_all(user.id)
    _record(audit.OPERATOR_SESSIONS_ENDED, user.id, sessions_ended=ended)
    return user, ended


def end_all_sessions() -> int:
    """Every session of every user, Node-era ones included (after a key leak, with the secret
    rotated first)."""
    ended = int(Session.objects().delete())
    User._get_collection().update_many({"sessions": {"$exists": True, "$ne": []}},
                                       {"$set": {"sessions": []}})
    _record(audit.OPERATOR_ALL_SESSIONS_ENDED, sessions_ended=ended)
    return ended


@dataclass
class Overview:
    user: User
    sessions: list[Session]
    events: list[Event]


def show(sessions: Sessions, email: str, *, limit: int = 20) -> Overview:
    user = _user(email)
    _record(audit.OPERATOR_USER_SHOWN, user.id)
    return Overview(user, sessions.list_for(user.id), audit.recent(user.id, limit))


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def overview_json(overview: Overview) -> dict[str, Any]:
    """What `hecate user show` prints: no hash, no token, no jti."""
    user = overview.user
    return {
        "user": {**user.public(), "disabled": bool(user.disabled),
                 "created": _iso(user.created_at)},
        "sessions": [{"id": s.id, "created": _iso(s.created_at),
                      "lastUsed": _iso(s.last_used_at or s.created_at),
                      "userAgent": s.user_agent or "", "remember": bool(s.remember)}
                     for s in overview.sessions],
        "events": [{"time": _iso(e.time), "event": e.event, "sessionId": e.session_id,
                    "ip": e.ip, "userAgent": e.user_agent or "", "details": dict(e.details or {})}
                   for e in overview.events],
    }
