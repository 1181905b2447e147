"""The serverless entry points.

Google Cloud Functions: main.py served by a real functions-framework process (gunicorn, WSGI mode)
must answer exactly as `hecate serve`'s uvicorn does: the same requests go to both, on the same
database, and status codes, bodies, CORS and security headers and cookie attributes are compared.

AWS Lambda: hecate.serverless.lambda_handler is called in-process with events in the formats API
Gateway (HTTP API v2, REST API v1) and Lambda Function URLs send, and a context object like the
runtime's.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mongoengine
import pytest
from conftest import (
    PASSWORD,
    ROOT,
    TEST_SECRET,
    Client,
    Database,
    Service,
    free_port,
    parse_set_cookie,
    production_command,
    wait_healthy,
)

from hecate import serverless
from hecate.core import models

APP_ORIGIN = "http://localhost:4200"
EVIL = "https://evil.example"

# --- Google Cloud Functions: functions-framework next to uvicorn -------------------------------


def function_env(database: Database, db_name: str, **env: str) -> dict[str, str]:
    """The process environment of a deployed function: the platform's basics and our settings."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    return {**keep, "MONGODB_URL": database.url, "MONGODB_NAME": db_name,
            "JWT_SECRET": TEST_SECRET, "APP_URL": APP_ORIGIN, "MAIL_TRANSPORT": "console",
            "LOG_LEVEL": "warning", "MONGODB_TIMEOUT_MS": "3000", **env}


@dataclass
class FunctionServer:
    """`functions-framework --target hecate --source main.py` as a separate process."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/api/health") -> FunctionServer:
        command = str(Path(sys.executable).with_name("functions-framework"))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [command, "--target", "hecate", "--source", str(ROOT / "main.py"),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"functions-framework exited:\n{self.log()}")
            try:
                # The first request builds the app (after gunicorn's fork).
                if httpx.get(self.base_url + ready_path, timeout=30).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"functions-framework did not answer within 60 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def start_function(database: Database, db_name: str,
                   tmp_path: Path) -> Iterator[Callable[..., FunctionServer]]:
    started: list[FunctionServer] = []

    def start(**env: str) -> FunctionServer:
        server = FunctionServer(function_env(database, db_name, **env),
                                tmp_path / f"function-{len(started)}.log")
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


Exchange = tuple[str, httpx.Response]


def scenario(base_url: str, tag: str) -> list[Exchange]:
    """An SPA's session and a few hostile or clumsy requests, as (label, response) pairs. ``tag``
    names this run's account, so two runs on one database do not meet."""
    spa = Client(base_url, origin=APP_ORIGIN)
    anon = Client(base_url)
    account = {"username": tag, "email": f"{tag}@example.com", "password": PASSWORD}
    register = "/api/user/register"
    json_type = {"Content-Type": "application/json"}
    out: list[Exchange] = []
    try:
        out.append(("register", spa.post(register, json=account)))
        spa.jar.clear()
        out.append(("register: invalid body", spa.post(
            register, json={"username": "x", "email": "not an address", "password": "short"})))
        out.append(("register: missing field", spa.post(register, json={"username": tag})))
        out.append(("register: unknown field", spa.post(register, json={**account,
                                                                         "admin": True})))
        out.append(("register: wrong content type", spa.post(
            register, content=b"username=x&email=y", headers={
                "Content-Type": "application/x-www-form-urlencoded"})))
        out.append(("register: malformed JSON", spa.post(register, content=b'{"username":',
                                                         headers=json_type)))
        out.append(("register: empty body", spa.post(register, content=b"",
                                                     headers=json_type)))
        big = json.dumps({**account, "padding": "x" * 70 * 1024}).encode()
        out.append(("register: 70 KB body", spa.post(register, content=big, headers=json_type)))
        out.append(("register: taken", spa.post(register, json=account)))
        out.append(("user: no cookies", anon.get("/api/user")))
        out.append(("refresh: no cookie", anon.post("/api/auth/refresh")))
        out.append(("logout: no cookie", anon.post("/api/auth/logout")))
        out.append(("login: wrong password", spa.post("/api/auth/login", json={
            "email": account["email"], "password": "not the password at all"})))
        out.append(("login", spa.post("/api/auth/login", json={
            "email": account["email"], "password": PASSWORD, "rememberMe": True})))
        out.append(("user: with cookies", spa.get("/api/user")))
        out.append(("user: garbage cookie", anon.get("/api/user", headers={
            "Cookie": "access=not.a.jwt"})))
        out.append(("refresh", spa.post("/api/auth/refresh")))
        for label, origin in (("allowed", APP_ORIGIN), ("foreign", EVIL)):
            out.append((f"preflight: {label} origin", anon.request(
                "OPTIONS", "/api/auth/login", headers={
                    "Origin": origin, "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type"})))
        out.append(("GET: foreign origin", spa.get("/api/user", headers={"Origin": EVIL})))
        out.append(("POST: foreign origin", spa.post("/api/auth/logout",
                                                     headers={"Origin": EVIL})))
        out.append(("unknown path", anon.get("/api/nothing/here")))
        out.append(("wrong method", anon.request("DELETE", "/api/auth/login")))
        out.append(("logout", spa.post("/api/auth/logout")))
        out.append(("user: after logout", spa.get("/api/user")))
        out.append(("health", anon.get("/api/health")))
    finally:
        spa.close()
        anon.close()
    return out


COMPARED_HEADERS = (
    "content-type", "cache-control", "vary", "access-control-allow-origin",
    "access-control-allow-credentials", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-max-age", "access-control-expose-headers",
    "x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy",
    "retry-after", "x-ratelimit-limit",
)
VOLATILE = {"id", "requestId", "createdAt", "lastUsedAt", "expiresAt", "date"}


def normalized(value: Any, tag: str) -> Any:
    if isinstance(value, dict):
        return {k: "<volatile>" if k in VOLATILE else normalized(v, tag)
                for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v, tag) for v in value]
    if isinstance(value, str):
        return value.replace(tag, "<account>")
    return value


def cookies_of(response: httpx.Response) -> dict[str, dict[str, str]]:
    """Set-Cookie by name: attributes without the value and the absolute expiry; Max-Age rounded
    (a refresh cookie's lifetime is counted down from its session's expiry)."""
    found = {}
    for raw in response.headers.get_list("set-cookie"):
        attrs = parse_set_cookie(raw)
        attrs.pop("value")
        attrs.pop("expires", None)
        if attrs["max-age"] not in {"", "0"}:
            attrs["max-age"] = str(round(int(attrs["max-age"]) / 60))
        found[attrs.pop("name")] = attrs
    return found


def summary(response: httpx.Response, tag: str) -> dict[str, Any]:
    if "json" in response.headers.get("content-type", ""):
        body: Any = normalized(response.json(), tag)
    else:
        body = response.text.replace(tag, "<account>")
    return {
        "status": response.status_code,
        "body": body,
        "headers": {h: response.headers.get(h) for h in COMPARED_HEADERS},
        "cookies": cookies_of(response),
    }


def test_the_function_answers_as_the_server_does(
        start_service: Callable[..., Service],
        start_function: Callable[..., FunctionServer]) -> None:
    server = start_service()
    function = start_function()
    server_tag, function_tag = (f"u{uuid.uuid4().hex[:10]}" for _ in range(2))

    expected = [(label, summary(r, server_tag))
                for label, r in scenario(server.base_url, server_tag)]
    got = [(label, summary(r, function_tag))
           for label, r in scenario(function.base_url, function_tag)]

    for (label, want), (_, have) in zip(expected, got, strict=True):
        assert have == want, label
    # The scenario means something: it saw the answers it was written for.
    statuses = {label: s["status"] for label, s in expected}
    assert statuses["register"] == 201 and statuses["login"] == 200
    assert statuses["refresh"] == 200 and statuses["user: with cookies"] == 200
    assert statuses["register: 70 KB body"] == 413
    assert statuses["register: wrong content type"] == 415
    assert statuses["register: unknown field"] == 400
    assert statuses["user: no cookies"] == 401 and statuses["refresh: no cookie"] == 401
    assert statuses["POST: foreign origin"] == 403
    assert statuses["preflight: allowed origin"] == 200
    assert statuses["preflight: foreign origin"] == 400
    login = dict(expected)["login"]
    assert {"access", "refresh"} <= login["cookies"].keys()


def test_a_chunked_body_reaches_the_function(
        start_function: Callable[..., FunctionServer]) -> None:
    function = start_function()
    account = {"username": "chunky1", "email": "chunky@example.com", "password": PASSWORD}

    def chunks(data: bytes) -> Iterator[bytes]:
        yield data[:10]
        yield data[10:]

    with httpx.Client(base_url=function.base_url, timeout=30) as http:
        ok = http.post("/api/user/register", content=chunks(json.dumps(account).encode()),
                       headers={"Content-Type": "application/json"})
        big = json.dumps({**account, "padding": "x" * 70 * 1024}).encode()
        too_big = http.post("/api/user/register", content=chunks(big),
                            headers={"Content-Type": "application/json"})
    assert ok.status_code == 201, ok.text
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "payload_too_large"


def test_a_function_behind_a_path_prefix(start_function: Callable[..., FunctionServer]) -> None:
    """A cloudfunctions.net URL carries the function's name (/hecate/api/...). Whether or not the
    platform strips it from the path, routes answer, and the refresh cookie's Path is the one the
    browser sees."""
    function = start_function(PUBLIC_BASE_PATH="/hecate")
    spa = Client(function.base_url, origin=APP_ORIGIN)
    try:
        account = {"username": "prefix1", "email": "prefix@example.com", "password": PASSWORD}
        assert spa.post("/api/user/register", json=account).status_code == 201  # stripped
        login = spa.post("/hecate/api/auth/login", json={  # as the browser sent it
            "email": account["email"], "password": PASSWORD})
        assert login.status_code == 200, login.text
        paths = {parse_set_cookie(raw)["name"]: parse_set_cookie(raw)["path"]
                 for raw in login.headers.get_list("set-cookie")}
        assert paths["refresh"] == "/hecate/api/auth"
        assert paths["access"] == "/"
        refreshed = spa.post("/hecate/api/auth/refresh")
        assert refreshed.status_code == 200, refreshed.text
        assert spa.get("/hecate/api/user").json()["user"]["username"] == "prefix1"
    finally:
        spa.close()


# --- AWS Lambda: events in, responses out -----------------------------------------------------


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as the handler's second argument."""

    function_name: str = "hecate"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:hecate"
    memory_limit_in_mb: int = 128
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/hecate"
    log_stream_name: str = "2026/11/26/[$LATEST]0123456789abcdef0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


HTTP_API_DOMAIN = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
FUNCTION_URL_DOMAIN = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws"
SOURCE_IP = "203.0.113.7"


def _body(body: Any, base64_body: bool) -> tuple[str | None, int]:
    if body is None:
        return None, 0
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (base64.b64encode(raw).decode() if base64_body else raw.decode()), len(raw)


def v2_event(method: str, path: str, body: Any = None, *, cookies: list[str] | None = None,
             headers: dict[str, str] | None = None, domain: str = HTTP_API_DOMAIN,
             stage: str = "$default", query: str = "", base64_body: bool = False,
             content_length: bool = True) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) or Function URL event. Header names come lower
    case; cookies come apart from the headers; a named stage is part of rawPath."""
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    text, length = _body(body, base64_body)
    all_headers = {
        "accept": "application/json", "accept-encoding": "gzip, deflate, br",
        "host": domain, "origin": APP_ORIGIN, "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "x-amzn-trace-id": "Root=1-6745f2a1-0123456789abcdef01234567",
        "x-forwarded-for": SOURCE_IP, "x-forwarded-port": "443", "x-forwarded-proto": "https",
    }
    if body is not None:
        all_headers["content-type"] = "application/json"
        if content_length:
            all_headers["content-length"] = str(length)
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012" if domain == HTTP_API_DOMAIN else "anonymous",
            "apiId": domain.split(".")[0],
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": SOURCE_IP, "userAgent": all_headers["user-agent"]},
            "requestId": "Kx1a2jX9joEEMyQ=",
            "routeKey": "$default",
            "stage": stage,
            "time": "26/Nov/2026:18:00:00 +0000",
            "timeEpoch": 1795716000000,
        },
        "isBase64Encoded": base64_body,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if text is not None:
        event["body"] = text
    return event


def v1_event(method: str, path: str, body: Any = None, *, cookie: str | None = None,
             stage: str = "prod", event_path: str | None = None) -> dict[str, Any]:
    """An API Gateway REST API proxy event (ANY /{proxy+}). ``path`` is the resource path: the stage
    the client put in front of it is only in requestContext.path."""
    text, length = _body(body, False)
    headers = {"Accept": "application/json", "Host": "a1b2c3d4e5.execute-api.eu-west-1"
               ".amazonaws.com", "Origin": APP_ORIGIN, "User-Agent": "Mozilla/5.0",
               "X-Forwarded-For": SOURCE_IP, "X-Forwarded-Port": "443",
               "X-Forwarded-Proto": "https"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(length)
    if cookie:
        headers["Cookie"] = cookie
    return {
        "resource": "/{proxy+}",
        "path": event_path or path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": "/{proxy+}", "httpMethod": method,
            "extendedRequestId": "Kx1a2jX9joEEMyQ=", "requestTime": "26/Nov/2026:18:00:00 +0000",
            "path": f"/{stage}{path}", "accountId": "123456789012", "protocol": "HTTP/1.1",
            "stage": stage, "domainPrefix": "a1b2c3d4e5", "requestTimeEpoch": 1795716000000,
            "requestId": str(uuid.uuid4()), "domainName": headers["Host"], "apiId": "a1b2c3d4e5",
            "identity": {"sourceIp": SOURCE_IP, "userAgent": "Mozilla/5.0", "accessKey": None,
                         "accountId": None, "caller": None, "user": None, "userArn": None},
        },
        "body": text,
        "isBase64Encoded": False,
    }


@pytest.fixture
def lambda_env(database: Database, db_name: str,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """The function's environment variables; the process's app is forgotten before and after, as
    for a new container."""
    def configure(**extra: str) -> None:
        for name in ("PUBLIC_BASE_PATH", "COOKIE_PREFIX", "TRUSTED_PROXIES", "CORS_ORIGINS",
                     "HECATE_DEV", "ERROR_FORMAT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in function_env(database, db_name, **extra).items():
            monkeypatch.setenv(name, value)

    serverless._reset()
    configure()
    yield configure
    serverless._reset()


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    response = serverless.lambda_handler(event, LambdaContext())
    json.dumps(response)  # what the runtime does with it
    return response


def v2_cookies(response: dict[str, Any]) -> dict[str, dict[str, str]]:
    assert "set-cookie" not in {k.lower() for k in response.get("headers") or {}}
    return {c["name"]: c for c in map(parse_set_cookie, response.get("cookies", []))}


def problem(response: dict[str, Any]) -> dict[str, Any]:
    assert response["isBase64Encoded"] is False
    assert response["headers"]["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response["body"])
    return body


ACCOUNT = {"username": "lambda1", "email": "lambda@example.com", "password": PASSWORD}


@pytest.mark.parametrize("domain", [HTTP_API_DOMAIN, FUNCTION_URL_DOMAIN],
                         ids=["http-api", "function-url"])
def test_sign_in_and_refresh_through_v2_events(lambda_env: Callable[..., None],
                                               domain: str) -> None:
    registered = invoke(v2_event("POST", "/api/user/register", ACCOUNT, domain=domain))
    assert registered["statusCode"] == 201, registered
    assert json.loads(registered["body"])["user"]["username"] == "lambda1"

    login = invoke(v2_event("POST", "/api/auth/login", {
        "email": ACCOUNT["email"], "password": PASSWORD}, domain=domain))
    assert login["statusCode"] == 200, login
    cookies = v2_cookies(login)
    assert {"access", "refresh"} <= cookies.keys()
    assert cookies["refresh"]["path"] == "/api/auth" and cookies["access"]["path"] == "/"
    assert {"secure", "httponly"} <= cookies["refresh"].keys()
    assert cookies["refresh"]["samesite"] == "None"
    assert login["headers"]["access-control-allow-origin"] == APP_ORIGIN

    # The browser sends back what it keeps: API Gateway hands it over as the event's `cookies`.
    jar = [f"{name}={c['value']}" for name, c in cookies.items()]
    user = invoke(v2_event("GET", "/api/user", cookies=jar, domain=domain))
    assert user["statusCode"] == 200, user
    assert json.loads(user["body"])["user"]["email"] == ACCOUNT["email"]

    refreshed = invoke(v2_event("POST", "/api/auth/refresh", cookies=jar, domain=domain,
                                headers={"content-type": "application/json"}))
    assert refreshed["statusCode"] == 200, refreshed
    rotated = v2_cookies(refreshed)
    assert {"access", "refresh"} <= rotated.keys()
    assert rotated["refresh"]["value"] != cookies["refresh"]["value"]


def test_error_bodies_are_readable_problem_json(lambda_env: Callable[..., None]) -> None:
    invalid = invoke(v2_event("POST", "/api/user/register", {"username": "x"}))
    assert invalid["statusCode"] == 400
    assert problem(invalid)["code"] == "validation_failed"

    unsigned = invoke(v2_event("GET", "/api/user"))
    assert unsigned["statusCode"] == 401
    assert problem(unsigned)["code"] == "authentication_required"

    no_refresh = invoke(v2_event("POST", "/api/auth/refresh",
                                 headers={"content-type": "application/json"}))
    assert no_refresh["statusCode"] == 401
    assert problem(no_refresh)["status"] == 401

    foreign = invoke(v2_event("POST", "/api/auth/login", {"email": "a@example.com",
                                                          "password": PASSWORD},
                              headers={"origin": EVIL}))
    assert foreign["statusCode"] == 403
    assert problem(foreign)["code"] == "origin_not_allowed"

    big = invoke(v2_event("POST", "/api/user/register", {**ACCOUNT, "pad": "x" * 70 * 1024}))
    assert big["statusCode"] == 413
    assert problem(big)["code"] == "payload_too_large"

    missing = invoke(v2_event("GET", "/api/nothing/here"))
    assert missing["statusCode"] == 404
    assert problem(missing)["code"] == "not_found"


def test_a_preflight_through_a_v2_event(lambda_env: Callable[..., None]) -> None:
    preflight = invoke(v2_event("OPTIONS", "/api/auth/login", headers={
        "access-control-request-method": "POST", "access-control-request-headers": "content-type"}))
    assert preflight["statusCode"] == 200
    assert preflight["headers"]["access-control-allow-origin"] == APP_ORIGIN
    assert preflight["headers"]["access-control-allow-credentials"] == "true"


def test_bodies_without_content_length_or_in_base64(lambda_env: Callable[..., None]) -> None:
    """Connexion decides from Content-Length whether there is a body; an event need not carry
    it, and binary-media settings make API Gateway send bodies base64-encoded."""
    plain = invoke(v2_event("POST", "/api/user/register", ACCOUNT, content_length=False))
    assert plain["statusCode"] == 201, plain
    encoded = invoke(v2_event("POST", "/api/auth/login", {
        "email": ACCOUNT["email"], "password": PASSWORD}, base64_body=True, content_length=False))
    assert encoded["statusCode"] == 200, encoded


def test_a_warm_container_reuses_the_app_and_its_database_client(
        lambda_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    import hecate.app

    built: list[object] = []
    indexed: list[object] = []
    real_create_app, real_ensure_indexes = hecate.app.create_app, models.ensure_indexes

    def counting_create_app(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return real_create_app(*args, **kwargs)

    def counting_ensure_indexes() -> None:
        indexed.append(True)
        real_ensure_indexes()

    monkeypatch.setattr(hecate.app, "create_app", counting_create_app)
    monkeypatch.setattr(models, "ensure_indexes", counting_ensure_indexes)

    clients, apps = [], []
    for event in (v2_event("GET", "/api/health"),
                  v2_event("POST", "/api/user/register", ACCOUNT),
                  v2_event("POST", "/api/auth/login", {"email": ACCOUNT["email"],
                                                       "password": PASSWORD}),
                  v2_event("GET", "/api/health")):
        assert invoke(event)["statusCode"] in {200, 201}
        clients.append(mongoengine.connection.get_connection(models.ALIAS))
        apps.append(serverless.served().connexion_app)
    assert len(built) == 1 and len(indexed) == 1
    assert all(client is clients[0] for client in clients)
    assert all(app is apps[0] for app in apps)

    # A new container (here: a reset) builds anew.
    serverless._reset()
    assert invoke(v2_event("GET", "/api/health"))["statusCode"] == 200
    assert len(built) == 2


def test_a_cold_start_without_the_database_still_answers(
        lambda_env: Callable[..., None]) -> None:
    """Building the indexes fails (logged); the function answers 503 rather than crashing."""
    lambda_env(MONGODB_URL=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
               MONGODB_TIMEOUT_MS="200")
    health = invoke(v2_event("GET", "/api/health"))
    assert health["statusCode"] == 503
    assert problem(health)["code"] == "service_unavailable"


def test_a_rest_api_stage_lines_up_with_public_base_path(
        lambda_env: Callable[..., None]) -> None:
    """REST API: the browser calls /prod/api/...; the event's path (what Mangum routes on) is
    /api/... without the stage. With PUBLIC_BASE_PATH=/prod the routes answer and the refresh
    cookie's Path is /prod/api/auth, the path the browser will send it to."""
    lambda_env(PUBLIC_BASE_PATH="/prod")
    registered = invoke(v1_event("POST", "/api/user/register", ACCOUNT))
    assert registered["statusCode"] == 201, registered

    login = invoke(v1_event("POST", "/api/auth/login", {"email": ACCOUNT["email"],
                                                        "password": PASSWORD}))
    assert login["statusCode"] == 200, login
    raw_cookies = login["multiValueHeaders"]["set-cookie"]
    cookies = {c["name"]: c for c in map(parse_set_cookie, raw_cookies)}
    assert {"access", "refresh"} <= cookies.keys()
    assert cookies["refresh"]["path"] == "/prod/api/auth"
    assert cookies["access"]["path"] == "/"

    header = "; ".join(f"{name}={c['value']}" for name, c in cookies.items())
    refreshed = invoke(v1_event("POST", "/api/auth/refresh", {}, cookie=header))
    assert refreshed["statusCode"] == 200, refreshed
    assert len(refreshed["multiValueHeaders"]["set-cookie"]) == 2

    # A custom domain's base path mapping leaves the prefix in the path: it is not doubled.
    mapped = invoke(v1_event("GET", "/api/user", cookie=header,
                             event_path="/prod/api/user"))
    assert mapped["statusCode"] == 200, mapped

    unsigned = invoke(v1_event("GET", "/api/user"))
    assert unsigned["statusCode"] == 401
    assert unsigned["isBase64Encoded"] is False
    assert json.loads(unsigned["body"])["code"] == "authentication_required"


def test_an_http_api_named_stage_lines_up_with_public_base_path(
        lambda_env: Callable[..., None]) -> None:
    """HTTP API: a named stage stays in rawPath (/prod/api/...)."""
    lambda_env(PUBLIC_BASE_PATH="/prod")
    assert invoke(v2_event("POST", "/api/user/register", ACCOUNT,
                           stage="prod"))["statusCode"] == 201
    login = invoke(v2_event("POST", "/api/auth/login", {"email": ACCOUNT["email"],
                                                        "password": PASSWORD}, stage="prod"))
    assert login["statusCode"] == 200, login
    cookies = v2_cookies(login)
    assert cookies["refresh"]["path"] == "/prod/api/auth"
    jar = [f"{name}={c['value']}" for name, c in cookies.items()]
    refreshed = invoke(v2_event("POST", "/api/auth/refresh", {}, cookies=jar, stage="prod"))
    assert refreshed["statusCode"] == 200, refreshed


# --- The container's production command ---------------------------------------------------------


def test_the_production_command_serves_and_drains_on_sigterm(
        database: Database, db_name: str, tmp_path: Path) -> None:
    """The Dockerfile's uvicorn command, two workers from WEB_CONCURRENCY: it serves, and on
    SIGTERM a request still in flight (its body still arriving) is answered before it exits."""
    import signal
    import threading

    port = free_port()
    command = production_command(port)
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                   env=function_env(database, db_name, WEB_CONCURRENCY="2"))
    try:
        wait_healthy(process, base_url, log_path)

        body = json.dumps({"username": "drain1", "email": "drain@example.com",
                           "password": PASSWORD}).encode()
        sent_first_part = threading.Event()
        answer: list[httpx.Response] = []

        def trickle() -> Iterator[bytes]:
            yield body[:5]
            sent_first_part.set()
            time.sleep(1.5)
            yield body[5:]

        def register() -> None:
            answer.append(httpx.post(base_url + "/api/user/register", content=trickle(),
                                     headers={"Content-Type": "application/json"}, timeout=30))

        in_flight = threading.Thread(target=register)
        in_flight.start()
        assert sent_first_part.wait(10)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        in_flight.join(30)
        assert answer and answer[0].status_code == 201, (answer, log_path.read_text())
        assert process.wait(20) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
