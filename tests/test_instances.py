"""Many instances: three `hecate serve` processes on one database, as behind a load balancer that
sends each request of a client to any of them. Sessions and rate-limit counters live in the
database, so what one instance does, the others see at once."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pymongo
import pytest

from conftest import PASSWORD, Client, Database, login
from processes import Serve, service_env, wait_status

GRACE_S = 1  # REFRESH_REUSE_GRACE here, so that the tests need not wait 10 s
ATTEMPTS = 3  # LIMITER_ATTEMPTS here


@pytest.fixture(scope="module")
def instances(database: Database, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[tuple[Serve, Serve, Serve]]:
    name = f"hecate_test_{uuid.uuid4().hex[:12]}"
    logs: Path = tmp_path_factory.mktemp("instances")
    env = service_env(database.url, name, REFRESH_REUSE_GRACE=str(GRACE_S),
                      LIMITER_ATTEMPTS=str(ATTEMPTS), MONGODB_TIMEOUT_MS="3000")
    started = [Serve(env, logs / f"{letter}.log") for letter in "abc"]
    try:
        for serve in started:
            serve.wait_listening()
            wait_status(f"{serve.base_url}/api/health", 200, timeout=20)
        yield started[0], started[1], started[2]
    finally:
        for serve in started:
            serve.signal(signal.SIGTERM)  # all at once: each drains in parallel
        for serve in started:
            serve.stop()
        with pymongo.MongoClient(database.url) as client:
            client.drop_database(name)
    for serve in started:
        assert "Traceback" not in serve.output, serve.output[-3000:]


class Browser:
    """One cookie jar whose requests go to whichever instance the test names."""

    def __init__(self, instances: tuple[Serve, ...]) -> None:
        first = instances[0].client()
        # One jar: the cookies are the browser's, whichever instance answers.
        self.clients = [first, *(serve.for_client(first) for serve in instances[1:])]

    def on(self, instance: int) -> Client:
        return self.clients[instance]

    @property
    def refresh_cookie(self) -> str | None:
        return self.clients[0].cookie("refresh")

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def browsers(instances: tuple[Serve, Serve, Serve]) -> Iterator[list[Browser]]:
    made: list[Browser] = []
    yield made
    for browser in made:
        browser.close()


A, B, C = 0, 1, 2


def new_account(instances: tuple[Serve, ...], browsers: list[Browser]) -> tuple[Browser, str]:
    """A browser signed in to a new account (registered on A); its email."""
    browser = Browser(instances)
    browsers.append(browser)
    name = f"user{uuid.uuid4().hex[:10]}"
    email = f"{name}@example.com"
    response = browser.on(A).post("/api/user/register", json={
        "username": name, "email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return browser, email


def refresh(client: Client) -> httpx.Response:
    return client.post("/api/auth/refresh")


def code(response: httpx.Response) -> str:
    return str(response.json()["code"])


def test_login_on_a_refresh_on_b_logout_on_c(instances: tuple[Serve, Serve, Serve],
                                             browsers: list[Browser]) -> None:
    browser, email = new_account(instances, browsers)
    assert login(browser.on(A), email).status_code == 200
    signed_in = browser.refresh_cookie

    assert refresh(browser.on(B)).status_code == 200
    assert browser.refresh_cookie != signed_in  # rotated on B...
    assert browser.on(C).get("/api/user").status_code == 200
    assert refresh(browser.on(A)).status_code == 200  # ...and A knows the new token
    last = browser.refresh_cookie

    assert browser.on(C).post("/api/auth/logout").status_code == 200
    assert browser.refresh_cookie is None
    # The cookie from before the logout is dead on every instance.
    for instance in (A, B, C):
        browser.on(instance).set_cookie("refresh", last or "", "/api/auth")
        response = refresh(browser.on(instance))
        assert response.status_code == 401, response.text
        assert code(response) == "session_ended"


def test_invalidate_on_a_ends_the_refresh_cookie_used_on_b(
        instances: tuple[Serve, Serve, Serve], browsers: list[Browser]) -> None:
    phone, email = new_account(instances, browsers)
    laptop = Browser(instances)
    browsers.append(laptop)
    assert login(laptop.on(B), email).status_code == 200
    assert refresh(laptop.on(B)).status_code == 200

    assert phone.on(A).post("/api/auth/invalidate").status_code == 200

    response = refresh(laptop.on(B))
    assert response.status_code == 401, response.text
    assert code(response) == "session_ended"
    assert refresh(laptop.on(C)).status_code == 401


def test_failed_logins_spread_over_instances_are_counted_together(
        instances: tuple[Serve, Serve, Serve], browsers: list[Browser]) -> None:
    _owner, email = new_account(instances, browsers)
    guesser = Browser(instances)
    browsers.append(guesser)
    remaining = []
    for instance in (A, B, C):  # LIMITER_ATTEMPTS wrong passwords, one per instance
        response = login(guesser.on(instance), email, "wrong password " + "x" * instance)
        assert response.status_code == 401, response.text
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert remaining == [2, 1, 0]

    # The next attempt, wherever it lands, is over the shared limit: even the right password.
    for instance in (A, B, C):
        response = login(guesser.on(instance), email)
        assert response.status_code == 429, response.text
        assert code(response) == "too_many_requests"
        assert int(response.headers["retry-after"]) > 0
    assert "refresh" not in guesser.clients[0].jar


def _jti(token: str | None) -> str:
    claims = jwt.decode(token or "", options={"verify_signature": False})
    return f"{claims['session']}/{claims['jti']}"


def test_a_rotated_token_replayed_on_another_instance_is_detected(
        instances: tuple[Serve, Serve, Serve], browsers: list[Browser]) -> None:
    victim, _ = new_account(instances, browsers)
    stolen = victim.refresh_cookie
    assert refresh(victim.on(B)).status_code == 200  # rotated on B
    current = victim.refresh_cookie
    assert current != stolen

    thief = Browser(instances)
    browsers.append(thief)
    thief.on(C).set_cookie("refresh", stolen or "", "/api/auth")
    # Within REFRESH_REUSE_GRACE (two tabs refreshing at once) C hands out the current token...
    within = refresh(thief.on(C))
    assert within.status_code == 200, within.text
    # The same token as the victim's current one (re-signed: its `iat` may be a second later).
    assert _jti(thief.refresh_cookie) == _jti(current)

    time.sleep(GRACE_S + 0.5)
    # ...after it, the old token on C is theft: refused, and the session ends everywhere.
    thief.on(C).set_cookie("refresh", stolen or "", "/api/auth")
    replay = refresh(thief.on(C))
    assert replay.status_code == 401, replay.text
    assert code(replay) == "token_reused"
    for instance in (A, B):
        response = refresh(victim.on(instance))
        assert response.status_code == 401, response.text
        assert code(response) == "session_ended"
