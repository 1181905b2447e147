"""The email flows end to end: a real SMTP server receives every mail, the test takes the link
from it and completes the flow over HTTP, as a user clicking through the SPA would."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest

from conftest import PASSWORD, TEST_SECRET, Client, Inbox, Service, free_port, login, register

NEW_PASSWORD = "a brand new passphrase"


def _claims(client: Client) -> dict[str, object]:
    return jwt.decode(client.cookie("access") or "", TEST_SECRET, algorithms=["HS256"],
                      options={"verify_aud": False})


def test_register_mails_a_verification_link_that_verifies_the_address(
    mail_service: Service, inbox: Inbox
) -> None:
    client = mail_service.client()
    response = register(client)
    assert response.json()["user"]["verified"] is False
    assert client.cookie("access"), "register still signs in, as the original did"
    assert _claims(client)["verified"] is False

    mail = inbox.last("alice@example.com")
    assert "http://localhost:4200/verify?token=" in inbox.text(mail)
    assert "http://localhost:4200/verify?token=" in inbox.html(mail)
    token = inbox.link_token("alice@example.com")

    confirmed = client.put("/api/user/email/verification", json={"token": token})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["user"]["verified"] is True
    again = client.put("/api/user/email/verification", json={"token": token})
    assert again.status_code == 410 and again.json()["code"] == "link_invalid"

    assert login(client).status_code == 200
    assert _claims(client)["verified"] is True
    assert client.get("/api/user").json()["user"]["verified"] is True


def test_login_requires_verified_email_when_asked(
    start_service: Callable[..., Service], inbox: Inbox
) -> None:
    service = start_service(LOGIN_REQUIRES_VERIFIED_EMAIL="true", **inbox.env())
    client = service.client()
    response = register(client)
    assert response.status_code == 201
    assert "set-cookie" not in response.headers, "no sign-in before the address is confirmed"
    refused = login(client)
    assert refused.status_code == 403 and refused.json()["code"] == "email_not_verified"

    token = inbox.link_token("alice@example.com")
    assert client.put("/api/user/email/verification", json={"token": token}).status_code == 200
    assert login(client).status_code == 200


def test_no_verification_mail_when_not_required(
    start_service: Callable[..., Service], inbox: Inbox
) -> None:
    service = start_service(EMAIL_VERIFICATION_REQUIRED="false", **inbox.env())
    register(service.client())
    assert inbox.to("alice@example.com") == []


def test_link_tokens_forged_with_the_jwt_secret_are_refused(
    mail_service: Service, inbox: Inbox, mongo: object
) -> None:
    client = mail_service.client()
    user_id = register(client).json()["user"]["id"]
    now = int(time.time())
    # What the original's tokens looked like: a JWT anyone holding JWT_SECRET can mint.
    for claims in ({"id": user_id, "type": "verification", "email": "alice@example.com"},
                   {"id": user_id, "type": "magic", "exp": now + 300},
                   {"id": user_id, "type": "reset", "exp": now + 300}):
        forged = jwt.encode({"iat": now, **claims}, TEST_SECRET, algorithm="HS256")
        for method, path, body in (
            ("PUT", "/api/user/email/verification", {"token": forged}),
            ("POST", "/api/auth/magic.login", {"token": forged}),
            ("PUT", "/api/user/password/reset", {"token": forged, "newPassword": NEW_PASSWORD}),
        ):
            response = client.request(method, path, json=body)
            assert response.status_code in {400, 410}, (path, response.text)
    assert login(client).status_code == 200, "the password did not change"


def test_password_reset_flow_ends_sessions_and_notifies(
    mail_service: Service, inbox: Inbox
) -> None:
    device = mail_service.client()
    register(device)
    other = mail_service.client()
    assert login(other).status_code == 200

    stranger = mail_service.client()
    response = stranger.post("/api/user/password/reset/request",
                             json={"email": "ALICE@example.com"})
    assert response.status_code == 202
    token = inbox.link_token("alice@example.com")
    assert "/password-reset?token=" in inbox.text(inbox.last("alice@example.com"))

    reset = stranger.put("/api/user/password/reset",
                         json={"token": token, "newPassword": NEW_PASSWORD})
    assert reset.status_code == 200, reset.text
    assert "password" in str(inbox.last("alice@example.com")["Subject"]).lower()

    assert login(stranger).status_code == 401, "the old password no longer works"
    assert login(stranger, password=NEW_PASSWORD).status_code == 200
    for client in (device, other):
        assert client.post("/api/auth/refresh").status_code == 401, "old sessions ended"
    replay = stranger.put("/api/user/password/reset",
                          json={"token": token, "newPassword": "yet another passphrase"})
    assert replay.status_code == 410


def test_reset_and_magic_requests_for_unknown_addresses_send_nothing(
    mail_service: Service, inbox: Inbox
) -> None:
    client = mail_service.client()
    for path in ("/api/user/password/reset/request", "/api/auth/magic.login/request",
                 "/api/user/email/verification/resend"):
        response = client.post(path, json={"email": "nobody@example.com"})
        assert response.status_code == 202
        assert response.json() == {
            "message": "If an account exists for this address, an email is on its way."}
    assert inbox.messages == []


def test_resend_verification_sends_a_new_link_and_only_the_newest_works(
    mail_service: Service, inbox: Inbox
) -> None:
    client = mail_service.client()
    register(client)
    first = inbox.link_token("alice@example.com")
    assert client.post("/api/user/email/verification/resend",
                       json={"email": "alice@example.com"}).status_code == 202
    second = inbox.link_token("alice@example.com")
    assert first != second
    assert client.put("/api/user/email/verification", json={"token": first}).status_code == 410
    assert client.put("/api/user/email/verification", json={"token": second}).status_code == 200
    # A verified account gets no more verification mail.
    count = len(inbox.to("alice@example.com"))
    client.post("/api/user/email/verification/resend", json={"email": "alice@example.com"})
    assert len(inbox.to("alice@example.com")) == count


def test_magic_login_works_once_and_only_the_newest_link(
    start_service: Callable[..., Service], inbox: Inbox
) -> None:
    service = start_service(EMAIL_VERIFICATION_REQUIRED="false", **inbox.env())
    register(service.client())
    browser = service.client()

    assert browser.post("/api/auth/magic.login/request",
                        json={"email": "alice@example.com"}).status_code == 202
    older = inbox.link_token("alice@example.com")
    assert "/token-login?token=" in inbox.text(inbox.last("alice@example.com"))
    browser.post("/api/auth/magic.login/request", json={"email": "alice@example.com"})
    newer = inbox.link_token("alice@example.com")

    refused = browser.post("/api/auth/magic.login", json={"token": older})
    assert refused.status_code == 410, "an older link stops working once a newer one is sent"
    response = browser.post("/api/auth/magic.login", json={"token": newer})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["verified"] is True, "following the link proves the address"
    assert browser.get("/api/user").status_code == 200
    assert browser.post("/api/auth/magic.login", json={"token": newer}).status_code == 410


def test_magic_link_expires(start_service: Callable[..., Service], inbox: Inbox) -> None:
    service = start_service(JWT_MAGIC_LOGIN_TTL="1", **inbox.env())
    client = service.client()
    register(client)
    client.post("/api/auth/magic.login/request", json={"email": "alice@example.com"})
    token = inbox.link_token("alice@example.com")
    time.sleep(1.5)
    assert client.post("/api/auth/magic.login", json={"token": token}).status_code == 410


def test_email_change_needs_confirmation_and_can_be_cancelled(
    mail_service: Service, inbox: Inbox
) -> None:
    client = mail_service.client()
    register(client)
    register(mail_service.client(), username="bobby1", email="bob@example.com")

    taken = client.put("/api/user/email/change",
                       json={"email": "Bob@Example.com", "password": PASSWORD})
    assert taken.status_code == 409 and taken.json()["code"] == "email_taken"
    same = client.put("/api/user/email/change",
                      json={"email": "ALICE@example.com", "password": PASSWORD})
    assert same.status_code == 400 and same.json()["code"] == "email_unchanged"
    wrong = client.put("/api/user/email/change",
                       json={"email": "alice@new.example", "password": "not my password"})
    assert wrong.status_code == 403

    # First request: cancelled from the old address.
    assert client.put("/api/user/email/change",
                      json={"email": "alice@new.example", "password": PASSWORD}
                      ).status_code == 200
    confirm = inbox.link_token("alice@new.example")
    notice = inbox.last("alice@example.com")
    assert "alice@new.example" in inbox.text(notice)
    cancel = inbox.link_token("alice@example.com")
    assert client.post("/api/user/email/change/cancel", json={"token": cancel}).status_code == 200
    assert client.put("/api/user/email/verification", json={"token": confirm}).status_code == 410
    assert login(client).status_code == 200, "the address did not change"

    # Second request: confirmed on the new address.
    client.put("/api/user/email/change", json={"email": "alice@new.example", "password": PASSWORD})
    assert login(client).status_code == 200, "the old address works until the change is confirmed"
    confirm = inbox.link_token("alice@new.example")
    response = client.put("/api/user/email/verification", json={"token": confirm})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == "alice@new.example"
    assert response.json()["user"]["verified"] is True
    assert login(client, email="alice@new.example").status_code == 200
    assert login(client).status_code == 401, "the old address no longer signs in"
    stale_cancel = inbox.link_token("alice@example.com")
    assert client.post("/api/user/email/change/cancel",
                       json={"token": stale_cancel}).status_code == 410


def test_email_change_confirmation_rechecks_uniqueness(
    mail_service: Service, inbox: Inbox
) -> None:
    client = mail_service.client()
    register(client)
    client.put("/api/user/email/change", json={"email": "wanted@example.com",
                                               "password": PASSWORD})
    confirm = inbox.link_token("wanted@example.com")
    register(mail_service.client(), username="racer1", email="Wanted@Example.com")
    response = client.put("/api/user/email/verification", json={"token": confirm})
    assert response.status_code == 409 and response.json()["code"] == "email_taken"
    assert client.get("/api/user").json()["user"]["email"] == "alice@example.com"


def test_verification_link_for_an_address_no_longer_the_users_is_gone(
    mail_service: Service, inbox: Inbox
) -> None:
    client = mail_service.client()
    register(client)
    old_link = inbox.link_token("alice@example.com")
    client.put("/api/user/email/change", json={"email": "alice@new.example",
                                               "password": PASSWORD})
    client.put("/api/user/email/verification",
               json={"token": inbox.link_token("alice@new.example")})
    response = client.put("/api/user/email/verification", json={"token": old_link})
    assert response.status_code == 410


def test_password_change_and_deletion_send_notices(mail_service: Service, inbox: Inbox) -> None:
    client = mail_service.client()
    register(client)
    assert client.put("/api/user/password/change",
                      json={"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}
                      ).status_code == 200
    assert "password" in str(inbox.last("alice@example.com")["Subject"]).lower()
    before = len(inbox.to("alice@example.com"))
    assert client.put("/api/user/delete", json={"password": NEW_PASSWORD}).status_code == 200
    assert len(inbox.to("alice@example.com")) == before + 1


def test_a_down_smtp_server_on_register_is_a_503_and_leaves_nothing(
    start_service: Callable[..., Service], mongo: object
) -> None:
    service = start_service(MAIL_TRANSPORT="smtp", SMTP_HOST="127.0.0.1",
                            SMTP_PORT=str(free_port()), SMTP_SECURITY="none", SMTP_TIMEOUT="2")
    client = service.client()
    response = client.post("/api/user/register", json={
        "username": "alice1", "email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 503
    assert response.json()["code"] == "mail_unavailable"
    assert "set-cookie" not in response.headers
    assert mongo.users.count_documents({}) == 0  # type: ignore[attr-defined]
    assert mongo.sessions.count_documents({}) == 0  # type: ignore[attr-defined]
    assert mongo.link_tokens.count_documents({}) == 0  # type: ignore[attr-defined]


def test_a_down_smtp_server_on_reset_request_is_still_202_and_logged(
    start_service: Callable[..., Service], inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    service = start_service(EMAIL_VERIFICATION_REQUIRED="false", **inbox.env())
    register(service.client())
    inbox.stop()  # the SMTP server goes away
    logger = logging.getLogger("hecate")
    logger.addHandler(caplog.handler)
    try:
        response = service.client().post("/api/user/password/reset/request",
                                         json={"email": "alice@example.com"})
    finally:
        logger.removeHandler(caplog.handler)
    assert response.status_code == 202
    failures = [r for r in caplog.records if r.getMessage() == "mail not sent"]
    assert failures and failures[0].__dict__["template"] == "password_reset"
    assert "token=" not in caplog.text


def test_a_down_smtp_server_under_load_breaks_nothing_else(
    start_service: Callable[..., Service], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 7 re-checks the email issue's promise under load: with the SMTP server refusing
    connections, 48 mail requests from 12 clients at once all answer 202, sign-ins and who-am-I
    in the same burst keep working, and every failure is logged without its token."""
    service = start_service(MAIL_TRANSPORT="smtp", SMTP_HOST="127.0.0.1",
                            SMTP_PORT=str(free_port()), SMTP_SECURITY="none", SMTP_TIMEOUT="2",
                            EMAIL_VERIFICATION_REQUIRED="false", MAIL_RESPONSE_MIN_MS="200",
                            LIMITER_MAIL="1000/hour", LIMITER_MAIL_IP="1000/hour",
                            LIMITER_ATTEMPTS="1000")
    accounts = [f"user{n}@example.com" for n in range(4)]
    for n, email in enumerate(accounts):
        assert register(service.client(), f"user{n}", email).status_code == 201

    def mail_request(n: int) -> tuple[str, int]:
        path = ("/api/user/password/reset/request", "/api/auth/magic.login/request",
                "/api/user/email/verification/resend")[n % 3]
        email = accounts[n % 4] if n % 2 else f"nobody{n}@example.com"
        return "mail", service.client().post(path, json={"email": email}).status_code

    def sign_in(n: int) -> tuple[str, int]:
        client = service.client()
        status = login(client, accounts[n % 4]).status_code
        return "sign-in", status if status != 200 else client.get("/api/user").status_code

    logger = logging.getLogger("hecate")
    logger.addHandler(caplog.handler)
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = [pool.submit(mail_request, n) for n in range(48)]
            futures += [pool.submit(sign_in, n) for n in range(12)]
            answers = Counter(future.result() for future in futures)
    finally:
        logger.removeHandler(caplog.handler)
    assert answers == {("mail", 202): 48, ("sign-in", 200): 12}, answers
    failures = [r for r in caplog.records if r.getMessage() == "mail not sent"]
    assert failures, "no mail was even attempted: the test proved nothing"
    assert "token=" not in caplog.text
    assert service.client().get("/api/health").status_code == 200


def test_mail_requests_take_the_same_time_whether_or_not_the_account_exists(
    start_service: Callable[..., Service], inbox: Inbox
) -> None:
    env = {**inbox.env(), "MAIL_RESPONSE_MIN_MS": "400", "EMAIL_VERIFICATION_REQUIRED": "false"}
    service = start_service(**env)
    client = service.client()
    register(client)
    for email in ("alice@example.com", "nobody@example.com"):
        started = time.monotonic()
        response = client.post("/api/user/password/reset/request", json={"email": email})
        assert response.status_code == 202
        assert time.monotonic() - started >= 0.4


def test_user_values_are_escaped_in_html_mail(
    start_service: Callable[..., Service], inbox: Inbox
) -> None:
    service = start_service(APP_NAME='<b>Acme & "Co"</b>', **inbox.env())
    register(service.client())
    mail = inbox.last("alice@example.com")
    assert "<b>Acme" not in inbox.html(mail)
    assert "&lt;b&gt;Acme &amp;" in inbox.html(mail)
    assert '<b>Acme & "Co"</b>' in inbox.text(mail)
