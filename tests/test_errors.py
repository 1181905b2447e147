"""How Hecate fails and what it says around every answer: problem JSON with registered codes, the
plain-text error format, hostile input (bad bodies, odd cookies), CORS, the security headers,
health with and without a database, settings checked at start, and logs free of secrets."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import conftest
from conftest import (
    PASSWORD,
    ROOT,
    TEST_SECRET,
    AsgiServer,
    Client,
    Database,
    Service,
    free_port,
    login,
    register,
)
from hecate.app import create_app
from hecate.core.errors import CODES
from hecate.core.settings import Settings, SettingsError
from hecate.logs import JsonFormatter

SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
SPEC_CODES = set(SPEC["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "message"}
APP_ORIGIN = "http://localhost:4200"


def assert_problem(response: httpx.Response, status: int,
                   code: str | None = None) -> dict[str, Any]:
    """The answer is RFC 9457 problem JSON with a registered code; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == response.status_code
    assert body["message"] == body["detail"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["type"], str) and body["type"]
    assert body["detail"], "an error always says what went wrong"
    assert body["code"] in SPEC_CODES, f"{body['code']} is not documented in openapi.yaml"
    assert body["code"] in CODES, f"{body['code']} is not in hecate.core.errors.CODES"
    assert CODES[body["code"]][0] == status
    if code is not None:
        assert body["code"] == code
    return body


def test_the_code_registry_and_the_spec_are_in_step() -> None:
    assert SPEC_CODES == set(CODES)


# --- problem JSON for every kind of failure ------------------------------------------------------


def test_a_validation_error_is_problem_json(client: Client) -> None:
    response = client.post("/api/auth/login", json={"email": "alice@example.com"})
    body = assert_problem(response, 400, "validation_failed")
    assert "password" in body["message"]


def test_malformed_json_is_a_400(client: Client) -> None:
    response = client.post("/api/auth/login", content=b'{"email": "a@b.c", "password": ',
                           headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "malformed_request")


@pytest.mark.parametrize("raw", [b"\xff\xfe", b'{"email": "\xff@x.y", "password": "pw"}',
                                 b"\xff\xfe{\x00}\x00"])
def test_a_body_that_is_not_utf8_is_a_400(client: Client, raw: bytes) -> None:
    response = client.post("/api/auth/login", content=raw,
                           headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "malformed_request")


def test_an_empty_body_where_one_is_required_is_a_400(client: Client) -> None:
    response = client.post("/api/auth/login", content=b"",
                           headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "content,content_type",
    [
        (b"email=alice%40example.com&password=x", "application/x-www-form-urlencoded"),
        (b'{"email": "alice@example.com", "password": "x"}', "text/plain"),
    ],
    ids=["form", "text"],
)
def test_a_body_that_is_not_json_is_a_415(client: Client, content: bytes,
                                          content_type: str) -> None:
    response = client.post("/api/auth/login", content=content,
                           headers={"Content-Type": content_type})
    assert_problem(response, 415, "unsupported_media_type")


def test_a_body_over_64_kib_is_a_413(client: Client, mongo: Any) -> None:
    body = json.dumps({"username": "alice1", "email": "alice@example.com",
                       "password": "p" * (65 * 1024)}).encode()
    response = client.post("/api/user/register", content=body,
                           headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "payload_too_large")
    assert mongo.users.count_documents({}) == 0


def test_a_chunked_body_over_64_kib_is_refused_without_a_500(client: Client, mongo: Any) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"username": "alice1", "email": "alice@example.com", "password": "'
        for _ in range(80):
            yield b"p" * 1024
        yield b'"}'

    response = client.post("/api/user/register", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers, "the test must send it chunked"
    assert response.status_code in {400, 413}, response.text
    assert_problem(response, response.status_code)
    assert mongo.users.count_documents({}) == 0


def test_a_small_chunked_body_is_fine(registered: Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"email": "alice@example.com", '
        yield json.dumps({"password": PASSWORD})[1:].encode()

    registered.jar.clear()
    response = registered.post("/api/auth/login", content=chunks(),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_an_unknown_path_is_a_404(client: Client) -> None:
    assert_problem(client.get("/api/nothing/here"), 404, "not_found")
    assert_problem(client.get("/elsewhere"), 404, "not_found")


def test_a_wrong_method_is_a_405(client: Client) -> None:
    assert_problem(client.request("DELETE", "/api/auth/login"), 405, "method_not_allowed")
    assert_problem(client.get("/api/auth/login"), 405, "method_not_allowed")


def test_authentication_errors_are_problem_json(service: Service, registered: Client) -> None:
    anonymous = service.client()
    assert_problem(anonymous.get("/api/user"), 401, "authentication_required")
    assert_problem(anonymous.post("/api/auth/refresh", json={}), 401, "authentication_required")
    anonymous.set_cookie("access", "not-a-jwt")
    assert_problem(anonymous.get("/api/user"), 401, "invalid_token")
    assert_problem(login(registered, password="wrong password"), 401, "invalid_credentials")
    assert_problem(registered.put("/api/user/delete", json={"password": "wrong password"}), 403,
                   "wrong_password")


# --- ERROR_FORMAT=text ---------------------------------------------------------------------------


def test_error_format_text_answers_with_the_bare_message(
    start_service: Callable[..., Service],
) -> None:
    client = start_service(ERROR_FORMAT="text").client()
    created = register(client)
    assert created.headers["content-type"].startswith("application/json")
    assert created.json()["user"]["username"] == "alice1"
    signed_in = login(client)
    assert signed_in.status_code == 200
    assert signed_in.json()["user"]["username"] == "alice1"

    failed = login(client, password="wrong password")
    assert failed.status_code == 401
    assert failed.headers["content-type"].startswith("text/plain")
    assert failed.text == "Invalid email or password."

    invalid = client.post("/api/user/register",
                          json={"username": "bob12", "email": "bob@example.com",
                                "password": "Zq9!xY7"})
    assert invalid.status_code == 400
    assert invalid.headers["content-type"].startswith("text/plain")
    assert "password" in invalid.text and "Zq9!xY7" not in invalid.text
    assert not invalid.text.lstrip().startswith("{")

    for response, status in ((client.get("/api/nothing"), 404),
                             (client.post("/api/auth/login", content=b"x" * (70 * 1024),
                                          headers={"Content-Type": "application/json"}), 413)):
        assert response.status_code == status
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text and not response.text.lstrip().startswith("{")


# --- odd cookies ---------------------------------------------------------------------------------

ODD_COOKIES = (
    'prefs={"theme":"dark","n":[1,2]}; a b=1; {"x":1}=2; x,y=3; =4; novalue; "q"=5; '
    'caf\xe9=\xe9t\xe9; access={"sub":"x"}; refresh="{\\"a\\":1}"; access=also-bad; ;;'
).encode("latin-1")


def _operations() -> list[tuple[str, str]]:
    return [(method.upper(), "/api" + path) for path, item in SPEC["paths"].items()
            for method in item if method in {"get", "post", "put", "delete"}]


def test_odd_cookies_never_cause_a_500(client: Client) -> None:
    operations = _operations()
    assert len(operations) >= 15
    for method, path in operations:
        for body in ({}, None):
            kwargs: dict[str, Any] = {"headers": {"Cookie": ODD_COOKIES}}
            if method != "GET" and body is not None:
                kwargs["json"] = body
            response = client.http.request(method, path, **kwargs)
            assert response.status_code < 500, f"{method} {path}: {response.text}"
            if response.status_code >= 400:
                assert_problem(response, response.status_code)


def test_odd_cookies_beside_ours_do_not_hide_them(registered: Client) -> None:
    access = registered.cookie("access")
    refresh = registered.cookie("refresh")
    junk = 'prefs={"theme":"dark"}; a b=1; {"x":1}=2; x,y=3'
    me = registered.http.get("/api/user", headers={"Cookie": f"{junk}; access={access}"})
    assert me.status_code == 200, me.text
    assert me.json()["user"]["username"] == "alice1"
    refreshed = registered.http.post("/api/auth/refresh", json={},
                                     headers={"Cookie": f"{junk}; refresh={refresh}"})
    assert refreshed.status_code == 200, refreshed.text


# --- CORS ----------------------------------------------------------------------------------------


def _preflight(client: Client, origin: str, path: str = "/api/auth/login") -> httpx.Response:
    return client.http.request("OPTIONS", path, headers={
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    })


def test_cors_preflight_from_the_app_origin(client: Client) -> None:
    response = _preflight(client, APP_ORIGIN)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


def test_cors_refuses_a_foreign_origin(registered: Client) -> None:
    foreign = "https://evil.example"
    preflight = _preflight(registered, foreign)
    assert "access-control-allow-origin" not in preflight.headers
    simple = registered.get("/api/user", headers={"Origin": foreign})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_origins_allows_each_listed_origin(start_service: Callable[..., Service]) -> None:
    client = start_service(CORS_ORIGINS="https://a.example https://b.example").client()
    for origin in ("https://a.example", "https://b.example"):
        response = _preflight(client, origin)
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in _preflight(client, APP_ORIGIN).headers


def test_an_error_answer_carries_cors_headers_for_an_allowed_origin(registered: Client) -> None:
    response = registered.post("/api/auth/login",
                               json={"email": "alice@example.com", "password": "wrong password"},
                               headers={"Origin": APP_ORIGIN})
    assert_problem(response, 401, "invalid_credentials")
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"

    signed_in = registered.post("/api/auth/login",
                                json={"email": "alice@example.com", "password": PASSWORD},
                                headers={"Origin": APP_ORIGIN})
    assert signed_in.status_code == 200
    assert signed_in.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.parametrize(
    "method,path,kwargs,status",
    [
        ("GET", "/api/nothing", {}, 404),
        ("POST", "/api/auth/login", {"json": {}}, 400),
        ("POST", "/api/auth/login", {"content": b"x", "headers": {"Content-Type": "text/plain"}},
         415),
        ("POST", "/api/auth/login",
         {"content": b"x" * (70 * 1024), "headers": {"Content-Type": "application/json"}}, 413),
    ],
    ids=["404", "400", "415", "413"],
)
def test_every_error_answer_is_readable_by_the_app_origin(
    client: Client, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    headers = {"Origin": APP_ORIGIN, **kwargs.pop("headers", {})}
    response = client.http.request(method, path, headers=headers, **kwargs)
    assert_problem(response, status)
    assert response.headers.get("access-control-allow-origin") == APP_ORIGIN
    assert response.headers.get("access-control-allow-credentials") == "true"


# --- headers on every answer ---------------------------------------------------------------------

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _assert_security_headers(response: httpx.Response, name: str) -> None:
    assert response.headers.get("x-content-type-options") == "nosniff", name
    assert "no-store" in response.headers.get("cache-control", ""), name
    assert _REQUEST_ID.match(response.headers.get("x-request-id", "")), name


def test_every_answer_carries_the_security_headers(client: Client) -> None:
    responses = {
        "register": register(client),
        "who-am-i": client.get("/api/user"),
        "health": client.get("/api/health"),
        "wrong password": login(client, password="wrong password"),
        "validation": client.post("/api/auth/login", json={}),
        "not found": client.get("/api/nothing"),
        "method": client.request("DELETE", "/api/auth/login"),
        "media type": client.post("/api/auth/login", content=b"x",
                                  headers={"Content-Type": "text/plain"}),
        "too large": client.post("/api/auth/login", content=b"x" * (70 * 1024),
                                 headers={"Content-Type": "application/json"}),
        "logout": client.post("/api/auth/logout", json={}),
    }
    ids = set()
    for name, response in responses.items():
        _assert_security_headers(response, name)
        ids.add(response.headers["x-request-id"])
    assert len(ids) == len(responses), "each request gets its own id"


def test_a_cors_preflight_answer_carries_the_security_headers_too(client: Client) -> None:
    allowed = _preflight(client, APP_ORIGIN)
    assert allowed.status_code == 200
    _assert_security_headers(allowed, "allowed preflight")
    refused = _preflight(client, "https://evil.example")
    _assert_security_headers(refused, "refused preflight")
    sane = "preflight-1"
    echoed = client.http.request("OPTIONS", "/api/auth/login", headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST", "X-Request-ID": sane})
    assert echoed.headers.get("x-request-id") == sane


def test_a_sane_request_id_is_echoed_and_an_odd_one_replaced(client: Client) -> None:
    sane = "req-2024.06_abc"
    assert client.get("/api/health", headers={"X-Request-ID": sane}).headers["x-request-id"] == sane
    echoed = client.post("/api/auth/login", json={}, headers={"X-Request-ID": sane})
    assert echoed.headers["x-request-id"] == sane
    for odd in ("has spaces in it", "x" * 65, "<script>", "a;b"):
        answered = client.get("/api/health", headers={"X-Request-ID": odd}).headers["x-request-id"]
        assert answered != odd
        assert _REQUEST_ID.match(answered)


# --- health and a database that does not answer -------------------------------------------------


def test_health_is_ok_when_the_database_answers(client: Client) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


class _ServerWithoutDatabase:
    """Hecate served by uvicorn like conftest.Service, but without creating indexes at start
    (which needs the database): FaaS starts the app without dialling the database either."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.server = AsgiServer(create_app(settings), self.port)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def database_down(database: Database, db_name: str) -> Iterator[Client]:
    closed = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    settings = conftest.test_settings(database, db_name, MONGODB_URL=closed,
                                      MONGODB_TIMEOUT_MS="500")
    server = _ServerWithoutDatabase(settings)
    client = Client(f"http://127.0.0.1:{server.port}")
    yield client
    client.close()
    server.stop()


def test_health_is_503_when_the_database_does_not_answer(database_down: Client) -> None:
    started = time.monotonic()
    response = database_down.get("/api/health")
    assert time.monotonic() - started < 5
    assert_problem(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) > 0


def test_login_is_503_not_500_when_the_database_does_not_answer(database_down: Client) -> None:
    started = time.monotonic()
    response = login(database_down)
    assert time.monotonic() - started < 5
    assert_problem(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) > 0
    assert "set-cookie" not in response.headers

    started = time.monotonic()
    response = database_down.post("/api/user/register", json={
        "username": "alice1", "email": "alice@example.com", "password": PASSWORD})
    assert time.monotonic() - started < 5
    assert_problem(response, 503, "service_unavailable")


# --- settings ------------------------------------------------------------------------------------

BASE_ENV = {"JWT_SECRET": TEST_SECRET, "APP_URL": APP_ORIGIN}


def _settings(**env: str) -> Settings:
    return Settings.from_env({**BASE_ENV, **env})


def test_settings_refuse_a_missing_jwt_secret_outside_dev_mode() -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings.from_env({"APP_URL": APP_ORIGIN})
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings.from_env({"APP_URL": APP_ORIGIN, "JWT_SECRET": "   "})


def test_settings_refuse_a_short_jwt_secret() -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        _settings(JWT_SECRET="0123456789")
    assert _settings(JWT_SECRET="k" * 32).jwt_secret == "k" * 32


def test_settings_refuse_a_wildcard_cors_origin() -> None:
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        _settings(CORS_ORIGINS="*")
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        _settings(CORS_ORIGINS="https://a.example *")
    assert _settings().cors_origins == (APP_ORIGIN,)
    assert _settings(CORS_ORIGINS="https://a.example, https://B.example/").cors_origins == (
        "https://a.example", "https://b.example")


def test_settings_build_the_atlas_url_from_host_user_and_password() -> None:
    plain = _settings(MONGODB_URL="cluster0.example.net", MONGODB_USER="user",
                      MONGODB_PASSWORD="pass")
    assert plain.mongodb_url == "mongodb+srv://user:pass@cluster0.example.net"
    special = _settings(MONGODB_URL="cluster0.example.net", MONGODB_USER="us@er",
                        MONGODB_PASSWORD="p@ss:w/rd%")
    assert special.mongodb_url == "mongodb+srv://us%40er:p%40ss%3Aw%2Frd%25@cluster0.example.net"
    full = _settings(MONGODB_URL="mongodb://db.example:27017", MONGODB_USER="user",
                     MONGODB_PASSWORD="pass")
    assert full.mongodb_url == "mongodb://db.example:27017", "a full URL is used as is"


def test_settings_parse_durations() -> None:
    settings = _settings(JWT_ACCESS_TTL="15m", JWT_EXTENDED_REFRESH_TTL="7d",
                         JWT_REFRESH_TTL="3600", JWT_MAGIC_LOGIN_TTL="2h")
    assert settings.access_ttl == 900
    assert settings.extended_refresh_ttl == 7 * 86400
    assert settings.refresh_ttl == 3600
    assert settings.magic_login_ttl == 7200


@pytest.mark.parametrize("value", ["15 minutes", "abc", "-5", "1w", "", "0", "1.5h"])
def test_settings_refuse_a_bad_duration_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="JWT_ACCESS_TTL"):
        _settings(JWT_ACCESS_TTL=value)


def test_settings_require_a_database_outside_dev_mode() -> None:
    with pytest.raises(SettingsError, match="MONGODB_URL"):
        Settings(jwt_secrets=(TEST_SECRET,)).require_database()
    with pytest.raises(SettingsError, match="MONGODB_URL"):
        _settings().require_database()
    _settings(MONGODB_URL="mongodb://127.0.0.1:1").require_database()
    Settings(dev_mode=True).require_database()


def test_dev_mode_generates_and_keeps_a_secret(tmp_path: Path) -> None:
    env = {"HECATE_DEV": "true", "HECATE_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    assert len(first.jwt_secret.encode()) >= 32
    assert (tmp_path / "jwt-secret").read_text().strip() == first.jwt_secret
    assert Settings.from_env(env).jwt_secret == first.jwt_secret, "restarts keep sessions"
    assert first.cookie_samesite == "Lax"
    assert first.dev_mode is True
    assert _settings().cookie_samesite == "None", "outside dev mode cross-site SPAs work"

    other = tmp_path / "other"
    assert Settings.from_env({**env, "HECATE_DATA_DIR": str(other)}).jwt_secret != \
        first.jwt_secret


# --- logs ----------------------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.stream = io.StringIO()
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self.lock_:
            self.stream.write(line + "\n")

    def lines(self) -> list[str]:
        with self.lock_:
            return self.stream.getvalue().splitlines()


@pytest.fixture
def log_lines() -> Iterator[_Lines]:
    handler = _Lines()
    loggers = [logging.getLogger("hecate"), logging.getLogger("connexion")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def test_logs_carry_no_secrets_and_one_line_per_request(
    start_service: Callable[..., Service], mongo: Any, log_lines: _Lines
) -> None:
    service = start_service(LOG_LEVEL="debug")
    assert logging.getLogger("hecate").getEffectiveLevel() == logging.DEBUG
    client = service.client()
    too_short = "Zq9!xY7"

    responses = [register(client)]
    tokens = {client.cookie("access"), client.cookie("refresh")}
    responses.append(login(client))
    tokens |= {client.cookie("access"), client.cookie("refresh")}
    responses.append(client.post("/api/auth/refresh", json={}))
    tokens |= {client.cookie("access"), client.cookie("refresh")}
    responses.append(login(client, password="wrong " + PASSWORD))
    responses.append(client.post("/api/user/register", json={
        "username": "bob12", "email": "bob@example.com", "password": too_short}))
    assert [r.status_code for r in responses] == [201, 200, 200, 401, 400]
    tokens.discard(None)
    assert len(tokens) == 6

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        requests = [json.loads(line) for line in log_lines.lines()
                    if json.loads(line).get("event") == "request"]
        if len(requests) >= len(responses):
            break
        time.sleep(0.05)
    lines = log_lines.lines()

    stored_hash = mongo.users.find_one({"username": "alice1"})["hash"]
    secrets = [PASSWORD, "wrong " + PASSWORD, too_short, stored_hash,
               stored_hash.rsplit("$", 1)[-1], TEST_SECRET, *tokens]
    for line in lines:
        for secret in secrets:
            assert secret not in line, f"a secret in the log: {line}"
        for token in tokens:
            assert token.split(".")[-1] not in line, "a token signature in the log"

    entries = [json.loads(line) for line in lines]
    requests = [entry for entry in entries if entry.get("event") == "request"]
    assert len(requests) == len(responses), requests
    by_id = {entry["request_id"]: entry for entry in requests}
    for response in responses:
        entry = by_id[response.headers["x-request-id"]]
        assert entry["method"] == response.request.method
        assert entry["path"] == response.request.url.path
        assert entry["status"] == response.status_code
        assert isinstance(entry["duration_ms"], (int, float)) and entry["duration_ms"] >= 0
