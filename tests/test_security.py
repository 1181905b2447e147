"""Attacks that cut across the flows: timing-based account enumeration, algorithm confusion, and
secrets leaking into answers."""

from __future__ import annotations

import base64
import json
import statistics
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import PASSWORD, TEST_SECRET, Inbox, Service, login, register


def test_unknown_email_and_wrong_password_take_the_same_time(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(LIMITER_ENABLED="false")
    register(service.client())
    client = service.client()
    for _ in range(3):  # warm up: the dummy hash is computed on first use
        login(client, email="nobody@example.com", password="wrong password")
    unknown: list[float] = []
    wrong: list[float] = []
    for _ in range(30):  # interleaved, so machine noise hits both alike
        for email, samples in (("nobody@example.com", unknown), ("alice@example.com", wrong)):
            started = time.perf_counter()
            response = login(client, email=email, password="wrong password")
            samples.append(time.perf_counter() - started)
            assert response.status_code == 401
    a, b = statistics.median(unknown), statistics.median(wrong)
    assert abs(a - b) / max(a, b) < 0.25, (a, b)


def test_identical_answers_for_unknown_email_and_wrong_password(service: Service) -> None:
    register(service.client())
    client = service.client()
    first = login(client, email="nobody@example.com", password="wrong password")
    second = login(client, email="alice@example.com", password="wrong password")
    assert first.status_code == second.status_code == 401
    assert first.json() == second.json()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_hs_rs_algorithm_confusion_is_refused(registered: object, service: Service) -> None:
    """An RS256 token 'signed' with a public key used as an HMAC secret (the classic confusion)
    and an RS256 token signed with a real private key are both refused: only HS256 is accepted."""
    client = registered
    good = jwt.decode(client.cookie("access"), TEST_SECRET, algorithms=["HS256"])  # type: ignore[attr-defined]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(good).encode())
    signature = _b64(hmac.new(public_pem, f"{header}.{payload}".encode(),
                              hashlib.sha256).digest())
    confused = f"{header}.{payload}.{signature}"
    really_rs = jwt.encode(good, key, algorithm="RS256")
    for token in (confused, really_rs):
        response = service.client().get("/api/user", headers={"Cookie": f"access={token}"})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_algorithm_confusion_is_refused_with_asymmetric_keys(
    start_service: Callable[..., Service], algorithm: str,
) -> None:
    """With JWT_ALGORITHM=RS256/ES256/EdDSA: HS256 'signed' with the public key text (the PEM
    downstream services may hold, or its JWK), HS256 with the old shared secret, another key
    under the real kid, another algorithm under the real kid, and alg none are all refused."""
    import hashlib
    import hmac

    from hecate.core import keys
    from hecate.core.tokens import key_id

    private = keys.generate(algorithm) if algorithm != "RS256" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = keys.public_key(private.public_key()).kid
    service = start_service(JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY=keys.private_pem(
        private).decode(), JWT_SECRET="")
    client = service.client()
    register(client)
    genuine = client.cookie("access") or ""
    assert client.get("/api/user").status_code == 200
    claims = jwt.decode(genuine, options={"verify_signature": False})
    jwks_text = service.client().get("/api/.well-known/jwks.json").text

    def hs256_by_hand(secret: bytes, head: dict[str, str]) -> str:
        signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{signing_input}." + _b64(hmac.new(secret, signing_input.encode(),
                                                   hashlib.sha256).digest())

    public_pem = keys.public_pem(private.public_key())
    other = keys.generate(algorithm) if algorithm != "RS256" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    swapped = {"RS256": "ES256", "ES256": "EdDSA", "EdDSA": "RS256"}[algorithm]
    forgeries = {
        "public PEM as HMAC secret, real kid": hs256_by_hand(
            public_pem, {"alg": "HS256", "typ": "JWT", "kid": kid}),
        "public PEM as HMAC secret, no kid": hs256_by_hand(public_pem,
                                                           {"alg": "HS256", "typ": "JWT"}),
        "JWKS text as HMAC secret": hs256_by_hand(jwks_text.encode(),
                                                  {"alg": "HS256", "kid": kid}),
        "the old shared secret": jwt.encode(claims, TEST_SECRET, algorithm="HS256",
                                            headers={"kid": key_id(TEST_SECRET)}),
        "another key under the real kid": jwt.encode(claims, other, algorithm=algorithm,
                                                     headers={"kid": kid}),
        "another algorithm under the real kid": jwt.encode(
            claims, keys.generate(swapped), algorithm=swapped, headers={"kid": kid}),
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}."
                    f"{genuine.split('.')[1]}.",
        "genuine header and claims, signature of another token": ".".join(
            genuine.split(".")[:2] + [jwt.encode(claims, private, algorithm=algorithm,
                                                 headers={"kid": kid, "x": "1"}).split(".")[2]]),
    }
    for name, token in forgeries.items():
        response = service.client().get("/api/user", headers={"Cookie": f"access={token}"})
        assert response.status_code == 401, name
        assert response.json()["code"] == "invalid_token", name


@pytest.fixture
def crawled(start_service: Callable[..., Service], inbox: Inbox) -> list[str]:
    """The text of an answer of every operation, driven through a whole account lifecycle."""
    service = start_service(LIMITER_ENABLED="false", **inbox.env())
    client = service.client()
    answers = [register(client).text]
    token = inbox.link_token("alice@example.com")
    calls: list[tuple[str, str, dict[str, object] | None]] = [
        ("PUT", "/api/user/email/verification", {"token": token}),
        ("POST", "/api/user/email/verification/resend", {"email": "alice@example.com"}),
        ("POST", "/api/auth/login", {"email": "alice@example.com", "password": PASSWORD}),
        ("GET", "/api/user", None),
        ("POST", "/api/auth/refresh", None),
        ("PUT", "/api/user/password/change",
         {"oldPassword": PASSWORD, "newPassword": "second strong passphrase"}),
        ("POST", "/api/auth/magic.login/request", {"email": "alice@example.com"}),
        ("POST", "/api/user/password/reset/request", {"email": "alice@example.com"}),
        ("PUT", "/api/user/email/change",
         {"email": "alice@new.example", "password": "second strong passphrase"}),
        ("POST", "/api/user/email/change/cancel", {"token": "x" * 43}),
        ("PUT", "/api/user/password/reset", {"token": "y" * 43, "newPassword": "z" * 20}),
        ("POST", "/api/auth/magic.login", {"token": "z" * 43}),
        ("POST", "/api/auth/invalidate", None),
        ("POST", "/api/auth/login",
         {"email": "alice@example.com", "password": "second strong passphrase"}),
        ("POST", "/api/auth/logout", None),
        ("POST", "/api/auth/login",
         {"email": "alice@example.com", "password": "second strong passphrase"}),
        ("PUT", "/api/user/delete", {"password": "second strong passphrase"}),
        ("GET", "/api/health", None),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body) if body is not None else \
            client.request(method, path)
        assert response.status_code < 500, (path, response.text)
        answers.append(response.text + json.dumps(dict(response.headers)))
    return answers


def test_no_answer_carries_a_hash_or_a_secret(crawled: list[str]) -> None:
    for text in crawled:
        for needle in ("$argon2", "$2b$", "$2a$", TEST_SECRET, PASSWORD,
                       "second strong passphrase", '"hash"'):
            assert needle not in text
