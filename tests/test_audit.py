"""The audit trail: each security flow, driven over HTTP as a client would, leaves an event with
the right facts in the `events` collection and in the structured log, and never a secret;
GET /api/user/activity shows a user their own events; deletion takes them away."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from conftest import PASSWORD, ROOT, Client, Inbox, Service, login, register

from hecate.core import audit
from hecate.logs import JsonFormatter

NEW_PASSWORD = "a brand new passphrase"
AGENT = "AuditTest/1.0 (like a browser)"


def _events(mongo: Any, **query: Any) -> list[dict[str, Any]]:
    return list(mongo.events.find(query).sort([("time", 1), ("_id", 1)]))


def _names(mongo: Any, **query: Any) -> list[str]:
    return [e["event"] for e in _events(mongo, **query)]


def _user_id(mongo: Any, email: str = "alice@example.com") -> Any:
    return mongo.users.find_one({"emailNormalized": email})["_id"]


def _agent(client: Client) -> Client:
    client.http.headers["User-Agent"] = AGENT
    return client


def _secrets(client: Client) -> list[str]:
    return [v for v in (client.cookie("access"), client.cookie("refresh")) if v]


def _assert_clean(mongo: Any, *secrets: str) -> None:
    """No stored event holds a password, token, hash or email address."""
    stored = json.dumps(_events(mongo), default=str)
    hashes = [u["hash"] for u in mongo.users.find({}, {"hash": 1})]
    for secret in (*secrets, *hashes, PASSWORD, NEW_PASSWORD, "@example.com", "@new.example"):
        assert secret not in stored, f"{secret[:12]}... is in the audit trail"


@pytest.fixture
def audit_log() -> Iterator[io.StringIO]:
    """The audit logger's lines, formatted as the service writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("hecate.audit")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def test_the_spec_lists_exactly_the_events_the_service_records() -> None:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    listed = spec["components"]["schemas"]["ActivityEvent"]["properties"]["event"]["enum"]
    assert set(listed) == audit.EVENTS


def test_sign_ins_and_failures_are_recorded_with_client_and_session(
    start_service: Callable[..., Service], mongo: Any, audit_log: io.StringIO
) -> None:
    service = start_service(LOG_LEVEL="info")
    client = _agent(service.client())
    register(client)
    user_id = _user_id(mongo)
    assert login(client, password="not the password").status_code == 401
    assert login(client, email="nobody@example.com").status_code == 401
    assert login(client).status_code == 200
    session = _events(mongo, event="login.succeeded")[0]["sessionId"]

    created, = _events(mongo, event="account.created")
    assert created["userId"] == user_id and created["sessionId"]
    wrong, unknown = _events(mongo, event="login.failed")
    assert wrong["userId"] == user_id and wrong["details"]["reason"] == "wrong_password"
    # An address without an account is kept neither in clear nor hashed.
    assert unknown.get("userId") is None and unknown["details"] == {"reason": "unknown_account"}
    signed_in, = _events(mongo, event="login.succeeded")
    assert signed_in["userId"] == user_id
    assert signed_in["sessionId"] == session and mongo.sessions.find_one({"_id": session})
    for event in (created, wrong, unknown, signed_in):
        assert event["ip"] == "127.0.0.1" and event["userAgent"] == AGENT
        assert event["time"] <= dt.datetime.now(dt.UTC)
    _assert_clean(mongo, *_secrets(client))

    lines = [json.loads(line) for line in audit_log.getvalue().splitlines()]
    logged = {line["event"]: line for line in lines if line.get("audit")}
    assert logged["login.succeeded"]["user_id"] == str(user_id)
    assert logged["login.succeeded"]["session_id"] == session
    assert logged["login.failed"]["ip"] == "127.0.0.1"
    assert logged["login.failed"]["user_agent"] == AGENT
    text = audit_log.getvalue()
    for secret in (PASSWORD, "not the password", "nobody@example.com", *_secrets(client)):
        assert secret not in text


def test_refresh_token_reuse_is_recorded(start_service: Callable[..., Service],
                                         mongo: Any) -> None:
    service = start_service(REFRESH_REUSE_GRACE="0")
    victim = service.client()
    register(victim)
    stolen = victim.cookie("refresh") or ""
    assert victim.post("/api/auth/refresh").status_code == 200
    thief = _agent(service.client())
    thief.set_cookie("refresh", stolen, "/api/auth")
    replay = thief.post("/api/auth/refresh")
    assert replay.status_code == 401 and replay.json()["code"] == "token_reused"

    reused, = _events(mongo, event="refresh.reused")
    assert reused["userId"] == _user_id(mongo)
    assert reused["sessionId"] == _events(mongo, event="account.created")[0]["sessionId"]
    assert reused["userAgent"] == AGENT
    _assert_clean(mongo, stolen, *_secrets(victim))


def test_sessions_ended_by_logout_revoke_and_invalidate_are_recorded(
    service: Service, mongo: Any
) -> None:
    phone, laptop, tablet = (service.client() for _ in range(3))
    register(phone)
    for device in (laptop, tablet):
        assert login(device).status_code == 200
    phone_session = _events(mongo, event="account.created")[0]["sessionId"]
    laptop_session, tablet_session = (e["sessionId"] for e in
                                      _events(mongo, event="login.succeeded"))

    assert laptop.post("/api/auth/logout").status_code == 200
    assert phone.request("DELETE", f"/api/auth/sessions/{tablet_session}").status_code == 200
    assert phone.post("/api/auth/invalidate").status_code == 200

    user_id = _user_id(mongo)
    logout, = _events(mongo, event="session.logout")
    assert (logout["userId"], logout["sessionId"]) == (user_id, laptop_session)
    revoked, = _events(mongo, event="session.revoked")
    assert (revoked["userId"], revoked["sessionId"]) == (user_id, tablet_session)
    assert revoked["details"] == {"current": False}
    invalidated, = _events(mongo, event="sessions.invalidated")
    assert (invalidated["userId"], invalidated["sessionId"]) == (user_id, phone_session)
    assert invalidated["details"] == {"sessions_ended": 1}


def test_password_change_and_reset_are_recorded(mail_service: Service, inbox: Inbox,
                                                mongo: Any) -> None:
    client = mail_service.client()
    register(client)
    other = mail_service.client()
    assert login(other).status_code == 200
    changed = client.put("/api/user/password/change",
                         json={"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    assert changed.status_code == 200, changed.text
    event, = _events(mongo, event="password.changed")
    assert event["userId"] == _user_id(mongo)
    assert event["details"] == {"sessions_ended": 1}
    assert event["sessionId"] == _events(mongo, event="account.created")[0]["sessionId"]

    stranger = _agent(mail_service.client())
    assert stranger.post("/api/user/password/reset/request",
                         json={"email": "alice@example.com"}).status_code == 202
    token = inbox.link_token("alice@example.com")
    assert stranger.put("/api/user/password/reset",
                        json={"token": token, "newPassword": PASSWORD}).status_code == 200
    reset, = _events(mongo, event="password.reset")
    assert reset["userId"] == _user_id(mongo) and reset["userAgent"] == AGENT
    _assert_clean(mongo, token, *_secrets(client), *_secrets(other))


def test_email_change_request_and_confirmation_are_recorded(mail_service: Service,
                                                           inbox: Inbox, mongo: Any) -> None:
    client = mail_service.client()
    register(client)
    user_id = _user_id(mongo)
    assert client.put("/api/user/email/change", json={"email": "alice@new.example",
                                                      "password": PASSWORD}).status_code == 200
    token = inbox.link_token("alice@new.example")
    assert client.put("/api/user/email/verification", json={"token": token}).status_code == 200

    requested, = _events(mongo, event="email.change_requested")
    confirmed, = _events(mongo, event="email.change_confirmed")
    assert requested["userId"] == confirmed["userId"] == user_id
    assert requested["sessionId"] == _events(mongo, event="account.created")[0]["sessionId"]
    # Neither address is in the trail.
    _assert_clean(mongo, token, *_secrets(client))


def test_a_rate_limit_hit_is_recorded_once_per_window(start_service: Callable[..., Service],
                                                      mongo: Any) -> None:
    service = start_service(LIMITER_ATTEMPTS="2")
    client = _agent(service.client())
    register(client)
    statuses = [login(client, password="wrong guess").status_code for _ in range(5)]
    assert statuses == [401, 401, 429, 429, 429]
    hit, = _events(mongo, event="rate_limit.hit")
    assert hit["details"] == {"limit": "login-pair"}
    assert hit["ip"] == "127.0.0.1" and hit["userAgent"] == AGENT
    assert hit.get("userId") is None, "the limit's key (the address) is not kept"
    assert _names(mongo, event="login.failed") == ["login.failed"] * 2


def test_activity_shows_the_callers_own_events_newest_first(service: Service,
                                                           mongo: Any) -> None:
    alice = _agent(service.client())
    register(alice)
    bob = service.client()
    register(bob, username="bobby1", email="bob@example.com")
    assert login(alice, password="wrong guess").status_code == 401
    assert login(alice).status_code == 200
    assert login(bob, email="bob@example.com", password="wrong guess").status_code == 401

    response = alice.get("/api/user/activity")
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [e["event"] for e in events] == ["login.succeeded", "login.failed", "account.created"]
    newest = events[0]
    assert newest["ip"] == "127.0.0.1" and newest["userAgent"] == AGENT
    assert newest["current"] is True, "this browser's own sign-in"
    assert events[2]["current"] is False and events[2]["sessionId"]
    assert events[1]["sessionId"] is None
    times = [dt.datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times, reverse=True)

    bobs = bob.get("/api/user/activity").json()["events"]
    assert [e["event"] for e in bobs] == ["login.failed", "account.created"]

    assert [e["event"] for e in
            alice.get("/api/user/activity", params={"limit": 1}).json()["events"]] == [
        "login.succeeded"]
    for bad in ("0", "101", "many"):
        refused = alice.get("/api/user/activity", params={"limit": bad})
        assert refused.status_code == 400 and refused.json()["code"] == "validation_failed"
    assert service.client().get("/api/user/activity").status_code == 401


def test_events_expire_by_a_ttl_index_after_the_retention(start_service: Callable[..., Service],
                                                          mongo: Any) -> None:
    service = start_service(AUDIT_RETENTION="2d")
    register(service.client())
    ttl = mongo.events.index_information()["expires_ttl"]
    assert ttl["key"] == [("expiresAt", 1)] and ttl["expireAfterSeconds"] == 0
    event, = _events(mongo, event="account.created")
    assert event["expiresAt"] - event["time"] == dt.timedelta(days=2)


def test_deleting_the_account_deletes_its_events_but_keeps_the_fact(
    service: Service, mongo: Any
) -> None:
    alice = _agent(service.client())
    register(alice)
    bob = service.client()
    register(bob, username="bobby1", email="bob@example.com")
    assert login(alice).status_code == 200
    user_id = _user_id(mongo)
    assert alice.put("/api/user/delete", json={"password": PASSWORD}).status_code == 200

    kept, = _events(mongo, userId=user_id)
    assert kept["event"] == "account.deleted"
    assert {"ip", "userAgent", "sessionId"}.isdisjoint(kept), "no client, no session kept"
    assert _names(mongo, userId=_user_id(mongo, "bob@example.com")) == ["account.created"]


def test_a_failing_audit_write_never_fails_the_request(
    start_service: Callable[..., Service], mongo: Any, audit_log: io.StringIO
) -> None:
    service = start_service(LOG_LEVEL="info")
    client = service.client()
    register(client)
    # A real database error on every later insert of the same event name.
    mongo.events.create_index("event", unique=True, name="break_the_trail")
    for _ in range(2):
        assert login(client).status_code == 200
    assert _names(mongo, event="login.succeeded") == ["login.succeeded"]
    assert '"audit event not stored"' in audit_log.getvalue()
