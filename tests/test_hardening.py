"""Abuse resistance that is not rate limiting: the password policy, enumeration-safe registration,
and token hardening (key rotation with `kid`, audience, leeway, tokens from the future)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from conftest import PASSWORD, TEST_SECRET, Client, Inbox, Service, login, register
from hecate.core.policy import check_password_policy, common_passwords

NEW_SECRET = "rotated-secret-" + "n" * 40
GOOD_PASSWORD = "a brand new passphrase"


def kid(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def claims_of(token: str, secret: str = TEST_SECRET) -> dict[str, Any]:
    return jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})


def sign(claims: dict[str, Any], secret: str = TEST_SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def me(client: Client, access: str) -> httpx.Response:
    return client.get("/api/user", headers={"Cookie": f"access={access}"})


def problem(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    return str(body["detail"])


# --- token hardening -----------------------------------------------------------------------------


def test_tokens_carry_the_kid_of_the_signing_secret(registered: Client) -> None:
    for name in ("access", "refresh"):
        header = jwt.get_unverified_header(registered.cookie(name) or "")
        assert header["kid"] == kid(TEST_SECRET), name
        assert header["alg"] == "HS256"


def test_a_rotated_key_still_verifies_and_the_new_one_signs(
    start_service: Callable[..., Service]
) -> None:
    old = start_service().client()
    register(old)
    old_access, old_refresh = old.cookie("access") or "", old.cookie("refresh") or ""
    unnamed = sign(claims_of(old_access))  # no kid, like the Node original's tokens

    rotated = start_service(JWT_SECRET=f"{NEW_SECRET} {TEST_SECRET}").client()
    assert me(rotated, old_access).status_code == 200
    assert me(rotated, unnamed).status_code == 200, "without a kid every secret is tried"
    rotated.set_cookie("refresh", old_refresh, "/api/auth")
    assert rotated.post("/api/auth/refresh").status_code == 200
    new_access = rotated.cookie("access") or ""
    assert jwt.get_unverified_header(new_access)["kid"] == kid(NEW_SECRET)
    claims_of(new_access, NEW_SECRET)  # signed with the first secret
    # A known kid names the one secret to check: the old secret's kid on a token signed with
    # another key is refused, not tried against the others.
    assert me(rotated, sign(claims_of(new_access, NEW_SECRET), NEW_SECRET,
                            kid=kid(TEST_SECRET))).status_code == 401

    retired = start_service(JWT_SECRET=NEW_SECRET).client()
    for token in (old_access, unnamed):
        problem(me(retired, token), 401, "invalid_token")
    assert me(retired, new_access).status_code == 200


def test_audience_is_set_and_required_when_configured(
    start_service: Callable[..., Service]
) -> None:
    plain = start_service().client()
    register(plain)
    assert "aud" not in claims_of(plain.cookie("access") or "")
    plain_access, plain_refresh = plain.cookie("access") or "", plain.cookie("refresh") or ""

    service = start_service(JWT_AUDIENCE="https://api.example")
    client = service.client()
    problem(me(client, plain_access), 401, "invalid_token")
    client.set_cookie("refresh", plain_refresh, "/api/auth")
    assert client.post("/api/auth/refresh").status_code == 200, "turning it on costs a refresh"
    access = client.cookie("access") or ""
    claims = claims_of(access)
    assert claims["aud"] == "https://api.example"
    assert me(client, access).status_code == 200
    for aud in ("https://other.example", ["https://other.example"]):
        problem(me(client, sign({**claims, "aud": aud})), 401, "invalid_token")
    # A service without JWT_AUDIENCE refuses tokens meant for an audience (RFC 7519 4.1.3).
    problem(me(plain, access), 401, "invalid_token")


def test_expiry_has_a_leeway(start_service: Callable[..., Service], registered: Client) -> None:
    claims = claims_of(registered.cookie("access") or "")
    now = int(time.time())
    assert me(registered, sign({**claims, "iat": now - 900, "exp": now - 10})).status_code == 200
    detail = problem(me(registered, sign({**claims, "iat": now - 900, "exp": now - 60})), 401,
                     "invalid_token")
    assert "expired" in detail
    strict = start_service(JWT_LEEWAY="0").client()
    problem(me(strict, sign({**claims, "iat": now - 900, "exp": now - 10})), 401, "invalid_token")


def test_tokens_from_the_future_are_refused(registered: Client) -> None:
    claims = claims_of(registered.cookie("access") or "")
    now = int(time.time())
    assert me(registered, sign({**claims, "iat": now + 10})).status_code == 200, "clock skew"
    for future in ({"iat": now + 120}, {"nbf": now + 120}, {"iat": now, "nbf": now + 3600}):
        detail = problem(me(registered, sign({**claims, **future, "exp": now + 7200})), 401,
                         "invalid_token")
        assert "not yet valid" in detail, future
    refresh = claims_of(registered.cookie("refresh") or "")
    forged = sign({**refresh, "iat": now + 120})
    problem(registered.post("/api/auth/refresh", headers={"Cookie": f"refresh={forged}"}), 401,
            "invalid_token")


# --- password policy -----------------------------------------------------------------------------


def test_the_common_password_list_ships_with_the_package() -> None:
    common = common_passwords()
    assert len(common) == 30000
    assert {"password", "iloveyou", "trustno1", "qwertyuiop"} <= common
    assert all(word == word.lower() and not word.startswith("#") for word in common)


@pytest.mark.parametrize(("password", "reason"), [
    ("Alice.Liddell@Example.com", "must not be your email address or username"),
    ("  alice.liddell@example.com ", "must not be your email address or username"),
    ("ALICE.LIDDELL", "must not be your email address or username"),
    ("Wonderland7", "must not be your email address or username"),
    ("ILoveYou", "among the most common"),
    ("password123", "among the most common"),
    ("short-ish1", "Use at least 12 characters."),
])
def test_registration_refuses_weak_passwords_and_writes_nothing(
    start_service: Callable[..., Service], mongo: Any, password: str, reason: str
) -> None:
    service = start_service(PASSWORD_MIN_LENGTH="12" if "12" in reason else "8")
    response = service.client().post("/api/user/register", json={
        "username": "Wonderland7", "email": "alice.liddell@example.com", "password": password})
    assert reason in problem(response, 400, "weak_password")
    assert "set-cookie" not in response.headers
    assert mongo.users.count_documents({}) == 0


def test_the_spec_keeps_eight_as_the_floor(client: Client) -> None:
    response = client.post("/api/user/register", json={
        "username": "alice1", "email": "alice@example.com", "password": "Zq9!xY7"})
    problem(response, 400, "validation_failed")
    with pytest.raises(Exception, match="Use at least 8 characters"):
        check_password_policy("Zq9!xY7", email="a@b.c", username="abcde", min_length=8)
    with pytest.raises(Exception, match="at most 1024"):
        check_password_policy("Zq9!xY7." * 129, email="a@b.c", username="abcde", min_length=8)


def test_password_change_refuses_weak_passwords_and_keeps_the_old_one(
    registered: Client, mongo: Any
) -> None:
    before = mongo.users.find_one({})["hash"]
    for new, reason in ((" Alice@Example.com", "must not be your email address or username"),
                        ("qwertyuiop", "among the most common")):
        response = registered.put("/api/user/password/change",
                                  json={"oldPassword": PASSWORD, "newPassword": new})
        assert reason in problem(response, 400, "weak_password")
    assert mongo.users.find_one({})["hash"] == before
    assert login(registered).status_code == 200
    changed = registered.put("/api/user/password/change",
                             json={"oldPassword": PASSWORD, "newPassword": GOOD_PASSWORD})
    assert changed.status_code == 200, changed.text


def test_password_reset_refuses_weak_passwords_and_the_link_still_works(
    mail_service: Service, inbox: Inbox, mongo: Any
) -> None:
    client = mail_service.client()
    register(client)
    before = mongo.users.find_one({})["hash"]
    client.post("/api/user/password/reset/request", json={"email": "alice@example.com"})
    token = inbox.link_token("alice@example.com")
    for new, reason in (("alice@example.com", "must not be your email address or username"),
                        ("baseball1", "among the most common")):
        response = client.put("/api/user/password/reset", json={"token": token,
                                                                "newPassword": new})
        assert reason in problem(response, 400, "weak_password")
    assert mongo.users.find_one({})["hash"] == before
    assert login(client).status_code == 200, "the old password still works"
    reset = client.put("/api/user/password/reset", json={"token": token,
                                                         "newPassword": GOOD_PASSWORD})
    assert reset.status_code == 200, reset.text
    assert login(client, password=GOOD_PASSWORD).status_code == 200


# --- enumeration-safe registration ---------------------------------------------------------------


def test_enumeration_safe_registration_answers_a_taken_address_like_a_new_one(
    start_service: Callable[..., Service], inbox: Inbox, mongo: Any
) -> None:
    service = start_service(REGISTRATION_ENUMERATION_SAFE="true", **inbox.env())
    new = register(service.client())
    taken = register(service.client(), username="mallory1", email="ALICE@example.com",
                     password="mallory's own passphrase")
    for response in (new, taken):
        assert response.status_code == 201
        assert "set-cookie" not in response.headers, "no sign-in: cookies would tell them apart"
        assert set(response.json()) == {"message", "user"}
        assert set(response.json()["user"]) == {"id", "username", "email", "verified"}
        assert response.json()["user"]["verified"] is False
    assert taken.json()["message"] == new.json()["message"]
    assert taken.json()["user"]["username"] == "mallory1"
    assert taken.json()["user"]["email"] == "ALICE@example.com"
    assert taken.json()["user"]["id"] != new.json()["user"]["id"]

    assert mongo.users.count_documents({}) == 1, "nothing created"
    assert mongo.users.find_one({})["username"] == "alice1"
    assert login(service.client()).status_code == 200, "the owner's password is unchanged"
    assert login(service.client(), password="mallory's own passphrase").status_code == 401

    subjects = [str(m["Subject"]) for m in inbox.to("alice@example.com")]
    assert len(subjects) == 2 and "You already have an account" in subjects[1], subjects
    text = inbox.text(inbox.last("alice@example.com"))
    assert "Hello alice1," in text
    lines = [line.strip() for line in text.splitlines()]
    assert "http://localhost:4200" in lines and "http://localhost:4200/password-reset" in lines
    assert "token=" not in text

    refused = service.client().post("/api/user/register", json={
        "username": "ALICE1", "email": "someone@example.com", "password": GOOD_PASSWORD})
    problem(refused, 409, "username_taken")


def test_default_registration_of_a_taken_address_is_a_409(service: Service) -> None:
    register(service.client())
    response = service.client().post("/api/user/register", json={
        "username": "mallory1", "email": "alice@example.com", "password": GOOD_PASSWORD})
    problem(response, 409, "email_taken")
