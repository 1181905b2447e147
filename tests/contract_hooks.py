"""Schemathesis extensions for tests/test_contract.py.

`st run` loads this file as its hooks (SCHEMATHESIS_HOOKS), in the Schemathesis process: only then
are the auth provider and the check registered (see the end of the file). The stateful test
imports `declared_400` from here and passes it to its state machine directly.

Auth: operations that declare a cookie security scheme get real `access` / `refresh` cookies of a
user registered through the service itself. Schemathesis caches them for the run and, when an
answer is 401 (the fuzzer ended the session: logout, invalidate, a reused refresh token), calls
`get` again and replays the request once; `get` then registers a fresh user. Cookies set through
this mechanism (not a static Cookie header) let the ignored_auth check remove or spoil them and
expect 401.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import schemathesis
from schemathesis.core import NOT_SET

# openapi.yaml's security scheme names -> the cookie each one reads.
SCHEME_COOKIES = {"accessCookie": "access", "refreshCookie": "refresh"}

# Long, random, not a common password, not the email or username: passes the password policy.
PASSWORD = "contract-" + secrets.token_urlsafe(18)


def cookie_names(operation: Any) -> list[str]:
    """The cookies the operation's security requirements name (none for public operations)."""
    requirements = operation.definition.raw.get("security") or []
    return [SCHEME_COOKIES[name] for requirement in requirements for name in requirement
            if name in SCHEME_COOKIES]


class HecateCookies:
    def get(self, case: Any, ctx: Any) -> dict[str, str]:
        base = ctx.operation.schema.get_base_url()  # http://127.0.0.1:PORT/api
        name = "contract" + secrets.token_hex(8)
        response = httpx.post(f"{base}/user/register", timeout=30, json={
            "username": name, "email": f"{name}@example.com", "password": PASSWORD})
        if response.status_code != 201:
            raise RuntimeError(f"registering the fuzzing user: {response.status_code} "
                               f"{response.text}")
        cookies = {cookie.name: cookie.value or "" for cookie in response.cookies.jar}
        missing = {"access", "refresh"} - cookies.keys()
        if missing:
            raise RuntimeError(f"registration set no {sorted(missing)} cookie")
        return cookies

    def set(self, case: Any, data: dict[str, str], ctx: Any) -> None:
        case.cookies = dict(case.cookies or {})
        for name in cookie_names(ctx.operation):
            case.cookies[name] = data[name]
        if case.method.upper() == "DELETE" and case.body is NOT_SET:
            # As SPAs do (the CSRF check requires it): a bodiless DELETE is sent as JSON, so the
            # fuzzer gets past the 415 to the operation itself.
            case.headers = {**(case.headers or {}), "Content-Type": "application/json"}


# The 400s a schema cannot rule out, by operationId: the new password is among the common ones or
# equals the email or username (weak_password); the new email is the current one
# (email_unchanged). test_contract.py's config lets positive data acceptance take a 400 for these
# operations; this check makes sure such a 400 is one of these and never validation_failed or
# malformed_request, which would mean the service rejects what its own schema allows.
SEMANTIC_400 = {
    "hecate.handlers.user.register": {"weak_password"},
    "hecate.handlers.user.change_password": {"weak_password"},
    "hecate.handlers.user.reset_password": {"weak_password"},
    "hecate.handlers.user.change_email": {"email_unchanged"},
}


def declared_400(ctx: Any, response: Any, case: Any) -> bool | None:
    allowed = SEMANTIC_400.get(case.operation.definition.raw.get("operationId"))
    meta = case.meta
    if (allowed is None or response.status_code != 400 or meta is None
            or not meta.generation.mode.is_positive):
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    if code not in allowed:
        raise AssertionError(
            f"Schema-valid request rejected with 400 {code!r}: for "
            f"{case.operation.label} only {sorted(allowed)} may reject valid data")
    return None


if __name__ == "_schemathesis_hooks":  # the module name Schemathesis loads a hooks file under
    schemathesis.auth().apply_to(lambda ctx: bool(cookie_names(ctx.operation)))(HecateCookies)
    schemathesis.check(declared_400)
