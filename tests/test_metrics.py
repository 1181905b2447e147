"""GET /api/metrics: off by default, optionally behind a bearer token, counting what operators
watch; and summed over the workers of the production command (prometheus multiprocess mode)."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import conftest
import httpx
import pytest
from conftest import (
    TEST_SECRET,
    Client,
    Database,
    Service,
    free_port,
    login,
    production_command,
    register,
    wait_healthy,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from hecate.app import create_app

TOKEN = "metrics-" + uuid.uuid4().hex

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client: Client | httpx.Client, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/api/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
def metered(start_service: Callable[..., Service]) -> Service:
    return start_service(METRICS_ENABLED="true")


def test_metrics_are_off_by_default(service: Service) -> None:
    response = service.client().get("/api/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert "hecate_" not in response.text


def test_a_metrics_token_is_required_when_set(start_service: Callable[..., Service]) -> None:
    client = start_service(METRICS_ENABLED="true", METRICS_TOKEN=TOKEN).client()

    missing = client.get("/api/metrics")
    assert missing.status_code == 401
    assert missing.json()["code"] == "authentication_required"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "hecate_" not in missing.text

    for wrong in (f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer",
                  TOKEN):
        refused = client.get("/api/metrics", headers={"Authorization": wrong})
        assert refused.status_code == 401, wrong
        assert refused.json()["code"] in {"authentication_required", "invalid_token"}
        assert "hecate_" not in refused.text

    samples = scrape(client, TOKEN)
    assert value(samples, "hecate_requests_total", operation="meta.metrics", status="401") >= 6


def test_metrics_settings_are_checked_at_start(database: Database, db_name: str,
                                              tmp_path: Path) -> None:
    from hecate.core.settings import SettingsError

    with pytest.raises(SettingsError, match="METRICS_TOKEN"):
        conftest.test_settings(database, db_name, METRICS_ENABLED="true",
                               METRICS_TOKEN="short")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(SettingsError, match="PROMETHEUS_MULTIPROC_DIR"):
        conftest.test_settings(database, db_name, METRICS_ENABLED="true",
                               PROMETHEUS_MULTIPROC_DIR=str(not_a_directory))


def test_failed_logins_are_counted(metered: Service) -> None:
    client = metered.client()
    register(client)
    before = scrape(client)
    wrong = 3
    for _ in range(wrong):
        assert login(client, password="not the password").status_code == 401
    assert login(client).status_code == 200
    after = scrape(client)

    assert (value(after, "hecate_login_failures_total")
            - value(before, "hecate_login_failures_total")) == wrong
    assert (value(after, "hecate_requests_total", operation="auth.login", status="401")
            - value(before, "hecate_requests_total", operation="auth.login", status="401")) == wrong
    assert (value(after, "hecate_requests_total", operation="auth.login", status="200")
            - value(before, "hecate_requests_total", operation="auth.login", status="200")) == 1
    latency = ("hecate_request_duration_seconds_count", {"operation": "auth.login"})
    assert (value(after, latency[0], **latency[1])
            - value(before, latency[0], **latency[1])) == wrong + 1


def test_a_rate_limit_hit_is_counted(start_service: Callable[..., Service]) -> None:
    client = start_service(METRICS_ENABLED="true", LIMITER_ATTEMPTS="2").client()
    before = scrape(client)
    statuses = [login(client, email="nobody@example.com", password="guess").status_code
                for _ in range(3)]
    assert statuses == [401, 401, 429]
    after = scrape(client)

    assert (value(after, "hecate_rate_limit_hits_total", limit="login-pair")
            - value(before, "hecate_rate_limit_hits_total", limit="login-pair")) == 1
    assert (value(after, "hecate_requests_total", operation="auth.login", status="429")
            - value(before, "hecate_requests_total", operation="auth.login", status="429")) == 1
    # A refused attempt never reached the password check.
    assert (value(after, "hecate_login_failures_total")
            - value(before, "hecate_login_failures_total")) == 2


def test_requests_are_labelled_by_operation_never_by_path(metered: Service) -> None:
    client = metered.client()
    register(client)
    session_id = "s" + uuid.uuid4().hex
    unknown = "nothing-" + uuid.uuid4().hex
    before = scrape(client)
    assert client.request("DELETE", f"/api/auth/sessions/{session_id}").status_code == 404
    assert client.get(f"/api/{unknown}").status_code == 404
    response = client.get("/api/metrics")
    after = parse(response.text)

    assert session_id not in response.text and unknown not in response.text
    assert (value(after, "hecate_requests_total", operation="auth.end_session", status="404")
            - value(before, "hecate_requests_total", operation="auth.end_session",
                    status="404")) == 1
    assert (value(after, "hecate_requests_total", operation="other", status="404")
            - value(before, "hecate_requests_total", operation="other", status="404")) == 1
    operations = {dict(labels)["operation"] for name, labels in after
                  if name == "hecate_requests_total"}
    assert all(op == "other" or op.startswith(("auth.", "user.", "meta."))
               for op in operations), operations


def test_refresh_token_reuse_is_counted(start_service: Callable[..., Service]) -> None:
    service = start_service(METRICS_ENABLED="true", REFRESH_REUSE_GRACE="0")
    client = service.client()
    register(client)
    stolen = client.cookie("refresh")
    assert client.post("/api/auth/refresh", json={}).status_code == 200
    before = scrape(client)
    thief = service.client()
    thief.set_cookie("refresh", stolen or "", "/api/auth")
    replay = thief.post("/api/auth/refresh", json={})
    assert replay.status_code == 401 and replay.json()["code"] == "token_reused"
    after = scrape(client)
    assert (value(after, "hecate_refresh_token_reuse_total")
            - value(before, "hecate_refresh_token_reuse_total")) == 1


def test_mail_failures_are_counted(start_service: Callable[..., Service]) -> None:
    # Nothing listens on the SMTP port: the verification mail fails (and so does registering).
    client = start_service(METRICS_ENABLED="true", MAIL_TRANSPORT="smtp", SMTP_HOST="127.0.0.1",
                           SMTP_PORT=str(free_port()), SMTP_SECURITY="none",
                           SMTP_TIMEOUT="2").client()
    before = scrape(client)
    response = client.post("/api/user/register", json={
        "username": "alice1", "email": "alice@example.com", "password": "correct horse battery"})
    assert response.status_code == 503 and response.json()["code"] == "mail_unavailable"
    after = scrape(client)
    assert (value(after, "hecate_mail_failures_total", template="verify_email")
            - value(before, "hecate_mail_failures_total", template="verify_email")) == 1


def test_database_errors_are_counted(database: Database, db_name: str) -> None:
    """A database that does not answer: 503, counted (the next test's app reconnects)."""
    closed = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    settings = conftest.test_settings(database, db_name, METRICS_ENABLED="true",
                                      MONGODB_URL=closed, MONGODB_TIMEOUT_MS="300")
    app = create_app(settings)
    try:
        with app.test_client() as client:
            before = parse(client.get("/api/metrics").text)
            response = client.get("/api/health")
            assert response.status_code == 503
            assert response.json()["code"] == "service_unavailable"
            after = parse(client.get("/api/metrics").text)
    finally:
        app.services.close()
    assert (value(after, "hecate_database_errors_total", store="database")
            - value(before, "hecate_database_errors_total", store="database")) == 1
    assert (value(after, "hecate_requests_total", operation="meta.health", status="503")
            - value(before, "hecate_requests_total", operation="meta.health", status="503")) == 1


# --- The production command, two workers ---------------------------------------------------------


@pytest.fixture
def two_workers(database: Database, db_name: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = {"PATH": "/usr/bin:/bin", "MONGODB_URL": database.url, "MONGODB_NAME": db_name,
           "JWT_SECRET": TEST_SECRET, "APP_URL": "http://localhost:4200",
           "MAIL_TRANSPORT": "console", "LOG_LEVEL": "warning", "WEB_CONCURRENCY": "2",
           "LIMITER_ENABLED": "false", "METRICS_ENABLED": "true", "METRICS_TOKEN": TOKEN,
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(production_command(port), cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base_url, log_path)
        yield base_url, metrics_dir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def per_worker_login_failures(metrics_dir: Path) -> dict[str, float]:
    """Each worker's own count, from its own file (counter_<pid>.db)."""
    found = {}
    for path in metrics_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)], accumulate=False)
        found[path.stem] = sum(s.value for family in merged for s in family.samples
                               if s.name == "hecate_login_failures_total")
    return found


def test_two_workers_report_the_sum_of_both(two_workers: tuple[str, Path]) -> None:
    base_url, metrics_dir = two_workers

    def guess(_: int) -> int:
        # A new connection each time, so that both workers accept some.
        with httpx.Client(base_url=base_url, timeout=30) as http:
            return http.post("/api/auth/login", json={"email": "nobody@example.com",
                                                      "password": "guess"}).status_code

    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.get("/api/metrics").status_code == 401
        before = scrape(http, TOKEN)
    sent = 0
    with ThreadPoolExecutor(max_workers=6) as pool:
        # Until each worker has refused some (the kernel picks the worker of a connection).
        while sent < 300:
            assert set(pool.map(guess, range(24))) == {401}
            sent += 24
            counts = per_worker_login_failures(metrics_dir)
            if len([c for c in counts.values() if c > 0]) >= 2:
                break
    counts = per_worker_login_failures(metrics_dir)
    assert len([c for c in counts.values() if c > 0]) == 2, counts

    # Whichever worker answers the scrape, it reports both workers' counts, summed.
    for _ in range(6):
        with httpx.Client(base_url=base_url, timeout=30) as http:
            after = scrape(http, TOKEN)
        assert (value(after, "hecate_login_failures_total")
                - value(before, "hecate_login_failures_total")) == sent
        assert (value(after, "hecate_requests_total", operation="auth.login", status="401")
                - value(before, "hecate_requests_total", operation="auth.login",
                        status="401")) == sent
        assert (value(after, "hecate_request_duration_seconds_count", operation="auth.login")
                - value(before, "hecate_request_duration_seconds_count",
                        operation="auth.login")) == sent
