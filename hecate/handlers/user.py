"""user tag: register, who-am-I, password change, delete."""

from __future__ import annotations

from typing import Any

import flask

from ..core import users
from ..core.tokens import AccessClaims
from .cookies import services, signed_in, signed_out, user_agent


def register(body: dict[str, Any]) -> flask.Response:
    user = users.register(body["username"], body["email"], body["password"])
    grant = services().sessions.create(user.id, remember=False, user_agent=user_agent())
    return signed_in({"message": "Account created.", "user": user.public()}, 201, user, grant)


def me(token_info: dict[str, Any]) -> flask.Response:
    user = users.get(token_info["access"].user_id)
    return flask.jsonify({"user": user.public()})


def change_password(token_info: dict[str, Any], body: dict[str, Any]) -> flask.Response:
    claims: AccessClaims = token_info["access"]
    user = users.get(claims.user_id)
    users.change_password(user, body["oldPassword"], body["newPassword"])
    sessions = services().sessions
    sessions.end_all(user.id, keep=claims.session_id)
    grant = sessions.renew(user.id, claims.session_id, user_agent=user_agent())
    return signed_in({"message": "Password changed."}, 200, user, grant)


def delete(token_info: dict[str, Any], body: dict[str, Any]) -> flask.Response:
    user = users.get(token_info["access"].user_id)
    users.check_password(user, body["password"])
    users.delete(user.id)
    services().sessions.end_all(user.id)
    return signed_out({"message": "Account deleted."})
