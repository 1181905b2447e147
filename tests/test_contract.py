"""Contract fuzzing with Schemathesis against the running service: real HTTP, real database, mail
over SMTP to the test's inbox.

test_schemathesis_run: `st run` (examples, coverage and fuzzing phases, every check, ours too) on
every operation of /api/openapi.json, as served. Cookies come from tests/contract_hooks.py (a user
registered through the service; registered anew when the fuzzer ends its session).

test_stateful_sign_in_flow: Schemathesis' state machine over register -> login -> refresh ->
logout and what a signed-in user can do, with OpenAPI links defined here, in Python, on the loaded
spec (openapi.yaml carries none). Each scenario keeps the cookies it is given, as a browser does,
so a refresh uses the refresh token of the login before it.

Rate limits are off (logins would be 429s otherwise) and mail answers are not padded. The runs
are bounded and deterministic: derandomized generation, no example database, one worker, a fresh
database per test (and per stateful scenario).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from conftest import Inbox, Service, parse_set_cookie
from contract_hooks import declared_400
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NOT_SET

HERE = Path(__file__).resolve().parent
HOOKS = HERE / "contract_hooks.py"

EXAMPLES_PER_OPERATION = 50
STATEFUL_SCENARIOS = 200

POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

# Shared by both tests. Positive data acceptance (a schema-valid request must not get a 4xx) also
# takes, per operation, the declared answers that depend on state the schema cannot describe, and
# nothing more. No operation is in two groups that set the same check.
CONFIG = f"""
workers = 1

[cache]
enabled = false

[generation]
deterministic = true
database = "none"
max-examples = {EXAMPLES_PER_OPERATION}

[checks]
enabled = true

# Fail, not just warn, when the secured operations never get past 401/403 (the auth provider
# is broken) or when rate limits answer (the service is not configured for fuzzing).
[warnings]
fail-on = ["missing_auth", "rate_limited"]

# Generated data carries no valid credentials for these: an unknown email and password (login), a
# wrong confirming password (403). Their success paths are walked by the stateful test.
[[operations]]
include-operation-id = [
    "hecate.handlers.auth.login",
    "hecate.handlers.user.change_password",
    "hecate.handlers.user.change_email",
    "hecate.handlers.user.delete",
]
warnings.fail-on = ["rate_limited"]

# A token of the right shape that the service never mailed: 410 link_invalid.
[[operations]]
include-operation-id = [
    "hecate.handlers.auth.magic_login",
    "hecate.handlers.user.verify_email",
    "hecate.handlers.user.cancel_email_change",
]
checks.positive_data_acceptance.expected-statuses = {json.dumps(POSITIVE_DEFAULT + ["410"])}

# The same, and a new password the policy refuses: 400 weak_password (contract_hooks.declared_400
# makes sure a 400 here is nothing else).
[[operations]]
include-operation-id = "hecate.handlers.user.reset_password"
checks.positive_data_acceptance.expected-statuses = {json.dumps(POSITIVE_DEFAULT + ["410", "400"])}

# 400 weak_password (a common password, or the email or username) and, for the email change,
# email_unchanged; checked by contract_hooks.declared_400 as well.
[[operations]]
include-operation-id = [
    "hecate.handlers.user.register",
    "hecate.handlers.user.change_password",
    "hecate.handlers.user.change_email",
]
checks.positive_data_acceptance.expected-statuses = {json.dumps(POSITIVE_DEFAULT + ["400"])}

# Optional body (or, for DELETE, none), sent without Content-Type: application/json: 415
# unsupported_media_type (the CSRF defence: "with a body of {{}} if there is nothing to send").
[[operations]]
include-operation-id = [
    "hecate.handlers.auth.refresh",
    "hecate.handlers.auth.logout",
    "hecate.handlers.auth.invalidate",
    "hecate.handlers.auth.end_session",
]
checks.positive_data_acceptance.expected-statuses = {json.dumps(POSITIVE_DEFAULT + ["415"])}
"""


@pytest.fixture
def fuzz_service(start_service: Callable[..., Service], inbox: Inbox) -> Service:
    """Rate limits off, mail answers not padded, mail delivered over SMTP to the test's inbox,
    metrics on (so that /metrics answers 200 and its text format is checked too)."""
    return start_service(**{**inbox.env(), "LIMITER_ENABLED": "false",
                            "MAIL_RESPONSE_MIN_MS": "0", "METRICS_ENABLED": "true"})


def test_schemathesis_run(fuzz_service: Service, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "NO_COLOR": "1", "COLUMNS": "120"}
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{fuzz_service.base_url}{fuzz_service.settings.api_path}/openapi.json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "30",
    ]
    # cwd: Schemathesis and Hypothesis leave their directories there.
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=240, check=False)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    # Every operation of the spec was tested (none filtered out, none skipped as untestable).
    total = re.search(r"Operations:\s+(\d+) selected / (\d+) total", report)
    tested = re.search(r"Tested:\s+(\d+)", report)
    assert total and tested and total[1] == total[2] == tested[1], report


# --- Stateful ----------------------------------------------------------------------------------

AUTH = "hecate.handlers.auth."
USER = "hecate.handlers.user."


def link(operation: str, **body: str) -> dict[str, Any]:
    definition: dict[str, Any] = {"operationId": operation}
    if body:
        definition["requestBody"] = body
    return definition


def session_links(password_from: str) -> dict[str, dict[str, Any]]:
    """What a signed-in browser can do next; the password travels on from the request that
    signed in (so password change, email change and delete can succeed)."""
    return {
        "Me": link(USER + "me"),
        "Sessions": link(AUTH + "list_sessions"),
        "Refresh": link(AUTH + "refresh"),
        "Logout": link(AUTH + "logout"),
        "Invalidate": link(AUTH + "invalidate"),
        "ChangePassword": link(USER + "change_password", oldPassword=password_from),
        "ChangeEmail": link(USER + "change_email", password=password_from),
        "Delete": link(USER + "delete", password=password_from),
    }


def add_links(spec: dict[str, Any]) -> None:
    def links(path: str, method: str, status: str, definitions: dict[str, Any]) -> None:
        response = spec["paths"][path][method]["responses"][status]
        response.setdefault("links", {}).update(definitions)

    links("/user/register", "post", "201", {
        "Login": link(AUTH + "login", email="$request.body#/email",
                      password="$request.body#/password"),
        **session_links("$request.body#/password"),
    })
    links("/auth/login", "post", "200", session_links("$request.body#/password"))
    after_refresh = session_links("$request.body#/password")
    for name in ("ChangePassword", "ChangeEmail", "Delete"):  # no password in a refresh
        after_refresh.pop(name)
    links("/auth/refresh", "post", "200", after_refresh)
    links("/user/password/change", "put", "200", {
        **after_refresh,
        "ChangePasswordAgain": link(USER + "change_password",
                                    oldPassword="$request.body#/newPassword"),
    })
    links("/auth/sessions", "get", "200", {
        "EndSession": {"operationId": AUTH + "end_session",
                       "parameters": {"id": "$response.body#/sessions/0/id"}},
    })
    signed_out = {"Me": link(USER + "me"), "Refresh": link(AUTH + "refresh")}
    for path, method in (("/auth/logout", "post"), ("/auth/invalidate", "post"),
                         ("/user/delete", "put")):
        links(path, method, "200", signed_out)


class Jar:
    """Cookies by name with their Path, as a browser keeps them for this origin."""

    def __init__(self) -> None:
        self.cookies: dict[str, tuple[str, str]] = {}

    def update(self, set_cookie_headers: list[str]) -> None:
        for raw in set_cookie_headers:
            attrs = parse_set_cookie(raw)
            if attrs["max-age"] == "0":
                self.cookies.pop(attrs["name"], None)
            else:
                self.cookies[attrs["name"]] = (attrs["value"], attrs.get("path") or "/")

    def for_path(self, path: str) -> dict[str, str]:
        return {name: value for name, (value, cookie_path) in self.cookies.items()
                if path == cookie_path or path.startswith(cookie_path.rstrip("/") + "/")}


def test_stateful_sign_in_flow(fuzz_service: Service, mongo: Any) -> None:
    api_path = fuzz_service.settings.api_path
    spec = httpx.get(f"{fuzz_service.base_url}{api_path}/openapi.json").json()
    add_links(spec)
    settings = tomllib.loads(CONFIG)
    settings["base-url"] = fuzz_service.base_url + api_path
    schema = schemathesis.openapi.from_dict(spec, config=SchemathesisConfig.from_dict(settings))
    current: dict[str, Jar] = {}

    # The scenario's cookies go in through Schemathesis' auth mechanism: a case carrying them
    # counts as authenticated, so ignored_auth probes without them instead of crying wolf.
    @schema.auth(refresh_interval=None)
    class ScenarioCookies:
        def get(self, case: Any, ctx: Any) -> dict[str, str] | None:
            return current["jar"].for_path(api_path + case.path) or None

        def set(self, case: Any, data: dict[str, str], ctx: Any) -> None:
            case.cookies = {**(case.cookies or {}), **data}
            if case.method.upper() == "DELETE" and case.body is NOT_SET:
                # As SPAs do (and the CSRF check requires): a bodiless DELETE is sent as JSON.
                case.headers = {**(case.headers or {}), "Content-Type": "application/json"}

    seen: dict[tuple[str, int], int] = {}

    class SignInFlow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            super().setup()
            current["jar"] = Jar()
            # Every scenario starts on an empty database (indexes kept), so that Hypothesis,
            # replaying a scenario to shrink or report it, gets the same answers (a second
            # registration of the same user would be a 409 and take the scenario elsewhere).
            for collection in mongo.list_collection_names():
                mongo[collection].delete_many({})

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            super().validate_response(response, case,
                                      [*(additional_checks or []), declared_400], **kwargs)

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            current["jar"].update(response.headers.get("set-cookie", []))
            key = (case.operation.label, response.status_code)
            seen[key] = seen.get(key, 0) + 1

    SignInFlow.run(settings=hypothesis.settings(
        max_examples=STATEFUL_SCENARIOS, stateful_step_count=8, derandomize=True, database=None,
        deadline=None, suppress_health_check=list(hypothesis.HealthCheck),
    ))
    # The flow was walked, not just fuzzed at its edges.
    for step in [("POST /user/register", 201), ("POST /auth/login", 200),
                 ("POST /auth/refresh", 200), ("POST /auth/logout", 200), ("GET /user", 200),
                 ("PUT /user/password/change", 200), ("PUT /user/email/change", 200),
                 ("PUT /user/delete", 200), ("GET /auth/sessions", 200)]:
        assert seen.get(step), f"no {step} in {sorted(seen.items())}"
