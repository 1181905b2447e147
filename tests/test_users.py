"""Accounts over HTTP: registration and its field rules, sign-in, who-am-I, and the users the Node
original left behind (bcrypt hashes, no normalized keys) signing in and being upgraded."""

from __future__ import annotations

from typing import Any

import bcrypt
import httpx
import pytest

from conftest import PASSWORD, Client, login, register

USER_KEYS = {"id", "username", "email", "verified"}
NEW_PASSWORD = "a brand new passphrase"


def _problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    code: str = response.json()["code"]
    return code


def _register_raw(client: Client, **body: Any) -> httpx.Response:
    return client.post("/api/user/register", json=body)


def _insert_node_user(mongo: Any, password: str, username: str = "bobnode",
                      email: str = "Bob.Node@Example.com") -> str:
    """A user document exactly as the Node original wrote it: bcrypt cost 10, which hashed only
    the first 72 bytes of the password, and no normalized keys."""
    stored = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(10)).decode()
    assert stored.startswith("$2b$10$")
    mongo.users.insert_one({
        "username": username,
        "email": email,
        "hash": stored,
        "verified": True,
        "allowMagicLogin": False,
        "sessions": [],
    })
    return stored


# --- register ------------------------------------------------------------------------------------


def test_register_creates_the_account_and_signs_in(client: Client, mongo: Any) -> None:
    response = register(client, username="alice1", email="Alice@Example.com")
    body = response.json()
    assert set(body) == {"message", "user"}
    assert isinstance(body["message"], str) and body["message"]
    user = body["user"]
    assert set(user) == USER_KEYS
    assert user["username"] == "alice1"
    assert user["email"] == "Alice@Example.com"
    assert user["verified"] is False
    assert isinstance(user["id"], str) and user["id"]
    assert client.cookie("access") and client.cookie("refresh"), "register signs in"

    stored = mongo.users.find_one({"username": "alice1"})
    assert stored is not None
    assert str(stored["_id"]) == user["id"]
    assert stored["hash"].startswith("$argon2id$")
    assert stored["emailNormalized"] == "alice@example.com"
    assert stored["email"] == "Alice@Example.com"

    me = client.get("/api/user")
    assert me.status_code == 200, me.text
    assert me.json() == {"user": user}


@pytest.mark.parametrize("email", ["alice@example.com", "ALICE@Example.COM", "alice@EXAMPLE.com"])
def test_register_refuses_a_taken_email_whatever_its_case(client: Client, email: str) -> None:
    register(client)
    other = _register_raw(client, username="bobby2", email=email, password=PASSWORD)
    assert other.status_code == 409, other.text
    assert _problem_code(other) == "email_taken"


@pytest.mark.parametrize("username", ["alice1", "ALICE1", "Alice1"])
def test_register_refuses_a_taken_username_whatever_its_case(client: Client,
                                                             username: str) -> None:
    register(client)
    other = _register_raw(client, username=username, email="bob@example.com", password=PASSWORD)
    assert other.status_code == 409, other.text
    assert _problem_code(other) == "username_taken"


def test_a_refused_registration_creates_nothing(client: Client, mongo: Any) -> None:
    register(client)
    assert _register_raw(client, username="ALICE1", email="new@example.com",
                         password=PASSWORD).status_code == 409
    assert _register_raw(client, username="newuser", email="ALICE@example.com",
                         password=PASSWORD).status_code == 409
    assert mongo.users.count_documents({}) == 1


GOOD = {"username": "carol7", "email": "carol@example.com", "password": PASSWORD}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**GOOD, "username": "abcd"}, id="username-4-chars"),
        pytest.param({**GOOD, "username": "a" * 31}, id="username-31-chars"),
        pytest.param({**GOOD, "username": "carol_7"}, id="username-underscore"),
        pytest.param({**GOOD, "username": "carol 7"}, id="username-space"),
        pytest.param({**GOOD, "username": "carol7!"}, id="username-punctuation"),
        pytest.param({**GOOD, "password": "x" * 7}, id="password-7-chars"),
        pytest.param({**GOOD, "password": "x" * 1025}, id="password-1025-chars"),
        pytest.param({**GOOD, "email": "carol.example.com"}, id="email-without-at"),
        pytest.param({**GOOD, "admin": True}, id="unknown-field"),
        pytest.param({k: v for k, v in GOOD.items() if k != "email"}, id="missing-email"),
        pytest.param({k: v for k, v in GOOD.items() if k != "password"}, id="missing-password"),
        pytest.param({k: v for k, v in GOOD.items() if k != "username"}, id="missing-username"),
        pytest.param({**GOOD, "username": 12345}, id="username-not-a-string"),
    ],
)
def test_register_field_rules(client: Client, mongo: Any, body: dict[str, Any]) -> None:
    response = client.post("/api/user/register", json=body)
    assert response.status_code == 400, response.text
    assert _problem_code(response) == "validation_failed"
    assert response.json()["message"], "the message says what is wrong"
    assert "set-cookie" not in response.headers
    assert mongo.users.count_documents({}) == 0


@pytest.mark.parametrize(
    "username,password",
    [("abcde", PASSWORD), ("a" * 30, PASSWORD), ("carol7", "x" * 8), ("carol7", "p" * 1024)],
    ids=["username-5", "username-30", "password-8", "password-1024"],
)
def test_register_accepts_the_bounds(client: Client, username: str, password: str) -> None:
    register(client, username=username, email="carol@example.com", password=password)
    client.jar.clear()
    signed_in = login(client, "carol@example.com", password)
    assert signed_in.status_code == 200, signed_in.text


def test_a_validation_error_never_echoes_the_password(client: Client) -> None:
    too_short = "Zq9!xY7"
    response = _register_raw(client, username="carol7", email="carol@example.com",
                             password=too_short)
    assert response.status_code == 400
    assert too_short not in response.text
    assert "password" in response.json()["message"], "it still names the field"

    too_long = "Kw8#" + "v" * 1021
    response = login(client, "carol@example.com", too_long)
    assert response.status_code == 400
    assert _problem_code(response) == "validation_failed"
    assert "Kw8#vvv" not in response.text

    wrong_type = _register_raw(client, username="carol7", email="carol@example.com",
                               password=["Zq9!xY7-in-a-list"])
    assert wrong_type.status_code == 400
    assert "Zq9!xY7-in-a-list" not in wrong_type.text


# --- login ---------------------------------------------------------------------------------------


def test_login_with_the_right_password(registered: Client) -> None:
    registered.jar.clear()
    response = login(registered)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "user"}
    assert set(body["user"]) == USER_KEYS
    assert body["user"]["username"] == "alice1"
    assert body["user"]["email"] == "alice@example.com"
    assert registered.cookie("access") and registered.cookie("refresh")
    assert registered.get("/api/user").status_code == 200


@pytest.mark.parametrize("email", ["ALICE@EXAMPLE.COM", "Alice@Example.com"])
def test_login_email_is_case_insensitive(registered: Client, email: str) -> None:
    registered.jar.clear()
    response = login(registered, email=email)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "alice1"


def test_unknown_email_and_wrong_password_get_the_same_answer(registered: Client) -> None:
    registered.jar.clear()
    unknown = login(registered, email="nobody@example.com")
    wrong = login(registered, password=PASSWORD + "!")
    for response in (unknown, wrong):
        assert response.status_code == 401, response.text
        assert _problem_code(response) == "invalid_credentials"
        assert "set-cookie" not in response.headers
    assert unknown.json() == wrong.json()
    assert unknown.content == wrong.content
    assert unknown.headers["content-type"] == wrong.headers["content-type"]
    assert registered.cookie("access") is None


def test_who_am_i(registered: Client) -> None:
    response = registered.get("/api/user")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user"}
    assert set(body["user"]) == USER_KEYS
    assert body["user"]["username"] == "alice1"
    assert body["user"]["email"] == "alice@example.com"
    assert body["user"]["verified"] is False


def test_who_am_i_needs_a_session(client: Client) -> None:
    response = client.get("/api/user")
    assert response.status_code == 401
    assert _problem_code(response) == "authentication_required"


# --- users of the Node original ------------------------------------------------------------------


def test_a_node_era_user_signs_in_and_is_upgraded(client: Client, mongo: Any) -> None:
    password = "node era password"
    old_hash = _insert_node_user(mongo, password)

    response = login(client, email="bob.node@example.com", password=password)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert set(user) == USER_KEYS
    assert user["username"] == "bobnode"
    assert user["email"] == "Bob.Node@Example.com"
    assert user["verified"] is True
    assert old_hash not in response.text

    stored = mongo.users.find_one({"username": "bobnode"})
    assert stored["hash"].startswith("$argon2id$"), "the bcrypt hash is replaced on sign-in"
    assert stored["emailNormalized"] == "bob.node@example.com"
    assert stored["email"] == "Bob.Node@Example.com", "the address as typed is kept"

    client.jar.clear()
    again = login(client, email="Bob.Node@Example.com", password=password)
    assert again.status_code == 200, again.text
    assert client.get("/api/user").json()["user"]["username"] == "bobnode"
    wrong = login(client, email="bob.node@example.com", password="not the node password")
    assert wrong.status_code == 401


def test_a_node_era_user_with_a_wrong_password_keeps_the_old_hash(client: Client,
                                                                 mongo: Any) -> None:
    old_hash = _insert_node_user(mongo, "node era password")
    response = login(client, email="bob.node@example.com", password="node era passwore")
    assert response.status_code == 401
    assert _problem_code(response) == "invalid_credentials"
    assert mongo.users.find_one({"username": "bobnode"})["hash"] == old_hash


def test_a_node_era_password_longer_than_72_bytes_still_works(client: Client,
                                                              mongo: Any) -> None:
    password = "a long node-era passphrase " + "0123456789" * 6
    password = password[:80]
    assert len(password.encode()) == 80
    _insert_node_user(mongo, password)

    response = login(client, email="bob.node@example.com", password=password)
    assert response.status_code == 200, response.text
    stored = mongo.users.find_one({"username": "bobnode"})
    assert stored["hash"].startswith("$argon2id$")

    client.jar.clear()
    again = login(client, email="bob.node@example.com", password=password)
    assert again.status_code == 200, again.text


def test_a_node_era_address_cannot_be_registered_again(client: Client, mongo: Any) -> None:
    _insert_node_user(mongo, "node era password")
    taken = _register_raw(client, username="another1", email="bob.node@example.com",
                          password=PASSWORD)
    assert taken.status_code == 409, taken.text
    assert _problem_code(taken) == "email_taken"
    name_taken = _register_raw(client, username="BobNode", email="new@example.com",
                               password=PASSWORD)
    assert name_taken.status_code == 409, name_taken.text
    assert _problem_code(name_taken) == "username_taken"


# --- nothing secret leaves the service -----------------------------------------------------------


def _assert_no_secret(response: httpx.Response, *secrets: str) -> None:
    everything = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for marker in ("$argon2", "$2b$", "$2a$", *secrets):
        assert marker not in everything, f"{response.request.method} {response.request.url.path}"


def test_no_answer_carries_a_hash_or_the_password(client: Client, mongo: Any) -> None:
    responses = [register(client), login(client)]
    responses.append(client.post("/api/auth/refresh", json={}))
    responses.append(client.get("/api/user"))
    responses.append(client.put("/api/user/password/change",
                                json={"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}))
    responses.append(client.put("/api/user/password/change",
                                json={"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}))
    responses.append(login(client, password=PASSWORD))
    responses.append(login(client, password=NEW_PASSWORD))
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 403, 401, 200]

    stored_hash = mongo.users.find_one({"username": "alice1"})["hash"]
    digest = stored_hash.rsplit("$", 1)[-1]
    for response in responses:
        _assert_no_secret(response, PASSWORD, NEW_PASSWORD, digest)


def test_a_node_era_sign_in_answer_carries_no_hash(client: Client, mongo: Any) -> None:
    password = "node era password"
    old_hash = _insert_node_user(mongo, password)
    response = login(client, email="bob.node@example.com", password=password)
    assert response.status_code == 200
    _assert_no_secret(response, password, old_hash[7:])
