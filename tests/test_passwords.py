"""The memory bound on password hashing: at most HASH_MEMORY_BUDGET_MB // 19 argon2 hashes run at
once per process, and logins stay correct when they queue for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import PASSWORD, login, register

from hecate.core import passwords
from hecate.core.settings import Settings, SettingsError


class Counting:
    """Wraps the CryptContext and records the most calls running at once inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    def _enter(self) -> None:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)

    def _leave(self) -> None:
        with self.lock:
            self.running -= 1

    def hash(self, secret: Any) -> str:
        self._enter()
        try:
            return str(self.inner.hash(secret))
        finally:
            self._leave()

    def verify(self, secret: Any, stored: str) -> bool:
        self._enter()
        try:
            return bool(self.inner.verify(secret, stored))
        finally:
            self._leave()

    def needs_update(self, stored: str) -> bool:
        return bool(self.inner.needs_update(stored))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counting]:
    wrapper = Counting(passwords._context())
    monkeypatch.setattr(passwords, "_context", lambda: wrapper)
    before = passwords.max_concurrent()
    yield wrapper
    passwords.configure(before)


def test_slots_follow_the_memory_budget() -> None:
    assert passwords.slots_for(48) == 2
    assert passwords.slots_for(19) == 1
    assert passwords.slots_for(1) == 1  # always at least one
    assert passwords.slots_for(128) == 6


def test_setting_is_validated() -> None:
    base = {"JWT_SECRET": "s" * 40, "APP_URL": "http://localhost:4200"}
    assert Settings.from_env(base).hash_memory_budget_mb == 48
    assert Settings.from_env({**base, "HASH_MEMORY_BUDGET_MB": "19"}).hash_memory_budget_mb == 19
    for wrong in ("0", "-5", "lots"):
        with pytest.raises(SettingsError, match="HASH_MEMORY_BUDGET_MB"):
            Settings.from_env({**base, "HASH_MEMORY_BUDGET_MB": wrong})


@pytest.mark.parametrize("slots", [1, 2])
def test_parallel_hashes_and_verifies_never_exceed_the_slots(counting: Counting,
                                                             slots: int) -> None:
    stored = passwords.hash_password(PASSWORD)
    passwords._dummy_hash()
    passwords.configure(slots)
    counting.peak = counting.calls = 0

    def work(i: int) -> bool:
        if i % 3 == 0:
            return passwords.hash_password(f"password {i}").startswith("$argon2id$")
        if i % 3 == 1:
            return passwords.verify_password(PASSWORD, stored) == (True, None)
        return passwords.verify_password(PASSWORD, None) == (False, None)  # the dummy hash

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(12)))
    assert all(results)
    assert counting.calls == 12
    assert counting.peak == slots


def test_logins_under_parallel_requests_stay_correct(start_service: Any,
                                                     counting: Counting) -> None:
    service = start_service(HASH_MEMORY_BUDGET_MB="19", LIMITER_ENABLED="false")
    assert passwords.max_concurrent() == 1
    register(service.client())
    counting.peak = 0

    def attempt(i: int) -> int:
        client = service.client()
        password = PASSWORD if i % 2 == 0 else "wrong password!"
        response = login(client, password=password)
        if response.status_code == 200:
            assert client.get("/api/user").json()["user"]["username"] == "alice1"
        return response.status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(attempt, range(10)))
    assert statuses == [200, 401] * 5
    assert counting.peak == 1
