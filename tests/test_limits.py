"""Rate limits, attacked the way an attacker would: guesses from one place, from many places,
in parallel bursts, with spoofed headers, across instances, and against a storage that is down."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import PASSWORD, Client, Service, free_port, login, register
from hecate.core.limits import client_key

WRONG = "not the password"


def _guess(client: Client, ip: str | None = None, email: str = "alice@example.com",
           password: str = WRONG) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return client.post("/api/auth/login", json={"email": email, "password": password},
                       headers=headers)


def test_failed_logins_count_down_then_429_with_headers(service: Service) -> None:
    owner = service.client()
    register(owner)
    attacker = service.client()
    remaining = []
    for _ in range(5):
        response = _guess(attacker)
        assert response.status_code == 401
        assert response.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert int(response.headers["X-RateLimit-Reset"]) > time.time()
    assert remaining == [4, 3, 2, 1, 0]
    refused = _guess(attacker)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "too_many_requests" and body["status"] == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 0 < int(refused.headers["Retry-After"]) <= 901
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # Even the right password is refused from here now: the limit must not be an oracle.
    assert _guess(attacker, password=PASSWORD).status_code == 429


def test_a_successful_login_clears_its_counter(service: Service) -> None:
    client = service.client()
    register(client)
    for _ in range(4):
        assert _guess(client).status_code == 401
    assert login(client).status_code == 200
    statuses = [_guess(client).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_a_parallel_burst_lets_no_more_than_the_limit_through(service: Service) -> None:
    register(service.client())
    clients = [service.client() for _ in range(50)]
    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(lambda c: _guess(c).status_code, clients))
    assert 500 not in statuses
    assert statuses.count(401) <= 5, statuses  # every attempt is charged before it is checked
    assert statuses.count(401) + statuses.count(429) == 50


@pytest.fixture
def proxied(start_service: Callable[..., Service]) -> Service:
    """Behind one trusted proxy: the client address is the last X-Forwarded-For entry."""
    return start_service(TRUSTED_PROXIES="1", LIMITER_ACCOUNT_ATTEMPTS="10")


def test_distributed_guessing_is_stopped_but_the_owners_device_still_signs_in(
    proxied: Service,
) -> None:
    owner = proxied.client()
    register(owner)
    assert login(owner).status_code == 200
    assert owner.cookie("device"), "a successful sign-in leaves a device cookie"
    device = owner.cookie("device")

    attacker = proxied.client()
    # One guess from each of many addresses (TEST-NET-3, nothing is sent there).
    statuses = [_guess(attacker, ip=f"203.0.113.{n}").status_code for n in range(1, 16)]
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}, "the per-account limit stops distributed guessing"

    # A stranger with the right password but no device cookie is held back too...
    stranger = proxied.client()
    assert _guess(stranger, ip="203.0.113.200", password=PASSWORD).status_code == 429
    # ...but the owner's browser, carrying its device cookie, is counted on its own.
    owner.jar.pop("access", None)
    owner.jar.pop("refresh", None)
    assert owner.cookie("device") == device
    response = login(owner)
    assert response.status_code == 200, response.text
    # And the owner's own typos spend the device's allowance, not the (exhausted) account's.
    assert _guess(owner, password=WRONG).status_code == 401


def test_an_attacker_elsewhere_cannot_use_the_strict_limit_to_lock_the_owner_out(
    proxied: Service,
) -> None:
    register(proxied.client())
    attacker = proxied.client()
    for _ in range(5):
        _guess(attacker, ip="203.0.113.7")
    assert _guess(attacker, ip="203.0.113.7").status_code == 429
    owner = proxied.client()  # a new browser, no device cookie, from the owner's own address
    assert login(owner).status_code == 200  # the per-(IP, account) limit is the attacker's own


def test_credential_stuffing_from_one_address_is_stopped(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(LIMITER_IP_ATTEMPTS="8")
    client = service.client()
    statuses = [_guess(client, email=f"user{n}@example.com").status_code for n in range(10)]
    assert statuses[:8] == [401] * 8
    assert statuses[8:] == [429, 429]


def test_a_spoofed_forwarded_header_does_not_dodge_the_limit(service: Service) -> None:
    register(service.client())
    attacker = service.client()
    statuses = [_guess(attacker, ip=f"198.51.100.{n}").status_code for n in range(1, 8)]
    assert statuses == [401] * 5 + [429, 429], "X-Forwarded-For is ignored without a proxy"


def test_limits_are_shared_by_instances_on_one_database(
    start_service: Callable[..., Service],
) -> None:
    a = start_service()
    b = start_service()
    register(a.client())
    ca, cb = a.client(), b.client()
    statuses = [_guess(ca if n % 2 else cb).status_code for n in range(7)]
    assert statuses == [401] * 5 + [429, 429]


def test_mail_requests_are_limited_per_address(start_service: Callable[..., Service]) -> None:
    service = start_service(MAIL_RESPONSE_MIN_MS="0")
    client = service.client()
    paths = ["/api/user/password/reset/request", "/api/auth/magic.login/request",
             "/api/user/email/verification/resend", "/api/user/password/reset/request"]
    statuses = [client.post(p, json={"email": "victim@example.com"}).status_code for p in paths]
    assert statuses == [202, 202, 202, 429]
    other = client.post(paths[0], json={"email": "someone.else@example.com"})
    assert other.status_code == 202


def test_registration_is_limited_per_address(start_service: Callable[..., Service]) -> None:
    service = start_service(LIMITER_REGISTER="2/hour")
    client = service.client()
    statuses = [client.post("/api/user/register", json={
        "username": f"user{n}abc", "email": f"u{n}@example.com", "password": PASSWORD,
    }).status_code for n in range(3)]
    assert statuses == [201, 201, 429]


def test_refresh_is_limited_per_session(start_service: Callable[..., Service]) -> None:
    service = start_service(LIMITER_REFRESH="3/minute")
    client = service.client()
    register(client)
    statuses = [client.post("/api/auth/refresh").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_an_unreachable_limit_store_fails_closed_quickly(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(LIMITER_STORAGE_URL=f"redis://127.0.0.1:{free_port()}",
                            MONGODB_TIMEOUT_MS="1000")
    client = service.client()
    started = time.monotonic()
    response = _guess(client)
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert "Retry-After" in response.headers
    assert time.monotonic() - started < 10


@pytest.fixture
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not shutil.which(server):
        import os

        message = "redis-server is not installed (Debian package redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import redis

                redis.Redis(port=port, socket_timeout=0.5).ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_limits_in_redis(start_service: Callable[..., Service], redis_url: str) -> None:
    a = start_service(LIMITER_STORAGE_URL=redis_url)
    b = start_service(LIMITER_STORAGE_URL=redis_url)
    register(a.client())
    ca, cb = a.client(), b.client()
    statuses = [_guess(ca if n % 2 else cb).status_code for n in range(7)]
    assert statuses == [401] * 5 + [429, 429]


def test_memory_storage_is_refused_outside_dev_mode() -> None:
    from hecate.core.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="memory"):
        Settings.from_env({"JWT_SECRET": "x" * 40, "APP_URL": "https://a.example",
                           "LIMITER_STORAGE_URL": "memory://"})


def test_client_keys_group_ipv6_by_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("garbage").startswith("unknown:")


def test_two_trusted_proxies_the_client_address_is_the_second_entry_from_the_right(
    start_service: Callable[..., Service],
) -> None:
    """TRUSTED_PROXIES=2 (a CDN in front of a load balancer): the address the CDN saw is the one
    charged and recorded; what the client wrote further left is not, and with fewer entries than
    trusted hops the peer's own address stands."""
    service = start_service(TRUSTED_PROXIES="2", LIMITER_IP_ATTEMPTS="3")
    client = service.client()
    register(client)
    # The client forged the first entry; the CDN appended the real address, the balancer its own.
    forwarded = "10.9.9.9, 203.0.113.50, 192.0.2.1"
    assert _guess(client, ip=forwarded, password=PASSWORD).status_code == 200
    events = client.get("/api/user/activity").json()["events"]
    assert events[0]["event"] == "login.succeeded"
    assert events[0]["ip"] == "203.0.113.50"

    # The per-IP limit follows that address, whatever the client puts before it.
    guesser = service.client()
    statuses = [_guess(guesser, ip=f"10.0.0.{n}, 203.0.113.60, 192.0.2.1",
                       email=f"user{n}@example.com").status_code for n in range(5)]
    assert statuses == [401] * 3 + [429, 429]
    assert _guess(guesser, ip="10.0.0.1, 203.0.113.61, 192.0.2.1").status_code == 401

    # One entry only (a request that bypassed the CDN): the peer's own address is used.
    direct = service.client()
    assert login(direct, password=PASSWORD).status_code == 200
    assert _guess(direct, ip="203.0.113.99", password=PASSWORD).status_code == 200
    latest = direct.get("/api/user/activity").json()["events"][0]
    assert latest["ip"] == "127.0.0.1"


def test_behind_a_tls_front_the_swagger_pages_origin_is_its_https_one(
    start_service: Callable[..., Service],
) -> None:
    """The front end terminates TLS and says so in X-Forwarded-Proto: a trusted one makes the
    service's own origin the https:// one (Swagger UI's requests are accepted); from anyone
    else the header changes nothing."""
    behind = start_service(TRUSTED_PROXIES="1").client()
    host = behind.http.base_url.netloc.decode()
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5",
           "Origin": f"https://{host}"}
    assert behind.post("/api/auth/logout", headers=tls).status_code == 200
    assert behind.post("/api/auth/logout", headers={**tls, "Origin": f"http://{host}"}
                       ).status_code == 403

    direct = start_service().client()
    host = direct.http.base_url.netloc.decode()
    assert direct.post("/api/auth/logout", headers={**tls, "Origin": f"https://{host}"}
                       ).status_code == 403
