"""auth tag: login, refresh, logout, invalidate, device sessions."""

from __future__ import annotations

import logging
from typing import Any

from ..core import audit, devices, magic_link, users
from ..core.errors import Problem
from ..core.models import Session, User, iso_utc
from ..core.sessions import object_id
from ..core.tokens import AccessClaims, RefreshClaims
from . import client, web
from .cookies import (
    DEVICE,
    REFRESH,
    read_cookie,
    set_device_cookie,
    signed_in,
    signed_out,
    user_agent,
)
from .user import mail_quietly
from .web import Response, services

log = logging.getLogger("hecate.auth")


def login(body: dict[str, Any]) -> Response:
    found = users.find_by_email(body["email"])
    device = devices.recognise(found, read_cookie(DEVICE))
    attempt = client.limits().login(client.ip(), body["email"], device)
    try:
        user = users.authenticate(found, body["password"])
    except Problem as problem:
        # An unknown address is not stored, not even hashed (see core/audit.py).
        audit.record(audit.LOGIN_FAILED, user_id=found.id if found else None,
                     reason="wrong_password" if found else "unknown_account")
        raise attempt.failed(problem) from None
    attempt.succeeded()
    _may_sign_in(user, "password",
                 verified_required=services().settings.login_requires_verified_email)
    grant = services().sessions.create(
        user.id, remember=bool(body.get("rememberMe")), user_agent=user_agent()
    )
    audit.record(audit.LOGIN_SUCCEEDED, user_id=user.id, session_id=grant.session_id,
                 method="password")
    response = signed_in({"message": "Signed in.", "user": user.public()}, 200, user, grant)
    if device is None:
        set_device_cookie(response, devices.remember(user))
    return response


def _may_sign_in(user: User, method: str, *, verified_required: bool = False) -> None:
    """The refusals that come after the password or link proved who is asking."""
    try:
        users.ensure_enabled(user)
        if verified_required and not user.verified:
            raise Problem("email_not_verified", "Confirm your email address first: follow the "
                          "link we sent, or ask for a new one.")
    except Problem as problem:
        audit.record(audit.LOGIN_FAILED, user_id=user.id, reason=problem.code, method=method)
        raise


def request_magic_login(body: dict[str, Any]) -> Response:
    return mail_quietly(magic_link.request, body["email"])


def magic_login(body: dict[str, Any]) -> Response:
    user = magic_link.login(body["token"])
    _may_sign_in(user, "magic_link")
    grant = services().sessions.create(
        user.id, remember=bool(body.get("rememberMe")), user_agent=user_agent()
    )
    audit.record(audit.LOGIN_SUCCEEDED, user_id=user.id, session_id=grant.session_id,
                 method="magic_link")
    return signed_in({"message": "Signed in.", "user": user.public()}, 200, user, grant)


def refresh(token_info: dict[str, Any], body: dict[str, Any] | None = None) -> Response:
    claims: RefreshClaims = token_info["refresh"]
    client.limits().refresh(claims.session_id)
    sessions = services().sessions
    # The user is read before the rotation, so that the rotation is the last database call: a
    # refresh that fails (database lost: 503) has then not rotated, and the cookie the client
    # still holds stays the session's current one.
    user = users.get(claims.user_id)
    if user.disabled:
        # A sign-in that raced `hecate user disable` got a session: it ends here.
        sessions.end_all(user.id)
        raise Problem("session_ended", "This session has ended; please sign in again.")
    if claims.jti is None:
        grant = sessions.adopt_legacy(claims, user_agent=user_agent())
    else:
        grant = sessions.rotate(claims)
    return signed_in({"message": "Session refreshed.", "user": user.public()}, 200, user, grant)


def logout(body: dict[str, Any] | None = None, **_: Any) -> Response:
    token = read_cookie(REFRESH)
    if token:
        try:
            claims = services().tokens.verify_refresh(token)
            services().sessions.end(claims)
        except Problem:
            pass  # expired, tampered or already ended: logging out is still a success
        else:
            audit.record(audit.SESSION_LOGOUT, user_id=claims.user_id,
                         session_id=claims.session_id)
    return signed_out({"message": "Signed out."})


def invalidate(token_info: dict[str, Any], body: dict[str, Any] | None = None) -> Response:
    claims: RefreshClaims = token_info["refresh"]
    sessions = services().sessions
    sessions.check(claims)
    user = users.get(claims.user_id)
    ended = sessions.end_all(user.id)
    log.info("all sessions ended", extra={"user_id": str(user.id), "count": ended})
    audit.record(audit.SESSIONS_INVALIDATED, user_id=user.id, session_id=claims.session_id,
                 sessions_ended=ended)
    return signed_out({"message": "Signed out of all devices."})


def _device(session: Session, current: str | None) -> dict[str, Any]:
    return {
        "id": session.id,
        "created": iso_utc(session.created_at),
        "lastUsed": iso_utc(session.last_used_at or session.created_at),
        "userAgent": session.user_agent or "",
        "remember": bool(session.remember),
        "current": session.id == current,
    }


def list_sessions(token_info: dict[str, Any]) -> Response:
    claims: AccessClaims = token_info["access"]
    found = services().sessions.list_for(object_id(claims.user_id))
    return web.json({"sessions": [_device(s, claims.session_id) for s in found]})


def end_session(token_info: dict[str, Any], id: str) -> Response:
    claims: AccessClaims = token_info["access"]
    if not services().sessions.end_one(object_id(claims.user_id), id):
        # The same answer for another user's session and an unknown one: ids cannot be probed.
        raise Problem("not_found", "You have no session with this id.")
    log.info("session ended", extra={"user_id": claims.user_id, "session_id": id})
    audit.record(audit.SESSION_REVOKED, user_id=claims.user_id, session_id=id,
                 current=id == claims.session_id)
    if id == claims.session_id:
        # Ending this very session is signing out: its cookies go too.
        return signed_out({"message": "Signed out."})
    return web.json({"message": "Session ended."})
