"""The operator's commands, run as an operator would (`python -m hecate.cli ...`, a separate
process on the service's database), and what users of the running service notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import PASSWORD, TEST_SECRET, Client, Database, Inbox, Service, login, register


@pytest.fixture
def hecate(database: Database, db_name: str) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "HECATE_DEV"}
        env.update(MONGODB_URL=database.url, MONGODB_NAME=db_name, JWT_SECRET=TEST_SECRET,
                   APP_URL="https://app.example", MAIL_TRANSPORT="console", LOG_LEVEL="warning")
        return subprocess.run([sys.executable, "-m", "hecate.cli", *args], env=env, check=False,
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    return run


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _refresh(client: Client) -> int:
    return client.post("/api/auth/refresh").status_code


def _operator_events(mongo: Any, name: str) -> list[dict[str, Any]]:
    return list(mongo.events.find({"event": name}))


def test_disable_refuses_sign_in_and_refresh_and_enable_restores_it(
    service: Service, mongo: Any, hecate: Any
) -> None:
    alice = service.client()
    register(alice)
    laptop = service.client()
    assert login(laptop).status_code == 200

    assert "ended 2 sessions" in _ok(hecate("user", "disable", "ALICE@example.com"))

    refused = login(service.client())
    assert refused.status_code == 403 and refused.json()["code"] == "account_disabled"
    wrong = login(service.client(), password="not the password")
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials", \
        "without the right password nothing is told"
    for device in (alice, laptop):
        assert _refresh(device) == 401, "the old refresh cookie is refused"
    # The access cookie lives until it expires (verified without Hecate), but it cannot get a
    # disabled account a new session or change it.
    assert alice.get("/api/user").status_code == 200
    change = alice.put("/api/user/password/change",
                       json={"oldPassword": PASSWORD, "newPassword": "another passphrase"})
    assert change.status_code == 403 and change.json()["code"] == "account_disabled"
    assert mongo.sessions.count_documents({}) == 0
    delete = alice.put("/api/user/delete", json={"password": PASSWORD})
    assert delete.status_code == 403 and delete.json()["code"] == "account_disabled"

    event, = _operator_events(mongo, "operator.account_disabled")
    assert event["userId"] == mongo.users.find_one()["_id"]
    assert event["details"]["sessions_ended"] == 2 and "ip" not in event
    failed = list(mongo.events.find({"event": "login.failed"}))
    assert [e["details"]["reason"] for e in failed] == ["account_disabled", "wrong_password"]

    assert "enabled" in _ok(hecate("user", "enable", "alice@example.com"))
    again = service.client()
    assert login(again).status_code == 200
    assert _refresh(again) == 200
    assert len(_operator_events(mongo, "operator.account_enabled")) == 1


def test_disable_revokes_pending_links_and_refuses_magic_login(
    mail_service: Service, inbox: Inbox, hecate: Any
) -> None:
    client = mail_service.client()
    register(client)
    assert client.post("/api/auth/magic.login/request",
                       json={"email": "alice@example.com"}).status_code == 202
    before = inbox.link_token("alice@example.com")
    _ok(hecate("user", "disable", "alice@example.com"))
    gone = client.post("/api/auth/magic.login", json={"token": before})
    assert gone.status_code == 410, "links mailed before disabling are revoked"

    assert client.post("/api/auth/magic.login/request",
                       json={"email": "alice@example.com"}).status_code == 202
    after = inbox.link_token("alice@example.com")
    assert after != before
    refused = client.post("/api/auth/magic.login", json={"token": after})
    assert refused.status_code == 403 and refused.json()["code"] == "account_disabled"
    assert "set-cookie" not in refused.headers


def test_a_session_that_raced_the_disable_ends_at_its_next_refresh(service: Service,
                                                                   mongo: Any) -> None:
    client = service.client()
    register(client)
    # As if a sign-in had slipped in between the flag being set and the sessions being ended.
    mongo.users.update_one({}, {"$set": {"disabled": True}})
    assert _refresh(client) == 401
    assert mongo.sessions.count_documents({}) == 0


def test_sessions_end_for_one_user_leaves_the_others(service: Service, mongo: Any,
                                                     hecate: Any) -> None:
    alice, alice_phone = service.client(), service.client()
    register(alice)
    assert login(alice_phone).status_code == 200
    bob = service.client()
    register(bob, username="bobby1", email="bob@example.com")

    assert "ended 2 sessions" in _ok(hecate("sessions", "end", "alice@example.com"))
    assert _refresh(alice) == 401 and _refresh(alice_phone) == 401
    assert _refresh(bob) == 200
    assert login(service.client()).status_code == 200, "not disabled: she signs in again"
    event, = _operator_events(mongo, "operator.sessions_ended")
    assert event["details"]["sessions_ended"] == 2


def test_sessions_end_all_signs_everyone_out(service: Service, mongo: Any, hecate: Any) -> None:
    alice, bob = service.client(), service.client()
    register(alice)
    register(bob, username="bobby1", email="bob@example.com")
    # A Node-era session still listed on a user ends too.
    mongo.users.update_one({"emailNormalized": "bob@example.com"},
                           {"$set": {"sessions": ["node-era-session"]}})

    assert "ended 2 sessions" in _ok(hecate("sessions", "end", "--all"))
    assert _refresh(alice) == 401 and _refresh(bob) == 401
    assert mongo.users.find_one({"emailNormalized": "bob@example.com"})["sessions"] == []
    event, = _operator_events(mongo, "operator.all_sessions_ended")
    assert "userId" not in event and event["details"]["sessions_ended"] == 2

    refused = hecate("sessions", "end", "--all", "alice@example.com")
    assert refused.returncode == 2, "one user or all, not both"


def test_user_show_lists_sessions_and_events_without_secrets(service: Service, mongo: Any,
                                                            hecate: Any) -> None:
    client = service.client()
    register(client)
    client.http.headers["User-Agent"] = "ShowTest/2.0"
    assert login(client, password="not the password").status_code == 401
    assert login(client).status_code == 200
    session_id = mongo.events.find_one({"event": "login.succeeded"})["sessionId"]

    text = _ok(hecate("user", "show", "alice@example.com"))
    assert "alice1 <alice@example.com>" in text and "disabled: no" in text
    assert session_id in text and "ShowTest/2.0" in text
    assert "login.failed" in text and "reason=wrong_password" in text
    data = json.loads(_ok(hecate("user", "show", "alice@example.com", "--json")))
    assert {s["id"] for s in data["sessions"]} == {
        s["_id"] for s in mongo.sessions.find()}
    assert data["events"][0]["event"] == "operator.user_shown", "newest first; shown is logged"
    hash_ = mongo.users.find_one()["hash"]
    jtis = [s["jti"] for s in mongo.sessions.find()]
    for secret in (hash_, *jtis, client.cookie("refresh") or "-", client.cookie("access") or "-",
                   PASSWORD):
        assert secret not in text and secret not in json.dumps(data)

    missing = hecate("user", "show", "nobody@example.com")
    assert missing.returncode == 1 and "no account" in missing.stderr
