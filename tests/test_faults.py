"""Faults, with real processes: the database is missing at start, killed in the middle of traffic
and restarted; the service is stopped with SIGTERM while requests are in flight. What must hold:
answers within a bounded time, 503 `service_unavailable` with Retry-After (never a 500, never a
hang), nothing half-written, recovery without a restart, a clean exit."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest

from conftest import PASSWORD, Client, Database, free_port, login, production_command
from processes import Process, SecantusDB, Serve, service_env, wait_status

# MONGODB_TIMEOUT_MS in these tests: a request that needs the database waits at most about this
# long (server selection) before it answers 503.
TIMEOUT_MS = 1000
# What a client may wait for that answer, the timeout plus slack for a busy 2-core machine.
BOUND_S = TIMEOUT_MS / 1000 + 2.5


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "service_unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert "set-cookie" not in response.headers


def user_body(name: str) -> dict[str, str]:
    return {"username": name, "email": f"{name}@example.com", "password": PASSWORD}


def test_a_service_started_without_its_database_answers_503_then_recovers(
        tmp_path: Path) -> None:
    db_port = free_port()  # nothing listens here yet
    url = f"mongodb://127.0.0.1:{db_port}/?directConnection=true"
    serve = Serve(service_env(url, "hecate_faults", MONGODB_TIMEOUT_MS=str(TIMEOUT_MS)),
                  tmp_path / "serve.log")
    db: SecantusDB | None = None
    client = serve.client()
    try:
        serve.wait_listening()  # it starts: FaaS cannot wait for the database

        calls = {
            "health": lambda: client.get("/api/health"),
            "login": lambda: login(client, "annie@example.com"),
            "register": lambda: client.post("/api/user/register", json=user_body("annie")),
            "password reset": lambda: client.post("/api/user/password/reset/request",
                                                  json={"email": "annie@example.com"}),
        }
        for name, call in calls.items():
            started = time.monotonic()
            response = call()
            elapsed = time.monotonic() - started
            assert elapsed < BOUND_S, f"{name} took {elapsed:.1f} s"
            assert_unavailable(response)

        db = SecantusDB(db_port, tmp_path / "db", tmp_path / "db.log")
        db.wait_ready()
        # No restart: the same process answers once the database does.
        health = wait_status(f"{serve.base_url}/api/health", 200, timeout=15)
        assert health.status_code == 200, health.text
        assert client.post("/api/user/register", json=user_body("annie")).status_code == 201
        assert login(client, "annie@example.com").status_code == 200
        assert client.post("/api/auth/refresh").status_code == 200
        assert client.get("/api/user").json()["user"]["username"] == "annie"
        # A second account with the same address is refused...
        again = client.post("/api/user/register", json={**user_body("annie2"),
                                                         "email": "ANNIE@example.com"})
        assert again.status_code == 409
        # ...and not only by the look-up before the insert: the unique keys that stop two racing
        # registrations were built once the database came back (they could not be at start), as
        # was the expiry index of the rate-limit counters.
        with pymongo.MongoClient(url) as mongo:
            users = mongo["hecate_faults"].users.index_information()
            limits = mongo["hecate_faults"].rate_limits.index_information()
        assert users["emailNormalized_unique"]["unique"]
        assert users["usernameNormalized_unique"]["unique"]
        assert any(index.get("expireAfterSeconds") == 0 for index in limits.values())
    finally:
        client.close()
        serve.stop()
        if db is not None:
            db.stop()
    assert "Traceback" not in serve.output


REQUIRED_USER_FIELDS = ("username", "email", "emailNormalized", "usernameNormalized", "hash",
                        "createdAt")


class Traffic:
    """Threads that keep register/login/refresh traffic going and record every answer."""

    def __init__(self, serve: Serve, sessions: list[Client]) -> None:
        self.serve = serve
        self.sessions = sessions
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[str, int, float]] = []  # (operation, status, seconds)
        self.unavailable: list[httpx.Response] = []
        self.failures: list[str] = []  # transport errors: hangs, resets
        self.registered: dict[str, int] = {}  # username -> status of its registration
        self.threads = [threading.Thread(target=self._refresher, args=(s,)) for s in sessions]
        self.threads.append(threading.Thread(target=self._registrar))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive(), "a request hung"

    def _record(self, operation: str, call: Any) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response: httpx.Response = call()
        except httpx.HTTPError as error:
            with self.lock:
                self.failures.append(f"{operation}: {error!r}")
            return None
        with self.lock:
            self.answers.append((operation, response.status_code,
                                 time.monotonic() - started))
            if response.status_code == 503:
                self.unavailable.append(response)
        return response

    def _refresher(self, session: Client) -> None:
        while not self.stop.is_set():
            self._record("refresh", lambda: session.post("/api/auth/refresh"))
            self._record("who-am-I", lambda: session.get("/api/user"))

    def _registrar(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            name = f"newbie{number}"
            client = self.serve.client()
            try:
                response = self._record("register", lambda c=client, n=name: c.post(
                    "/api/user/register", json=user_body(n)))
                if response is not None:
                    with self.lock:
                        self.registered[name] = response.status_code
                # A registration that answered 503 may or may not have landed (its write can be
                # lost with the database): signing in then answers 200 or 401, both right.
                operation = "login" if response is not None and response.status_code == 201 \
                    else "login after a failed registration"
                self._record(operation, lambda c=client, n=name: login(c, f"{n}@example.com"))
            finally:
                client.close()


def test_the_database_killed_and_restarted_during_traffic(tmp_path: Path) -> None:
    db_port = free_port()
    db = SecantusDB(db_port, tmp_path / "db", tmp_path / "db.log")
    db.wait_ready()
    serve = Serve(service_env(db.url, "hecate_faults", MONGODB_TIMEOUT_MS=str(TIMEOUT_MS),
                              LIMITER_REFRESH="100000/minute", LIMITER_REGISTER="100000/hour"),
                  tmp_path / "serve.log")
    sessions: list[Client] = []
    try:
        serve.wait_listening()
        for number in range(3):
            session = serve.client()
            assert session.post("/api/user/register",
                                json=user_body(f"older{number}")).status_code == 201
            sessions.append(session)
        traffic = Traffic(serve, sessions)
        traffic.start()
        try:
            time.sleep(1.5)
            os.killpg(db.process.pid, signal.SIGKILL)  # a crash: nothing is flushed or closed
            db.wait(10)
            time.sleep(1.5)  # traffic goes on against no database at all
            db = SecantusDB(db_port, tmp_path / "db", tmp_path / "db-2.log")
            db.wait_ready()
            wait_status(f"{serve.base_url}/api/health", 200, timeout=15)
            time.sleep(1.5)  # and after its return
        finally:
            traffic.finish()

        statuses = Counter(status for _, status, _ in traffic.answers)
        assert traffic.failures == []
        # Every answer is a success or a 503; in particular no 500 and no 401 for a session whose
        # refresh was cut short.
        unexpected = Counter((op, status) for op, status, _ in traffic.answers
                             if status not in {200, 201, 503}
                             and not (op.startswith("login after") and status == 401))
        assert not unexpected, unexpected
        assert statuses[503] > 0, "the fault went unnoticed: the test proved nothing"
        for response in traffic.unavailable:
            assert_unavailable(response)
        slowest = max(seconds for _, _, seconds in traffic.answers)
        assert slowest < BOUND_S + 1, f"an answer took {slowest:.1f} s"
        done_after = {op for op, status, _ in traffic.answers[-40:] if status in {200, 201}}
        assert {"refresh", "register"} <= done_after, "the service did not recover"

        # Nothing half-written: every account there is whole, and every 201 is there.
        with pymongo.MongoClient(db.url) as mongo:
            documents = list(mongo["hecate_faults"].users.find())
        for document in documents:
            missing = [f for f in REQUIRED_USER_FIELDS if not document.get(f)]
            assert not missing, f"{document['username']} lacks {missing}"
            assert document["hash"].startswith("$argon2id$")
        names = {d["username"] for d in documents}
        created = {name for name, status in traffic.registered.items() if status == 201}
        assert created <= names
        assert len(names) == len(documents)
        # Each of them can sign in (a 503'd registration that did land is a whole account too).
        checker = serve.client()
        for name in sorted(names)[-5:]:
            assert login(checker, f"{name}@example.com").status_code == 200

        # Every session that existed before the fault still works with the refresh cookie its
        # client holds now, whether its last refresh rotated or was cut short (REFRESH_REUSE_GRACE
        # covers a rotation whose answer was lost).
        for session in sessions:
            assert session.post("/api/auth/refresh").status_code == 200
            assert session.get("/api/user").status_code == 200
            assert session.post("/api/auth/refresh").status_code == 200
    finally:
        for session in sessions:
            session.close()
        serve.stop()
        db.stop()
    assert "Traceback" not in serve.output, serve.output[-3000:]


def _slow_requests(base_url: str, count: int) -> tuple[list[threading.Thread], dict[int, Any]]:
    """``count`` password-reset requests, each answered no sooner than MAIL_RESPONSE_MIN_MS, sent
    on connections opened beforehand (so each is surely in flight once sent)."""
    clients = [httpx.Client(base_url=base_url, timeout=30) for _ in range(count)]
    for client in clients:
        assert client.get("/api/health").status_code == 200  # connection open and kept alive
    results: dict[int, Any] = {}

    def send(number: int) -> None:
        try:
            results[number] = clients[number].post("/api/user/password/reset/request",
                                                   json={"email": f"slow{number}@example.com"})
        except httpx.HTTPError as error:
            results[number] = error
        finally:
            clients[number].close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def _turned_away_within(base_url: str, seconds: float) -> None:
    """New requests stop being served within ``seconds``: refused, or (uvicorn's parent process
    holds the socket of its workers) reset, never served by a stopping server."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"{base_url}/api/health", timeout=15)
        except httpx.TransportError:
            return
        assert time.monotonic() < deadline, "still serving new requests after SIGTERM"
        time.sleep(0.1)


@pytest.mark.parametrize("command", ["hecate serve", "uvicorn --workers 2"])
def test_sigterm_lets_requests_in_flight_finish_and_exits_0(
        command: str, database: Database, db_name: str, tmp_path: Path) -> None:
    env = service_env(database.url, db_name, MAIL_RESPONSE_MIN_MS="2500")
    if command == "hecate serve":
        process: Process = Serve(env, tmp_path / "serve.log")
    else:
        # The README's production command (the Dockerfile's CMD), with two workers.
        port = free_port()
        process = Process(production_command(port), {**env, "WEB_CONCURRENCY": "2"},
                          tmp_path / "uvicorn.log", port)
    base_url = f"http://127.0.0.1:{process.port}"
    try:
        process.wait_listening()
        wait_status(f"{base_url}/api/health", 200, timeout=20)
        threads, results = _slow_requests(base_url, 3)
        time.sleep(0.7)  # sent, and answered no sooner than 2.5 s after arriving
        stopped_at = time.monotonic()
        process.signal(signal.SIGTERM)
        # hecate serve stops accepting at once; uvicorn's parent process checks for signals
        # every half second before it stops its workers.
        _turned_away_within(base_url, 0.3 if command == "hecate serve" else 1.5)
        for thread in threads:
            thread.join(30)
        for number in range(3):
            response = results[number]
            assert isinstance(response, httpx.Response), f"in flight, cut off: {response!r}"
            assert response.status_code == 202, response.text
        assert process.wait(20) == 0
        assert time.monotonic() - stopped_at < 12
    finally:
        process.stop()
    assert "Traceback" not in process.output, process.output[-3000:]


def test_repeated_sigterms_while_stopping_still_exit_0_cleanly(
        database: Database, db_name: str, tmp_path: Path) -> None:
    """Supervisors signal every process of a group and may repeat themselves: a SIGTERM that
    arrives while the server is already stopping (draining, closing its database clients) must
    neither break the stop off with a traceback nor change the exit status."""
    serve = Serve(service_env(database.url, db_name), tmp_path / "serve.log")
    try:
        serve.wait_listening()
        client = serve.client()
        assert client.post("/api/user/register", json=user_body("twice")).status_code == 201
        client.close()  # the database clients are in use: closing them takes a moment
        signals = 0
        deadline = time.monotonic() + 30
        while serve.process.poll() is None and time.monotonic() < deadline:
            serve.signal(signal.SIGTERM)
            signals += 1
            time.sleep(0.02)
        assert serve.process.poll() == 0, f"exit status {serve.process.poll()}"
        assert signals > 1, "the process stopped before a second signal: nothing was tested"
    finally:
        serve.stop()
    assert "Traceback" not in serve.output, serve.output[-3000:]


def test_hecate_serve_listens_at_once_however_long_server_selection_may_take(
        tmp_path: Path) -> None:
    """The index build at start runs beside the server: with the database down and a long
    MONGODB_TIMEOUT_MS, `hecate serve` still listens within seconds, not after the timeout."""
    url = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    serve = Serve(service_env(url, "hecate_faults", MONGODB_TIMEOUT_MS="30000"),
                  tmp_path / "serve.log")
    try:
        started = time.monotonic()
        serve.wait_listening(timeout=25)
        assert time.monotonic() - started < 20
    finally:
        serve.stop()
    assert "Traceback" not in serve.output, serve.output[-3000:]
