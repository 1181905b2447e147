"""Device sessions: GET /api/auth/sessions lists the caller's own live sessions, DELETE
/api/auth/sessions/{id} ends one of them, and nobody else's session is visible or deletable."""

from __future__ import annotations

from datetime import datetime, timedelta

from conftest import Client, Service, login, register

ALICE_PHONE = "Mozilla/5.0 (iPhone) alice-phone"
ALICE_LAPTOP = "Mozilla/5.0 (X11; Linux) alice-laptop"
BOB_BROWSER = "Mozilla/5.0 (Windows) bob"


def device(service: Service, agent: str) -> Client:
    client = service.client()
    client.http.headers["User-Agent"] = agent
    return client


def signed_in(service: Service) -> tuple[Client, Client, Client]:
    """alice on her phone (registration) and her laptop (remember me), bob on his browser."""
    phone = device(service, ALICE_PHONE)
    register(phone)
    laptop = device(service, ALICE_LAPTOP)
    assert login(laptop, remember=True).status_code == 200
    bob = device(service, BOB_BROWSER)
    register(bob, username="bobby1", email="bob@example.com")
    return phone, laptop, bob


def sessions(client: Client) -> list[dict[str, object]]:
    response = client.get("/api/auth/sessions")
    assert response.status_code == 200, response.text
    listed: list[dict[str, object]] = response.json()["sessions"]
    return listed


def test_lists_only_own_live_sessions_newest_first(service: Service) -> None:
    phone, laptop, bob = signed_in(service)
    listed = sessions(laptop)
    assert [s["userAgent"] for s in listed] == [ALICE_LAPTOP, ALICE_PHONE]
    assert [s["current"] for s in listed] == [True, False]
    assert [s["remember"] for s in listed] == [True, False]
    for entry in listed:
        assert set(entry) == {"id", "created", "lastUsed", "userAgent", "remember", "current"}
        for field in ("created", "lastUsed"):
            moment = datetime.fromisoformat(str(entry[field]))
            assert moment.utcoffset() == timedelta(0)  # UTC
    from_phone = sessions(phone)
    assert [s["id"] for s in from_phone] == [s["id"] for s in listed]
    assert [s["current"] for s in from_phone] == [False, True]
    assert [s["userAgent"] for s in sessions(bob)] == [BOB_BROWSER]


def test_ending_another_device(service: Service) -> None:
    phone, laptop, _ = signed_in(service)
    phone_id = next(s["id"] for s in sessions(laptop) if not s["current"])
    response = laptop.request("DELETE", f"/api/auth/sessions/{phone_id}")
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Session ended."}
    assert "set-cookie" not in response.headers  # not this browser's session: cookies stay
    refused = phone.post("/api/auth/refresh", json={})
    assert refused.status_code == 401
    assert refused.json()["code"] == "session_ended"
    assert laptop.post("/api/auth/refresh", json={}).status_code == 200
    assert [s["userAgent"] for s in sessions(laptop)] == [ALICE_LAPTOP]
    # Ended once is ended: the same id again is unknown.
    assert laptop.request("DELETE", f"/api/auth/sessions/{phone_id}").status_code == 404


def test_ending_the_current_session_signs_out(service: Service) -> None:
    phone, laptop, _ = signed_in(service)
    current = next(s["id"] for s in sessions(laptop) if s["current"])
    response = laptop.request("DELETE", f"/api/auth/sessions/{current}")
    assert response.status_code == 200, response.text
    assert laptop.cookie("access") is None and laptop.cookie("refresh") is None
    assert phone.post("/api/auth/refresh", json={}).status_code == 200


def test_another_users_session_is_not_found(service: Service) -> None:
    _, laptop, bob = signed_in(service)
    bob_id = sessions(bob)[0]["id"]
    foreign = laptop.request("DELETE", f"/api/auth/sessions/{bob_id}")
    unknown = laptop.request("DELETE", "/api/auth/sessions/" + "A" * 24)
    for response in (foreign, unknown):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert foreign.json()["detail"] == unknown.json()["detail"]
    assert bob.post("/api/auth/refresh", json={}).status_code == 200


def test_a_malformed_id_is_a_bad_request(registered: Client) -> None:
    response = registered.request("DELETE", "/api/auth/sessions/" + "x" * 65)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_failed"


def test_without_a_cookie(service: Service) -> None:
    anonymous = service.client()
    listed = anonymous.get("/api/auth/sessions")
    ended = anonymous.request("DELETE", "/api/auth/sessions/" + "A" * 24)
    for response in (listed, ended):
        assert response.status_code == 401
        assert response.json()["code"] == "authentication_required"


def test_delete_needs_json_and_an_allowed_origin(registered: Client) -> None:
    session_id = sessions(registered)[0]["id"]
    foreign = registered.request("DELETE", f"/api/auth/sessions/{session_id}",
                                 headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert foreign.json()["code"] == "origin_not_allowed"
    # Bodiless with no Content-Type: refused like every unsafe request (CSRF defence).
    plain = registered.http.request("DELETE", f"/api/auth/sessions/{session_id}",
                                    headers={"Cookie": f"access={registered.cookie('access')}"})
    assert plain.status_code == 415
    assert plain.json()["code"] == "unsupported_media_type"
    assert [s["id"] for s in sessions(registered)] == [session_id]
