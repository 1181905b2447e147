"""user tag: register, who-am-I, email verification and change, password change and reset,
delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask

from ..core import email_change, links, recover, users, verify
from ..core.errors import Problem
from ..core.models import User
from ..core.outbox import Outbox, padded
from ..core.tokens import AccessClaims
from . import client
from .cookies import services, signed_in, signed_out, user_agent

ACCEPTED = "If an account exists for this address, an email is on its way."


def _message(text: str, status: int = 200) -> flask.Response:
    return flask.make_response(flask.jsonify({"message": text}), status)


def mail_quietly(flow: Callable[[Outbox, str], None], email: str) -> flask.Response:
    """The endpoints that must not reveal whether an account exists: rate limited per address and
    IP, the same 202 whatever happened, answered no sooner than MAIL_RESPONSE_MIN_MS."""
    client.limits().mail_request(client.ip(), email)
    hecate = services()
    with padded(hecate.settings.mail_response_min_ms):
        flow(hecate.outbox, email)
    return _message(ACCEPTED, 202)


def register(body: dict[str, Any]) -> flask.Response:
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
        return _created_signed_out(settings.login_requires_verified_email, user)
    grant = hecate.sessions.create(user.id, remember=False, user_agent=user_agent())
    return signed_in({"message": "Account created.", "user": user.public()}, 201, user, grant)


def _created_signed_out(needs_verified_email: bool, user: User) -> flask.Response:
    # Enumeration-safe registration never signs in: cookies would tell a new account from a
    # taken address, which gets the same answer with an unsaved look-alike user.
    text = ("Account created. Confirm your email address to sign in." if needs_verified_email
            else "Account created. Please sign in.")
    return flask.make_response(flask.jsonify({"message": text, "user": user.public()}), 201)


def me(token_info: dict[str, Any]) -> flask.Response:
    user = users.get(token_info["access"].user_id)
    return flask.jsonify({"user": user.public()})


def verify_email(body: dict[str, Any]) -> flask.Response:
    user = verify.confirm(body["token"])
    return flask.jsonify({"message": "Email address confirmed.", "user": user.public()})


def resend_verification(body: dict[str, Any]) -> flask.Response:
    return mail_quietly(verify.resend, body["email"])


def request_password_reset(body: dict[str, Any]) -> flask.Response:
    return mail_quietly(recover.request, body["email"])


def reset_password(body: dict[str, Any]) -> flask.Response:
    hecate = services()
    recover.reset(hecate.outbox, hecate.sessions, body["token"], body["newPassword"])
    return _message("Password changed. Please sign in with your new password.")


def change_email(token_info: dict[str, Any], body: dict[str, Any]) -> flask.Response:
    user = users.get(token_info["access"].user_id)
    email_change.request(services().outbox, user, body["email"], body["password"])
    return _message("Check your new address for a confirmation link; until you confirm, "
                    "your address stays as it is.")


def cancel_email_change(body: dict[str, Any]) -> flask.Response:
    email_change.cancel(body["token"])
    return _message("The email change was cancelled.")


def change_password(token_info: dict[str, Any], body: dict[str, Any]) -> flask.Response:
    hecate = services()
    claims: AccessClaims = token_info["access"]
    user = users.get(claims.user_id)
    users.change_password(user, body["oldPassword"], body["newPassword"],
                          min_length=hecate.settings.password_min_length)
    hecate.sessions.end_all(user.id, keep=claims.session_id)
    links.revoke(user.id, links.RESET, links.MAGIC)
    grant = hecate.sessions.renew(user.id, claims.session_id, user_agent=user_agent())
    hecate.outbox.try_send("password_changed", user.email, username=user.username)
    return signed_in({"message": "Password changed."}, 200, user, grant)


def delete(token_info: dict[str, Any], body: dict[str, Any]) -> flask.Response:
    hecate = services()
    user = users.get(token_info["access"].user_id)
    users.check_password(user, body["password"])
    users.delete(user.id)
    hecate.sessions.end_all(user.id)
    links.revoke(user.id)
    hecate.outbox.try_send("account_deleted", user.email, username=user.username)
    return signed_out({"message": "Account deleted."})
