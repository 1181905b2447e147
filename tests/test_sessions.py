"""Sessions over HTTP with cookies: refresh rotation and reuse detection, remember-me, idle and
absolute lifetimes, logout, sign-out of all devices, password change and account deletion ending
sessions, the per-user session cap, concurrent logins and refreshes, and refresh cookies issued by
the Node original."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import bcrypt
import httpx
import jwt
import pytest
from bson import ObjectId
from conftest import PASSWORD, TEST_SECRET, Client, Service, login, parse_set_cookie, register

USER_KEYS = {"id", "username", "email", "verified"}
REFRESH_PATH = "/api/auth"
NEW_PASSWORD = "a brand new passphrase"
HOUR = 3600
WEEK = 7 * 86400


# --- helpers -------------------------------------------------------------------------------------


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str]]:
    """The cookies a response sets, by name, with their lower-cased attributes."""
    found = {}
    for raw in response.headers.get_list("set-cookie"):
        attrs = parse_set_cookie(raw)
        found[attrs["name"]] = attrs
    return found


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, TEST_SECRET, algorithms=["HS256"],
                      options={"verify_exp": False, "verify_iss": False})


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    code: str = response.json()["code"]
    return code


def refresh(client: Client) -> httpx.Response:
    return client.post("/api/auth/refresh")


def refresh_with(service: Service, token: str) -> httpx.Response:
    """Present ``token`` as the refresh cookie from a fresh browser."""
    other = service.client()
    other.set_cookie("refresh", token, REFRESH_PATH)
    return refresh(other)


def assert_signed_in(response: httpx.Response) -> dict[str, dict[str, str]]:
    """200 with new access and refresh cookies set the way a browser keeps them."""
    assert response.status_code == 200, response.text
    cookies = set_cookies(response)
    assert set(cookies) >= {"access", "refresh"}, response.headers.get_list("set-cookie")
    access, refresh_cookie = cookies["access"], cookies["refresh"]
    assert access["value"] and refresh_cookie["value"]
    assert access["path"] == "/"
    assert refresh_cookie["path"] == REFRESH_PATH
    for cookie in (access, refresh_cookie):
        assert "httponly" in cookie and "secure" in cookie
        assert int(cookie["max-age"]) > 0
    return cookies


def assert_cookies_cleared(response: httpx.Response) -> None:
    """Both cookies are cleared on the paths they were set on (else a browser keeps them)."""
    cookies = set_cookies(response)
    assert set(cookies) >= {"access", "refresh"}, response.headers.get_list("set-cookie")
    assert cookies["access"]["max-age"] == "0" and cookies["access"]["path"] == "/"
    assert cookies["refresh"]["max-age"] == "0" and cookies["refresh"]["path"] == REFRESH_PATH
    assert cookies["access"]["value"] == "" and cookies["refresh"]["value"] == ""


def signed_in_client(service: Service, remember: bool = False,
                     email: str = "alice@example.com", password: str = PASSWORD) -> Client:
    """Another device of an existing user."""
    device = service.client()
    response = login(device, email=email, password=password, remember=remember)
    assert response.status_code == 200, response.text
    return device


def user_sessions(mongo: Any, user_id: str) -> list[dict[str, Any]]:
    return list(mongo.sessions.find({"userId": ObjectId(user_id)}))


def registered_user_id(client: Client) -> str:
    me = client.get("/api/user")
    assert me.status_code == 200, me.text
    user_id: str = me.json()["user"]["id"]
    return user_id


# --- refresh rotation ----------------------------------------------------------------------------


def test_refresh_rotates_both_cookies_and_answers_the_user(service: Service,
                                                           registered: Client) -> None:
    me = registered.get("/api/user").json()["user"]
    old_access, old_refresh = registered.cookie("access"), registered.cookie("refresh")
    assert old_access and old_refresh

    response = refresh(registered)
    cookies = assert_signed_in(response)
    body = response.json()
    assert set(body) == {"message", "user"}
    assert isinstance(body["message"], str) and body["message"]
    assert set(body["user"]) == USER_KEYS
    assert body["user"] == me

    new_access, new_refresh = cookies["access"]["value"], cookies["refresh"]["value"]
    assert new_access != old_access
    assert new_refresh != old_refresh
    old_claims, new_claims = claims(old_refresh), claims(new_refresh)
    assert new_claims["jti"] != old_claims["jti"]
    assert new_claims["session"] == old_claims["session"], "rotation keeps the session"
    assert claims(new_access)["sub"] == me["id"]

    # The browser now holds the new cookies, and they work.
    assert registered.cookie("refresh") == new_refresh
    assert registered.get("/api/user").status_code == 200
    assert refresh(registered).status_code == 200


def test_refresh_without_a_cookie_or_with_a_forged_one_is_refused(service: Service,
                                                                  registered: Client) -> None:
    anonymous = service.client()
    assert refresh(anonymous).status_code == 401

    genuine = claims(registered.cookie("refresh") or "")
    forged = jwt.encode(genuine, "another-secret-" + "y" * 40, algorithm="HS256")
    response = refresh_with(service, forged)
    assert response.status_code == 401
    assert problem_code(response) == "invalid_token"
    assert refresh(registered).status_code == 200, "the genuine token is unaffected"


def test_reusing_a_rotated_token_after_the_grace_revokes_the_whole_session(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(REFRESH_REUSE_GRACE="1")
    victim = service.client()
    register(victim)
    stolen = victim.cookie("refresh")
    assert stolen

    assert refresh(victim).status_code == 200
    newest = victim.cookie("refresh")
    assert newest and newest != stolen
    time.sleep(1.6)

    replay = refresh_with(service, stolen)
    assert replay.status_code == 401, replay.text
    assert problem_code(replay) == "token_reused"

    # The legitimate holder of the newest token is signed out as well.
    after = refresh(victim)
    assert after.status_code == 401, after.text
    assert problem_code(after) in {"session_ended", "token_reused"}
    # ... and presenting the stolen token once more does not bring anything back.
    assert refresh_with(service, stolen).status_code == 401


def test_the_previous_token_within_the_grace_gets_the_current_cookies(service: Service,
                                                                      registered: Client) -> None:
    old = registered.cookie("refresh")
    assert old
    first = refresh(registered)
    assert first.status_code == 200, first.text
    current = set_cookies(first)["refresh"]["value"]

    # A second tab still holding the old cookie refreshes a moment later (default grace 10 s).
    tab = service.client()
    tab.set_cookie("refresh", old, REFRESH_PATH)
    late = refresh(tab)
    cookies = assert_signed_in(late)
    assert set(late.json()) == {"message", "user"}
    late_claims = claims(cookies["refresh"]["value"])
    assert late_claims["jti"] == claims(current)["jti"], "the session's current token, no new one"
    assert late_claims["session"] == claims(current)["session"]
    assert tab.get("/api/user").status_code == 200

    # The grace answer did not rotate again: the first tab's token still works.
    assert refresh(registered).status_code == 200


def test_a_token_two_rotations_old_is_reuse_even_within_the_grace(service: Service,
                                                                   registered: Client) -> None:
    oldest = registered.cookie("refresh")
    assert oldest
    assert refresh(registered).status_code == 200
    assert refresh(registered).status_code == 200

    replay = refresh_with(service, oldest)
    assert replay.status_code == 401, replay.text
    assert problem_code(replay) == "token_reused"
    assert refresh(registered).status_code == 401, "the session is revoked"


# --- lifetimes -----------------------------------------------------------------------------------


def _assert_refresh_lifetime(response: httpx.Response, expected: int) -> None:
    cookie = set_cookies(response)["refresh"]
    max_age = int(cookie["max-age"])
    assert expected - 10 <= max_age <= expected, (max_age, expected)
    remaining = claims(cookie["value"])["exp"] - time.time()
    assert expected - 10 <= remaining <= expected + 1, (remaining, expected)


def test_remember_me_survives_rotation(service: Service, registered: Client) -> None:
    device = service.client()
    signed = login(device, remember=True)
    assert signed.status_code == 200, signed.text
    _assert_refresh_lifetime(signed, WEEK)
    for _ in range(2):
        response = refresh(device)
        assert response.status_code == 200, response.text
        _assert_refresh_lifetime(response, WEEK)


def _resigned(token: str, drop: tuple[str, ...] = (), **changes: Any) -> str:
    """``token`` with claims changed or dropped, signed again with JWT_SECRET and its kid (as a
    service holding the secret could)."""
    body = {k: v for k, v in claims(token).items() if k not in drop}
    return jwt.encode({**body, **changes}, TEST_SECRET, algorithm="HS256",
                      headers={"kid": jwt.get_unverified_header(token)["kid"]})


def _without_session_facts(token: str) -> str:
    """The same refresh token as an earlier version issued it: no `remember`/`session_exp`."""
    return _resigned(token, drop=("remember", "session_exp"))


@pytest.mark.parametrize("remember", [True, False])
def test_refresh_tokens_of_the_previous_version_still_rotate(service: Service, registered: Client,
                                                            mongo: Any, remember: bool) -> None:
    """Tokens issued before the session's facts were carried in them (read from the session
    instead) rotate as before, keep their lifetime, and come back with the facts."""
    device = service.client()
    signed = login(device, remember=remember)
    token = set_cookies(signed)["refresh"]["value"]
    assert claims(token)["remember"] is remember
    session = mongo.sessions.find_one({"_id": claims(token)["session"]})
    assert abs(claims(token)["session_exp"] - session["absoluteExpiresAt"].replace(
        tzinfo=dt.UTC).timestamp()) < 1

    older = _without_session_facts(token)
    response = refresh_with(service, older)
    assert_signed_in(response)
    _assert_refresh_lifetime(response, WEEK if remember else HOUR)
    rotated = claims(set_cookies(response)["refresh"]["value"])
    assert rotated["remember"] is remember and rotated["session_exp"] == claims(token)["session_exp"]
    # And it was a real rotation: the older token is now reuse (past the grace: a second later).
    mongo.sessions.update_one({"_id": rotated["session"]},
                              {"$set": {"rotatedAt": dt.datetime(2000, 1, 1)}})
    assert problem_code(refresh_with(service, older)) == "token_reused"


def test_a_minted_refresh_token_cannot_stretch_its_session(service: Service, registered: Client,
                                                          mongo: Any) -> None:
    """Downstream services hold JWT_SECRET. Even with a session's current jti, a token they mint
    claiming "remember me" and a far session end gets the session's own lifetime and end."""
    device = service.client()
    token = set_cookies(login(device, remember=False))["refresh"]["value"]
    real = claims(token)
    minted = _resigned(token, remember=True, session_exp=real["session_exp"] + 365 * 86400)
    response = refresh_with(service, minted)
    assert_signed_in(response)
    _assert_refresh_lifetime(response, HOUR)
    rotated = claims(set_cookies(response)["refresh"]["value"])
    assert rotated["remember"] is False and rotated["session_exp"] == real["session_exp"]
    stored = mongo.sessions.find_one({"_id": real["session"]})
    assert stored["remember"] is False
    assert stored["expiresAt"].replace(tzinfo=dt.UTC).timestamp() <= time.time() + HOUR + 1

    # Values no date can hold are ignored like absent ones (the session is read), not a 500.
    current = set_cookies(response)["refresh"]["value"]
    for session_exp in (10**20, -5, 2.5, "soon"):
        odd = _resigned(current, remember=True, session_exp=session_exp)
        answer = refresh_with(service, odd)
        assert_signed_in(answer)
        _assert_refresh_lifetime(answer, HOUR)
        current = set_cookies(answer)["refresh"]["value"]


def test_a_session_ended_or_expired_in_the_database_refuses_its_current_token(
    service: Service, registered: Client, mongo: Any,
) -> None:
    """The facts in the token never stand in for the session: its end and its expiry, as
    stored, are what count."""
    device = service.client()
    token = set_cookies(login(device))["refresh"]["value"]
    session_id = claims(token)["session"]
    mongo.sessions.update_one({"_id": session_id},
                              {"$set": {"expiresAt": dt.datetime(2000, 1, 1)}})
    assert problem_code(refresh_with(service, token)) == "session_ended"

    token = set_cookies(login(device))["refresh"]["value"]
    mongo.sessions.delete_one({"_id": claims(token)["session"]})
    assert problem_code(refresh_with(service, token)) == "session_ended"


def test_without_remember_me_the_refresh_cookie_lasts_an_hour(service: Service,
                                                              registered: Client) -> None:
    device = service.client()
    signed = login(device, remember=False)
    assert signed.status_code == 200, signed.text
    _assert_refresh_lifetime(signed, HOUR)
    for _ in range(2):
        response = refresh(device)
        assert response.status_code == 200, response.text
        _assert_refresh_lifetime(response, HOUR)


def test_refreshing_cannot_extend_a_session_past_its_absolute_lifetime(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(SESSION_MAX_AGE="3")
    register(service.client())
    device = service.client()
    signed = login(device, remember=True)  # remember-me (7 days) is capped as well
    signed_at = time.time()
    assert signed.status_code == 200, signed.text
    assert int(set_cookies(signed)["refresh"]["max-age"]) <= 3
    token = set_cookies(signed)["refresh"]["value"]

    # Keep refreshing every 0.4 s. The token is kept by hand: near the end the cookie's
    # Max-Age reaches 0 and a browser would drop it.
    answers = []
    while time.time() - signed_at < 2.9:
        time.sleep(0.4)
        sent_at = time.time()
        device.set_cookie("refresh", token, REFRESH_PATH)
        response = refresh(device)
        answers.append((round(sent_at - signed_at, 2), response.status_code))
        if response.status_code != 200:
            assert response.status_code == 401, response.text
            break
        cookie = set_cookies(response)["refresh"]
        token = cookie["value"]
        remaining = 3 - (sent_at - signed_at)
        assert int(cookie["max-age"]) <= remaining + 0.05, (cookie["max-age"], remaining)
        assert claims(token)["exp"] <= signed_at + 3 + 0.05
    # Refreshes in the first 1.5 s succeed: the session was really usable, and refreshing
    # is what failed to push its end further out.
    assert [status for at, status in answers if at < 1.5] == [200] * 3, answers

    time.sleep(max(0.0, signed_at + 3.3 - time.time()))
    device.set_cookie("refresh", token, REFRESH_PATH)
    late = refresh(device)
    assert late.status_code == 401, late.text


def test_an_active_session_slides_past_the_refresh_ttl_and_an_idle_one_ends(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(JWT_REFRESH_TTL="2")
    device = service.client()
    register(device)
    started = time.time()
    while time.time() - started < 2.6:
        time.sleep(0.8)
        response = refresh(device)
        assert response.status_code == 200, response.text
        assert int(set_cookies(response)["refresh"]["max-age"]) <= 2
    token = device.cookie("refresh")
    assert token
    time.sleep(2.4)
    device.set_cookie("refresh", token, REFRESH_PATH)
    assert refresh(device).status_code == 401


# --- logout --------------------------------------------------------------------------------------


def test_logout_ends_this_session_only_and_clears_the_cookies(service: Service, registered: Client,
                                                              mongo: Any) -> None:
    user_id = registered_user_id(registered)
    other = signed_in_client(service)
    token = registered.cookie("refresh")
    assert token
    assert len(user_sessions(mongo, user_id)) == 2

    response = registered.post("/api/auth/logout")
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["message"], str)
    assert_cookies_cleared(response)
    assert registered.cookie("access") is None and registered.cookie("refresh") is None

    assert refresh_with(service, token).status_code == 401, "this session has ended"
    assert refresh(other).status_code == 200, "the other device stays signed in"
    assert len(user_sessions(mongo, user_id)) == 1


def test_logout_is_idempotent(service: Service, registered: Client) -> None:
    ended = registered.cookie("refresh")
    assert ended
    assert registered.post("/api/auth/logout").status_code == 200

    user_id = claims(ended)["id"]
    now = int(time.time())
    expired = jwt.encode({"id": user_id, "session": claims(ended)["session"], "type": "refresh",
                          "iss": "hecate", "iat": now - 7200, "exp": now - 3600,
                          "jti": claims(ended)["jti"]}, TEST_SECRET, algorithm="HS256")
    cases: dict[str, str | None] = {
        "no cookie": None,
        "garbage": "garbage.not-a.jwt",
        "expired": expired,
        "already ended": ended,
    }
    for case, cookie in cases.items():
        browser = service.client()
        browser.set_cookie("access", "stale-access", "/")
        if cookie is not None:
            browser.set_cookie("refresh", cookie, REFRESH_PATH)
        response = browser.post("/api/auth/logout")
        assert response.status_code == 200, (case, response.text)
        assert_cookies_cleared(response)
        assert browser.cookie("access") is None and browser.cookie("refresh") is None, case


# --- invalidate (sign out everywhere) ------------------------------------------------------------


def test_invalidate_ends_every_session_of_the_user(service: Service, registered: Client,
                                                   mongo: Any) -> None:
    user_id = registered_user_id(registered)
    phone = signed_in_client(service)
    tokens = [registered.cookie("refresh"), phone.cookie("refresh")]
    bob = service.client()
    register(bob, username="bobby2", email="bob@example.com")

    response = registered.post("/api/auth/invalidate")
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["message"], str)
    assert_cookies_cleared(response)

    for token in tokens:
        assert token
        assert refresh_with(service, token).status_code == 401
    assert refresh(phone).status_code == 401
    assert user_sessions(mongo, user_id) == []
    assert refresh(bob).status_code == 200, "other users keep their sessions"

    # An ended session cannot be used to invalidate again.
    again = service.client()
    again.set_cookie("refresh", tokens[0] or "", REFRESH_PATH)
    assert again.post("/api/auth/invalidate").status_code == 401


def test_invalidate_needs_a_refresh_cookie(service: Service, registered: Client) -> None:
    anonymous = service.client()
    assert anonymous.post("/api/auth/invalidate").status_code == 401
    assert refresh(registered).status_code == 200


# --- password change -----------------------------------------------------------------------------


def test_password_change_ends_other_sessions_and_renews_this_one(service: Service,
                                                                  registered: Client,
                                                                  mongo: Any) -> None:
    user_id = registered_user_id(registered)
    laptop = signed_in_client(service, remember=True)
    old_refresh = laptop.cookie("refresh")
    old_access = laptop.cookie("access")

    wrong = laptop.put("/api/user/password/change",
                       json={"oldPassword": "not the password", "newPassword": NEW_PASSWORD})
    assert wrong.status_code == 403, wrong.text
    assert problem_code(wrong) == "wrong_password"
    assert refresh(registered).status_code == 200, "a refused change ends nothing"
    other_token = registered.cookie("refresh")

    response = laptop.put("/api/user/password/change",
                          json={"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    assert response.status_code == 200, response.text
    cookies = assert_signed_in(response)
    assert cookies["refresh"]["value"] != old_refresh
    assert cookies["access"]["value"] != old_access
    _assert_refresh_lifetime(response, WEEK)  # this device stays remembered
    assert laptop.get("/api/user").status_code == 200
    renewed = refresh(laptop)
    assert renewed.status_code == 200, "this device stays signed in"
    _assert_refresh_lifetime(renewed, WEEK)
    assert refresh(laptop).status_code == 200

    assert other_token
    assert refresh_with(service, other_token).status_code == 401, "other devices are signed out"
    assert len(user_sessions(mongo, user_id)) == 1

    old = login(service.client())
    assert old.status_code == 401
    assert problem_code(old) == "invalid_credentials"
    assert login(service.client(), password=NEW_PASSWORD).status_code == 200


# --- delete --------------------------------------------------------------------------------------


def test_delete_account_ends_everything(service: Service, registered: Client, mongo: Any) -> None:
    user_id = registered_user_id(registered)
    phone = signed_in_client(service)
    tokens = [registered.cookie("refresh"), phone.cookie("refresh")]
    own_access = registered.cookie("access")

    wrong = registered.put("/api/user/delete", json={"password": "not the password"})
    assert wrong.status_code == 403, wrong.text
    assert problem_code(wrong) == "wrong_password"
    assert registered.get("/api/user").status_code == 200, "a refused deletion changes nothing"

    response = registered.put("/api/user/delete", json={"password": PASSWORD})
    assert response.status_code == 200, response.text
    assert_cookies_cleared(response)

    for token in tokens:
        assert token
        assert refresh_with(service, token).status_code == 401
    gone = login(service.client())
    assert gone.status_code == 401
    assert problem_code(gone) == "invalid_credentials"

    # Access tokens of the deleted user that have not expired yet are refused too.
    assert phone.get("/api/user").status_code == 401
    stale = service.client()
    stale.set_cookie("access", own_access or "", "/")
    assert stale.get("/api/user").status_code == 401

    oid = ObjectId(user_id)
    assert mongo.users.count_documents({"_id": oid}) == 0
    assert mongo.users.count_documents({"email": "alice@example.com"}) == 0
    assert mongo.sessions.count_documents({"userId": oid}) == 0
    assert mongo.link_tokens.count_documents({"userId": oid}) == 0


# --- MAX_SESSIONS ---------------------------------------------------------------------------------


def test_the_oldest_sessions_give_way_beyond_max_sessions(start_service: Callable[..., Service],
                                                          mongo: Any) -> None:
    service = start_service(MAX_SESSIONS="3")
    first = service.client()
    register(first)
    user_id = registered_user_id(first)
    assert first.post("/api/auth/logout").status_code == 200

    devices = []
    for _ in range(5):
        devices.append(signed_in_client(service))
        time.sleep(0.01)  # distinct creation times
    assert len(user_sessions(mongo, user_id)) == 3

    for device in devices[:2]:
        response = refresh(device)
        assert response.status_code == 401, response.text
        assert problem_code(response) == "session_ended"
    for device in devices[2:]:
        assert refresh(device).status_code == 200
    assert len(user_sessions(mongo, user_id)) == 3


# --- concurrency ---------------------------------------------------------------------------------


def _run_together(count: int, work: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # noqa: BLE001 - reported below
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for result in results:
        assert isinstance(result, httpx.Response), result
    return results


def test_concurrent_logins_all_succeed_and_the_cap_holds(
    start_service: Callable[..., Service], mongo: Any
) -> None:
    # 20 sign-ins of one account from one IP at once look exactly like a burst of guesses to the
    # login limits (every attempt is charged before its password is checked), so they are raised
    # here: this test is about session consistency. test_limits.py covers the limits.
    service = start_service(LIMITER_ATTEMPTS="50", LIMITER_ACCOUNT_ATTEMPTS="50")
    registered = service.client()
    register(registered)
    user_id = registered_user_id(registered)
    assert registered.post("/api/auth/logout").status_code == 200
    devices = [service.client() for _ in range(20)]

    responses = _run_together(20, lambda i: login(devices[i]))
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 20, [r.text for r in responses if r.status_code != 200]

    assert len(user_sessions(mongo, user_id)) == min(20, 10)
    working = sum(refresh(device).status_code == 200 for device in devices)
    assert working == 10


def test_concurrent_refreshes_of_one_token_all_get_the_same_new_token(service: Service,
                                                                      registered: Client,
                                                                      mongo: Any) -> None:
    user_id = registered_user_id(registered)
    token = registered.cookie("refresh")
    assert token
    tabs = [service.client() for _ in range(10)]
    for tab in tabs:
        tab.set_cookie("refresh", token, REFRESH_PATH)

    responses = _run_together(10, lambda i: refresh(tabs[i]))
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    jtis = {claims(set_cookies(r)["refresh"]["value"])["jti"] for r in responses}
    assert len(jtis) == 1, jtis
    assert jtis != {claims(token)["jti"]}

    assert refresh(tabs[0]).status_code == 200, "the shared new token refreshes fine"
    assert len(user_sessions(mongo, user_id)) == 1


# --- refresh cookies of the Node original ---------------------------------------------------------


def _insert_node_user(mongo: Any, sessions: list[str]) -> str:
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    assert stored.startswith("$2b$10$")
    inserted = mongo.users.insert_one({
        "username": "nodeuser",
        "email": "node@example.com",
        "hash": stored,
        "verified": True,
        "allowMagicLogin": False,
        "sessions": sessions,
    })
    return str(inserted.inserted_id)


def _node_refresh_token(user_id: str, session: str, lifetime: int = HOUR) -> str:
    return jwt.encode({"id": user_id, "session": session, "type": "refresh",
                       "exp": int(time.time()) + lifetime}, TEST_SECRET, algorithm="HS256")


def test_a_node_era_refresh_cookie_is_adopted_once(service: Service, mongo: Any) -> None:
    user_id = _insert_node_user(mongo, ["legacy-session-1", "legacy-session-2"])
    legacy = _node_refresh_token(user_id, "legacy-session-1")
    browser = service.client()
    browser.set_cookie("refresh", legacy, REFRESH_PATH)

    response = refresh(browser)
    cookies = assert_signed_in(response)
    assert response.json()["user"] == {"id": user_id, "username": "nodeuser",
                                       "email": "node@example.com", "verified": True}
    adopted = claims(cookies["refresh"]["value"])
    assert adopted["jti"] and adopted["iss"] == "hecate"
    assert adopted["id"] == user_id
    _assert_refresh_lifetime(response, HOUR)
    assert browser.get("/api/user").status_code == 200

    stored = mongo.users.find_one({"_id": ObjectId(user_id)})
    assert stored["sessions"] == ["legacy-session-2"], "only the adopted session is removed"
    assert len(user_sessions(mongo, user_id)) == 1

    again = refresh_with(service, legacy)
    assert again.status_code == 401, again.text
    assert refresh(browser).status_code == 200, "the new token works"


def test_a_long_lived_node_era_cookie_stays_remembered(service: Service, mongo: Any) -> None:
    user_id = _insert_node_user(mongo, ["legacy-session-1"])
    response = refresh_with(service, _node_refresh_token(user_id, "legacy-session-1", 6 * 86400))
    assert response.status_code == 200, response.text
    _assert_refresh_lifetime(response, WEEK)


def test_node_era_refresh_cookies_can_be_turned_off(start_service: Callable[..., Service],
                                                    mongo: Any) -> None:
    service = start_service(LEGACY_REFRESH_TOKENS="false")
    user_id = _insert_node_user(mongo, ["legacy-session-1"])
    response = refresh_with(service, _node_refresh_token(user_id, "legacy-session-1"))
    assert response.status_code == 401, response.text
    assert set_cookies(response).get("refresh", {}).get("max-age") in {None, "0"}


def test_logout_with_a_node_era_cookie_ends_that_session(service: Service, mongo: Any) -> None:
    user_id = _insert_node_user(mongo, ["legacy-session-1"])
    legacy = _node_refresh_token(user_id, "legacy-session-1")
    browser = service.client()
    browser.set_cookie("refresh", legacy, REFRESH_PATH)
    response = browser.post("/api/auth/logout")
    assert response.status_code == 200, response.text
    assert_cookies_cleared(response)
    assert mongo.users.find_one({"_id": ObjectId(user_id)})["sessions"] == []
    assert refresh_with(service, legacy).status_code == 401


def test_a_used_node_era_cookie_cannot_sign_the_user_out_everywhere(service: Service,
                                                                    mongo: Any) -> None:
    user_id = _insert_node_user(mongo, ["legacy-session-1"])
    legacy = _node_refresh_token(user_id, "legacy-session-1")
    browser = service.client()
    browser.set_cookie("refresh", legacy, REFRESH_PATH)
    assert refresh(browser).status_code == 200  # adopted: the legacy token is spent

    replay = service.client()
    replay.set_cookie("refresh", legacy, REFRESH_PATH)
    response = replay.post("/api/auth/invalidate")
    assert response.status_code == 401, response.text
    assert refresh(browser).status_code == 200, "the adopted session survives"
    assert len(user_sessions(mongo, user_id)) == 1
