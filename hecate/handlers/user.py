"""user tag: register, who-am-I, recent activity, email verification and change, password change
and reset, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import audit, email_change, links, recover, users, verify
from ..core.errors import Problem
from ..core.models import User, iso_utc
from ..core.outbox import Outbox, padded
from ..core.tokens import AccessClaims
from . import client, web
from .cookies import signed_in, signed_out, user_agent
from .web import Response, services

ACCEPTED = "If an account exists for this address, an email is on its way."


def _message(text: str, status: int = 200) -> Response:
    return web.json({"message": text}, status)


def mail_quietly(flow: Callable[[Outbox, str], None], email: str) -> Response:
    """The endpoints that must not reveal whether an account exists: rate limited per address and
    IP, the same 202 whatever happened, answered no sooner than MAIL_RESPONSE_MIN_MS."""
    client.limits().mail_request(client.ip(), email)
    hecate = services()
    with padded(hecate.settings.mail_response_min_ms):
        flow(hecate.outbox, email)
    return _message(ACCEPTED, 202)


def register(body: dict[str, Any]) -> Response:
    client.limits().registration(client.ip())
    hecate = services()
    settings = hecate.settings
    try:
        user = users.register(body["username"], body["email"], body["password"],
                              min_length=settings.password_min_length)
    except Problem as problem:
        if problem.code != "email_taken" or not settings.registration_enumeration_safe:
            raise
        user = users.already_registered(hecate.outbox, body["username"], body["email"])
        return _created_signed_out(settings.login_requires_verified_email, user)
    if settings.email_verification_required:
        try:
            verify.send_link(hecate.outbox, user, strict=True)
        except Problem:
            users.delete(user.id)  # nothing half-written: the user registers again later
            raise
    if settings.login_requires_verified_email or settings.registration_enumeration_safe:
        audit.record(audit.ACCOUNT_CREATED, user_id=user.id)
        return _created_signed_out(settings.login_requires_verified_email, user)
    grant = hecate.sessions.create(user.id, remember=False, user_agent=user_agent())
    audit.record(audit.ACCOUNT_CREATED, user_id=user.id, session_id=grant.session_id)
    return signed_in({"message": "Account created.", "user": user.public()}, 201, user, grant)


def _created_signed_out(needs_verified_email: bool, user: User) -> Response:
    # Enumeration-safe registration never signs in: cookies would tell a new account from a
    # taken address, which gets the same answer with an unsaved look-alike user.
    text = ("Account created. Confirm your email address to sign in." if needs_verified_email
            else "Account created. Please sign in.")
    return web.json({"message": text, "user": user.public()}, 201)


def me(token_info: dict[str, Any]) -> Response:
    user = users.get(token_info["access"].user_id)
    return web.json({"user": user.public()})


def verify_email(body: dict[str, Any]) -> Response:
    user = verify.confirm(body["token"])
    return web.json({"message": "Email address confirmed.", "user": user.public()})


def resend_verification(body: dict[str, Any]) -> Response:
    return mail_quietly(verify.resend, body["email"])


def request_password_reset(body: dict[str, Any]) -> Response:
    return mail_quietly(recover.request, body["email"])


def reset_password(body: dict[str, Any]) -> Response:
    hecate = services()
    user = recover.reset(hecate.outbox, hecate.sessions, body["token"], body["newPassword"])
    audit.record(audit.PASSWORD_RESET, user_id=user.id)
    return _message("Password changed. Please sign in with your new password.")


def change_email(token_info: dict[str, Any], body: dict[str, Any]) -> Response:
    claims: AccessClaims = token_info["access"]
    user = users.get(claims.user_id)
    users.ensure_enabled(user)
    email_change.request(services().outbox, user, body["email"], body["password"])
    audit.record(audit.EMAIL_CHANGE_REQUESTED, user_id=user.id, session_id=claims.session_id)
    return _message("Check your new address for a confirmation link; until you confirm, "
                    "your address stays as it is.")


def cancel_email_change(body: dict[str, Any]) -> Response:
    email_change.cancel(body["token"])
    return _message("The email change was cancelled.")


def change_password(token_info: dict[str, Any], body: dict[str, Any]) -> Response:
    hecate = services()
    claims: AccessClaims = token_info["access"]
    user = users.get(claims.user_id)
    users.ensure_enabled(user)  # else it would hand a disabled account a new session
    users.change_password(user, body["oldPassword"], body["newPassword"],
                          min_length=hecate.settings.password_min_length)
    ended = hecate.sessions.end_all(user.id, keep=claims.session_id)
    links.revoke(user.id, links.RESET, links.MAGIC)
    grant = hecate.sessions.renew(user.id, claims.session_id, user_agent=user_agent())
    audit.record(audit.PASSWORD_CHANGED, user_id=user.id, session_id=grant.session_id,
                 sessions_ended=ended)
    hecate.outbox.try_send("password_changed", user.email, username=user.username)
    return signed_in({"message": "Password changed."}, 200, user, grant)


def delete(token_info: dict[str, Any], body: dict[str, Any]) -> Response:
    hecate = services()
    user = users.get(token_info["access"].user_id)
    users.ensure_enabled(user)  # a disabled account is kept as it is for the operator
    users.check_password(user, body["password"])
    users.delete(user.id)
    hecate.sessions.end_all(user.id)
    links.revoke(user.id)
    # Its trail goes with it; what is kept is that an account with this id was deleted, when
    # (no IP, no user agent, no email), until AUDIT_RETENTION expires it.
    audit.forget(user.id)
    audit.record(audit.ACCOUNT_DELETED, user_id=user.id, ip=None, user_agent=None)
    hecate.outbox.try_send("account_deleted", user.email, username=user.username)
    return signed_out({"message": "Account deleted."})


def activity(token_info: dict[str, Any], limit: int = 20) -> Response:
    """The caller's recent security events, newest first (an SPA's "recent sign-ins")."""
    claims: AccessClaims = token_info["access"]
    user = users.get(claims.user_id)  # a deleted account: 401, as for GET /user
    events = audit.recent(user.id, limit)
    return web.json({"events": [{
        "event": event.event,
        "time": iso_utc(event.time),
        "ip": event.ip,
        "userAgent": event.user_agent or "",
        "sessionId": event.session_id,
        "current": event.session_id is not None and event.session_id == claims.session_id,
    } for event in events]})
