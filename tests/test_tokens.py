"""The two auth cookies and the JWTs inside them: cookie attributes, token claims, forged and
broken tokens, lenient Cookie header parsing, and property tests of the token verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    PASSWORD,
    TEST_SECRET,
    Client,
    Service,
    login,
    parse_set_cookie,
    register,
)
from hecate.core.errors import Problem
from hecate.core.settings import Settings
from hecate.core.tokens import TokenService
from hecate.verify import parse_cookie_header

OTHER_SECRET = "another-secret-" + "y" * 40
ACCESS_TTL = 900
REFRESH_TTL = 3600
REMEMBER_TTL = 7 * 86400
SLACK = 3  # seconds between the server computing Max-Age/exp and the test looking at it


# --- helpers -------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def unb64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def hs256(header: Any, payload: Any, secret: str = TEST_SECRET,
          digest: Any = hashlib.sha256) -> str:
    """A token signed by hand, so any header or payload (even ones PyJWT refuses to encode) can
    be made."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def hs512(claims: dict[str, Any]) -> str:
    return hs256({"alg": "HS512", "typ": "JWT"}, claims, digest=hashlib.sha512)


def mint(claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def unsigned(claims: dict[str, Any]) -> str:
    return f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}."


def tampered(token: str, **changes: Any) -> str:
    """The token with some claims changed and its original signature kept."""
    header, payload, signature = token.split(".")
    claims = unb64url_json(payload)
    claims.update(changes)
    return f"{header}.{b64url_json(claims)}.{signature}"


def decode(token: str | None) -> dict[str, Any]:
    assert token, "no token"
    claims: dict[str, Any] = jwt.decode(token, TEST_SECRET, algorithms=["HS256"],
                                        issuer="hecate", options={"verify_aud": False})
    return claims


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for raw in response.headers.get_list("set-cookie"):
        attrs = parse_set_cookie(raw)
        assert attrs["name"] not in found, f"{attrs['name']} is set twice: {raw}"
        found[attrs["name"]] = attrs
    return found


def problem_code(response: httpx.Response, status: int = 401) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == status
    code: str = body["code"]
    return code


def assert_auth_cookies(response: httpx.Response, *, samesite: str = "None",
                        refresh_path: str = "/api/auth", refresh_ttl: int = REFRESH_TTL,
                        domain: str | None = None) -> None:
    cookies = set_cookies(response)
    device = cookies.pop("device", None)  # login also marks the browser (rate limiting only)
    if device is not None:
        assert "httponly" in device and "secure" in device and device["path"] == refresh_path
    assert set(cookies) == {"access", "refresh"}, response.headers.get_list("set-cookie")
    for name, attrs in cookies.items():
        assert attrs["value"], f"{name} is empty"
        assert "httponly" in attrs, f"{name} is readable by scripts: {attrs}"
        assert "secure" in attrs, f"{name} is not Secure: {attrs}"
        assert attrs.get("samesite") == samesite, f"{name}: {attrs}"
        assert (attrs.get("domain") or "").lstrip(".") == (domain or ""), f"{name}: {attrs}"
    access, refresh = cookies["access"], cookies["refresh"]
    assert access["path"] == "/"
    assert access["max-age"] == str(ACCESS_TTL)
    assert refresh["path"] == refresh_path
    assert refresh_ttl - SLACK <= int(refresh["max-age"]) <= refresh_ttl


def assert_cleared(response: httpx.Response, *, refresh_path: str = "/api/auth",
                   domain: str | None = None) -> None:
    cookies = set_cookies(response)
    assert set(cookies) == {"access", "refresh"}, response.headers.get_list("set-cookie")
    assert cookies["access"]["path"] == "/"
    assert cookies["refresh"]["path"] == refresh_path
    for name, attrs in cookies.items():
        assert attrs["max-age"] == "0", f"{name} is not cleared: {attrs}"
        assert attrs["value"] in {"", '""'}, f"{name} still carries a token"
        assert "secure" in attrs and "httponly" in attrs, f"{name}: {attrs}"
        assert (attrs.get("domain") or "").lstrip(".") == (domain or ""), f"{name}: {attrs}"


def me(client: Client, token: str) -> httpx.Response:
    return client.get("/api/user", headers={"Cookie": f"access={token}"})


def refresh_with(client: Client, token: str, path: str = "/api/auth/refresh") -> httpx.Response:
    return client.post(path, headers={"Cookie": f"refresh={token}"})


# --- cookie attributes ---------------------------------------------------------------------------


def test_register_login_and_refresh_set_httponly_secure_samesite_none_cookies(
    client: Client,
) -> None:
    assert_auth_cookies(register(client))
    signed_in = login(client)
    assert signed_in.status_code == 200, signed_in.text
    assert_auth_cookies(signed_in)
    refreshed = client.post("/api/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert_auth_cookies(refreshed)


def test_remember_me_keeps_the_refresh_cookie_for_seven_days(registered: Client) -> None:
    remembered = login(registered, remember=True)
    assert remembered.status_code == 200, remembered.text
    assert_auth_cookies(remembered, refresh_ttl=REMEMBER_TTL)
    assert decode(registered.cookie("refresh"))["exp"] >= time.time() + REMEMBER_TTL - SLACK

    refreshed = registered.post("/api/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert_auth_cookies(refreshed, refresh_ttl=REMEMBER_TTL)


def test_cookie_samesite_lax(start_service: Callable[..., Service]) -> None:
    client = start_service(COOKIE_SAMESITE="Lax").client()
    assert_auth_cookies(register(client), samesite="Lax")
    assert_auth_cookies(login(client), samesite="Lax")


def test_cookie_domain_is_set_on_sign_in_and_on_logout(
    start_service: Callable[..., Service],
) -> None:
    client = start_service(COOKIE_DOMAIN="example.com").client()
    assert_auth_cookies(register(client), domain="example.com")
    # A cookie set with a Domain is only removed by a Set-Cookie with the same Domain.
    assert_cleared(client.post("/api/auth/logout"), domain="example.com")


def test_public_base_path_moves_the_routes_and_the_refresh_cookie(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(PUBLIC_BASE_PATH="/prod")
    client = service.client()
    assert service.settings.api_path == "/prod/api"

    response = client.post("/prod/api/user/register", json={
        "username": "alice1", "email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 201, response.text
    assert_auth_cookies(response, refresh_path="/prod/api/auth")
    assert problem_code(client.post("/api/user/register", json={
        "username": "bobby1", "email": "bob@example.com", "password": PASSWORD}), 404) \
        == "not_found"

    assert client.get("/prod/api/user").status_code == 200
    # The browser sends the refresh cookie to the moved refresh endpoint.
    refreshed = client.post("/prod/api/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert_auth_cookies(refreshed, refresh_path="/prod/api/auth")

    assert_cleared(client.post("/prod/api/auth/logout"), refresh_path="/prod/api/auth")


def test_logout_clears_both_cookies_on_their_paths_and_ends_the_session(
    registered: Client,
) -> None:
    old_refresh = registered.cookie("refresh")
    assert old_refresh
    response = registered.post("/api/auth/logout")
    assert response.status_code == 200, response.text
    assert_cleared(response)
    assert registered.cookie("access") is None and registered.cookie("refresh") is None
    assert problem_code(registered.get("/api/user")) == "authentication_required"
    # The refresh token the browser had is worthless now.
    assert refresh_with(registered, old_refresh).status_code == 401


# --- claims --------------------------------------------------------------------------------------


def test_access_token_claims(registered: Client, mongo: Any) -> None:
    user_id = registered.get("/api/user").json()["user"]["id"]
    claims = decode(registered.cookie("access"))
    assert claims["id"] == claims["sub"] == user_id
    assert claims["type"] == "access"
    assert claims["iss"] == "hecate"
    assert isinstance(claims["iat"], int) and abs(claims["iat"] - time.time()) <= SLACK
    assert claims["exp"] - claims["iat"] == ACCESS_TTL
    assert isinstance(claims["jti"], str) and claims["jti"]
    session = mongo.sessions.find_one({"_id": claims["sid"]})
    assert session is not None, "sid names the sign-in's session"
    assert str(session["userId"]) == user_id

    # Every token is its own: a refresh hands out a new access token with a new jti, same session.
    assert registered.post("/api/auth/refresh").status_code == 200
    again = decode(registered.cookie("access"))
    assert again["jti"] != claims["jti"]
    assert again["sid"] == claims["sid"]


def test_refresh_token_claims(registered: Client, mongo: Any) -> None:
    user_id = registered.get("/api/user").json()["user"]["id"]
    access = decode(registered.cookie("access"))
    claims = decode(registered.cookie("refresh"))
    assert claims["type"] == "refresh"
    assert claims["id"] == user_id
    assert claims["session"] == access["sid"]
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert REFRESH_TTL - SLACK <= claims["exp"] - time.time() <= REFRESH_TTL
    session = mongo.sessions.find_one({"_id": claims["session"]})
    assert session is not None and session["jti"] == claims["jti"]

    # Rotation: the next refresh token names the same session with a new jti.
    assert registered.post("/api/auth/refresh").status_code == 200
    rotated = decode(registered.cookie("refresh"))
    assert rotated["session"] == claims["session"]
    assert rotated["jti"] != claims["jti"]


# --- attacks -------------------------------------------------------------------------------------


def _run_attacks(attacks: dict[str, str], send: Callable[[str], httpx.Response],
                 code: str | None = "invalid_token") -> None:
    failures = []
    for name, token in attacks.items():
        response = send(token)
        try:
            got = problem_code(response)
            if code is not None:
                assert got == code, got
        except AssertionError:
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_forged_and_broken_access_tokens_are_refused(registered: Client) -> None:
    real = registered.cookie("access")
    refresh = registered.cookie("refresh")
    assert real and refresh
    claims = decode(real)
    now = int(time.time())
    huge = mint({**claims, "padding": "x" * 5000})
    assert len(huge) > 4096
    attacks = {
        "refresh token as access": refresh,
        "access claims typed refresh": mint({**claims, "type": "refresh"}),
        "expired": mint({**claims, "iat": now - 2000, "exp": now - 60}),
        "tampered sub/id": tampered(real, sub=str(ObjectId()), id=str(ObjectId())),
        "tampered verified": tampered(real, verified=True),
        "other key": mint(claims, OTHER_SECRET),
        "alg none": unsigned(claims),
        "alg none with the real payload": f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}."
                                          f"{real.split('.')[1]}.",
        "wrong issuer": mint({**claims, "iss": "not-hecate"}),
        "no issuer": mint({k: v for k, v in claims.items() if k != "iss"}),
        "no expiry": mint({k: v for k, v in claims.items() if k != "exp"}),
        "huge": huge,
        "HS512 with the secret": hs512(claims),
        "garbage": "garbage",
        "three garbage segments": "a.b.c",
        "real header and signature, garbage payload":
            f"{real.split('.')[0]}.!!!.{real.split('.')[2]}",
    }
    _run_attacks(attacks, lambda token: me(registered, token))

    # The forgeries differ from an acceptable token only in what they attack.
    control = me(registered, mint(claims))
    assert control.status_code == 200, control.text
    assert control.json()["user"]["id"] == claims["sub"]


def test_forged_and_broken_refresh_tokens_are_refused(registered: Client) -> None:
    real = registered.cookie("refresh")
    access = registered.cookie("access")
    assert real and access
    claims = decode(real)
    now = int(time.time())
    huge = mint({**claims, "padding": "x" * 5000})
    assert len(huge) > 4096
    attacks = {
        "access token as refresh": access,
        "refresh claims typed access": mint({**claims, "type": "access"}),
        "expired": mint({**claims, "iat": now - 8000, "exp": now - 60}),
        "tampered expiry": tampered(real, exp=now + 365 * 86400),
        "tampered session": tampered(real, session="someone-elses-session"),
        "other key": mint(claims, OTHER_SECRET),
        "alg none": unsigned(claims),
        "wrong issuer": mint({**claims, "iss": "not-hecate"}),
        "huge": huge,
        "HS512 with the secret": hs512(claims),
        "garbage": "garbage",
        "three garbage segments": "a.b.c",
    }
    _run_attacks(attacks, lambda token: refresh_with(registered, token))

    # None of the refused tokens touched the session: a token with the real claims still works.
    control = refresh_with(registered, mint(claims))
    assert control.status_code == 200, control.text
    assert decode(registered.cookie("refresh"))["session"] == claims["session"]


def test_refresh_token_with_an_unknown_jti_for_a_real_session_is_refused(
    registered: Client,
) -> None:
    claims = decode(registered.cookie("refresh"))
    forged = mint({**claims, "jti": "not-a-jti-this-session-ever-had", "iss": "hecate"})
    response = refresh_with(registered, forged)
    problem_code(response)  # 401 problem JSON; any of the 401 codes
    assert set_cookies(response).keys().isdisjoint({"access"}), "no access token for a forgery"


def test_missing_cookie_is_authentication_required(client: Client) -> None:
    assert problem_code(client.get("/api/user")) == "authentication_required"
    assert problem_code(client.post("/api/auth/refresh")) == "authentication_required"
    # Unrelated cookies only, some of them malformed: still a clean 401, not a 500.
    junk = {"Cookie": 'a b=1; {"x":1}=2; prefs={"theme":"dark"}; =; ;;'}
    assert problem_code(client.get("/api/user", headers=junk)) == "authentication_required"
    assert problem_code(client.post("/api/auth/refresh", headers=junk)) \
        == "authentication_required"


def test_malformed_unrelated_cookies_do_not_hide_ours(registered: Client) -> None:
    access = registered.cookie("access")
    refresh = registered.cookie("refresh")
    user_id = decode(access)["sub"]
    headers = [
        f'a b=1; {{"x":1}}=2; access={access}',
        f'prefs={{"theme":"dark","n":[1,2]}}; access={access}',
        f'access={access}; a b=1; {{"x":1}}=2',
        f'novalue; =orphan; access={access}',
        f'access={access}; access=garbage',  # the first (most specific path) wins
    ]
    for cookie in headers:
        response = registered.get("/api/user", headers={"Cookie": cookie})
        assert response.status_code == 200, (cookie, response.status_code, response.text)
        assert response.json()["user"]["id"] == user_id

    response = registered.post("/api/auth/refresh",
                               headers={"Cookie": f'a b=1; {{"x":1}}=2; refresh={refresh}'})
    assert response.status_code == 200, response.text


# --- properties ----------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 6265 cookie-octet: printable ASCII but space, DQUOTE, comma, semicolon and backslash.
COOKIE_OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')

cookie_names = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=16)
cookie_values = st.text(alphabet=COOKIE_OCTETS, max_size=40)


@given(st.one_of(st.none(), st.text(), st.text(alphabet=' ;=",{}[]\\ab\t\n\x00é')))
def test_parse_cookie_header_never_raises(header: str | None) -> None:
    parsed = parse_cookie_header(header)
    assert isinstance(parsed, dict)
    for name, value in parsed.items():
        assert isinstance(name, str) and name and name == name.strip()
        assert isinstance(value, str)


@given(st.dictionaries(cookie_names, cookie_values, max_size=8))
def test_parse_cookie_header_round_trips_simple_cookies(cookies: dict[str, str]) -> None:
    header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    assert parse_cookie_header(header) == cookies


@given(st.lists(st.tuples(st.sampled_from(["access", "refresh", "a", "b"]), cookie_values),
                min_size=1, max_size=10))
def test_parse_cookie_header_first_occurrence_wins(pairs: list[tuple[str, str]]) -> None:
    expected: dict[str, str] = {}
    for name, value in pairs:
        expected.setdefault(name, value)
    header = "; ".join(f"{name}={value}" for name, value in pairs)
    assert parse_cookie_header(header) == expected


TOKENS = TokenService(Settings.from_env({"JWT_SECRET": TEST_SECRET,
                                         "APP_URL": "http://localhost:4200"}))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)


NOW = int(time.time())
USER_ID = str(ObjectId())
VALID_CLAIMS = {
    "access": {"id": USER_ID, "sub": USER_ID, "sid": "session-id", "verified": False,
               "type": "access", "iss": "hecate", "iat": NOW, "exp": NOW + 86400, "jti": "j1"},
    "refresh": {"id": USER_ID, "session": "session-id", "type": "refresh", "iss": "hecate",
                "iat": NOW, "exp": NOW + 86400, "jti": "j2"},
}
CLAIM_KEYS = sorted({*VALID_CLAIMS["access"], *VALID_CLAIMS["refresh"], "nbf", "aud"})
odd_values = st.sampled_from([
    "", None, True, 0, -1, 10**20, -(10**20), 1e300, float("inf"), float("nan"), "1e30", "inf",
    str(NOW + 86400), f" {NOW + 86400} ", "access", "refresh", "hecate", USER_ID, "not-an-id",
])


@st.composite
def near_valid_claims(draw: st.DrawFn) -> dict[str, Any]:
    """A valid access or refresh claim set with up to three claims removed or replaced."""
    claims = dict(VALID_CLAIMS[draw(st.sampled_from(["access", "refresh"]))])
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(CLAIM_KEYS))
        if draw(st.booleans()):
            claims.pop(key, None)
        else:
            claims[key] = draw(odd_values | json_values)
    return claims


valid_header = st.just({"alg": "HS256", "typ": "JWT"})
odd_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS512", "none", "RS256", "", "hs256"]) | json_values},
    optional={"typ": st.just("JWT") | json_values, "kid": json_values, "crit": json_values,
              "b64": json_values, "cty": json_values},
)
segments = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=",
                   max_size=60)
any_text = st.one_of(
    st.text(),
    st.lists(segments, min_size=1, max_size=5).map(".".join),
    st.text(min_size=4000, max_size=4200, alphabet="ab."),
    st.builds(hs256, odd_headers | valid_header, json_values),
)


def _verify_both(token: str) -> int:
    """How many of the two verifiers accepted the token; anything but a 401 Problem fails."""
    accepted = 0
    for verify in (TOKENS.verify_access, TOKENS.verify_refresh):
        try:
            verify(token)
        except Problem as problem:
            assert problem.status == 401, problem
        else:
            accepted += 1
    return accepted


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_verifying_any_text_fails_only_with_a_401_problem(token: str) -> None:
    _verify_both(token)


@settings(max_examples=300, deadline=None)
@given(st.builds(hs256, valid_header | odd_headers, near_valid_claims()))
def test_verifying_near_valid_tokens_fails_only_with_a_401_problem(token: str) -> None:
    _verify_both(token)


def test_the_near_valid_tokens_of_the_property_test_verify_unchanged() -> None:
    """Guards the property test above against testing only rejections."""
    access = TOKENS.verify_access(hs256({"alg": "HS256", "typ": "JWT"}, VALID_CLAIMS["access"]))
    assert (access.user_id, access.session_id) == (USER_ID, "session-id")
    refresh = TOKENS.verify_refresh(hs256({"alg": "HS256", "typ": "JWT"},
                                          VALID_CLAIMS["refresh"]))
    assert (refresh.user_id, refresh.session_id, refresh.jti) == (USER_ID, "session-id", "j2")
