"""Asymmetric signing (JWT_ALGORITHM=RS256, ES256, EdDSA) and the JWKS: settings checks, the
published key set, downstream verification against the running service with no secret, key
rotation, and the move from HS256."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import jwt
import pytest
from conftest import TEST_SECRET, Service, register
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import strategies as st
from test_tokens import any_text, json_values, near_valid_claims

from hecate.core import keys
from hecate.core.errors import Problem
from hecate.core.settings import Settings, SettingsError
from hecate.core.tokens import TokenService
from hecate.verify import InvalidToken, Verifier, verify_access_token

ALGORITHMS = ["RS256", "ES256", "EdDSA"]
JWKS_PATH = "/api/.well-known/jwks.json"


def new_key(algorithm: str) -> Any:
    if algorithm == "RS256":  # 2048 bits: the smallest accepted, the fastest to generate
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return keys.generate(algorithm)


def pem(key: Any) -> str:
    return keys.private_pem(key).decode()


def public_pem(key: Any) -> str:
    return keys.public_pem(key.public_key()).decode()


def header(token: str | None) -> dict[str, Any]:
    assert token, "no token"
    head = token.split(".")[0]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return value


def settings(**env: str) -> Settings:
    return Settings.from_env({"APP_URL": "https://app.example", **env})


def settings_error(**env: str) -> str:
    with pytest.raises(SettingsError) as caught:
        settings(**env)
    return str(caught.value)


# Settings --------------------------------------------------------------------------------------
def test_an_unknown_algorithm_is_refused_naming_the_variable() -> None:
    for value in ("PS256", "none", "HS512", "RS512"):
        message = settings_error(JWT_ALGORITHM=value, JWT_SECRET=TEST_SECRET)
        assert message.startswith(f"JWT_ALGORITHM={value!r}")
    assert settings(JWT_ALGORITHM="eddsa",
                    JWT_PRIVATE_KEY=pem(new_key("EdDSA"))).jwt_algorithm == "EdDSA"


def test_an_asymmetric_algorithm_needs_a_private_key() -> None:
    message = settings_error(JWT_ALGORITHM="ES256", JWT_SECRET=TEST_SECRET)
    assert message.startswith("JWT_PRIVATE_KEY is not set") and "hecate keys generate" in message


def test_a_private_key_with_hs256_is_refused() -> None:
    # Fail closed: whoever set the key expects tokens signed with it, not with the secret.
    message = settings_error(JWT_SECRET=TEST_SECRET, JWT_PRIVATE_KEY=pem(new_key("ES256")))
    assert message.startswith("JWT_PRIVATE_KEY is set but JWT_ALGORITHM is HS256")


@pytest.mark.parametrize(("algorithm", "key", "found"), [
    ("RS256", lambda: ec.generate_private_key(ec.SECP256R1()), "an EC key on curve secp256r1"),
    ("ES256", lambda: ed25519.Ed25519PrivateKey.generate(), "an Ed25519 key"),
    ("ES256", lambda: ec.generate_private_key(ec.SECP384R1()), "an EC key on curve secp384r1"),
    ("EdDSA", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
     "an RSA key of 2048 bits"),
])
def test_a_key_of_another_type_than_the_algorithm_is_refused(
        algorithm: str, key: Callable[[], Any], found: str) -> None:
    message = settings_error(JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY=pem(key()))
    assert message.startswith(f"JWT_PRIVATE_KEY holds {found}, but JWT_ALGORITHM={algorithm}")


def test_a_short_rsa_key_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert "at least 2048 bits" in settings_error(JWT_ALGORITHM="RS256", JWT_PRIVATE_KEY=pem(weak))


def test_unreadable_keys_are_refused_naming_the_variable(tmp_path: Path) -> None:
    key = new_key("ES256")
    missing = tmp_path / "missing.pem"
    message = settings_error(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=str(missing))
    assert message.startswith("JWT_PRIVATE_KEY: cannot read the key file") and \
        "No such file" in message
    (tmp_path / "garbage.pem").write_text("not a key at all")
    assert "no PEM key" in settings_error(JWT_ALGORITHM="ES256",
                                          JWT_PRIVATE_KEY=str(tmp_path / "garbage.pem"))
    broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    assert settings_error(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=broken) == \
        "JWT_PRIVATE_KEY is not a readable PEM private key"
    assert "not a private key" in settings_error(JWT_ALGORITHM="ES256",
                                                 JWT_PRIVATE_KEY=public_pem(key))
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"pass phrase")).decode()
    assert "encrypted" in settings_error(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=encrypted)
    assert "JWT_PREVIOUS_KEYS" in settings_error(
        JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=pem(key), JWT_PREVIOUS_KEYS=str(missing))
    assert settings_error(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=pem(key),
                          JWT_PREVIOUS_KEYS=broken.replace("PRIVATE", "PUBLIC")) == \
        "JWT_PREVIOUS_KEYS holds a PEM block that is not a readable public key"
    # The error never shows the key.
    assert pem(key).splitlines()[1] not in settings_error(
        JWT_ALGORITHM="RS256", JWT_PRIVATE_KEY=pem(key))


def test_keys_from_a_file_from_text_and_from_text_with_escaped_newlines(tmp_path: Path) -> None:
    key = new_key("ES256")
    path = tmp_path / "signing.pem"
    path.write_text(pem(key))
    kid = keys.public_key(key.public_key()).kid
    for value in (str(path), pem(key), pem(key).replace("\n", "\\n")):
        loaded = settings(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=value)
        assert loaded.jwt_signing_key is not None and loaded.jwt_signing_key.kid == kid
        assert loaded.jwt_secrets == ()  # no JWT_SECRET needed, none generated


def test_previous_keys_as_pem_text_or_paths_public_or_private(tmp_path: Path) -> None:
    signing, old_rsa, old_ed = new_key("ES256"), new_key("RS256"), new_key("EdDSA")
    (tmp_path / "rsa.pub.pem").write_text(public_pem(old_rsa))
    (tmp_path / "ed.pem").write_text(pem(old_ed))  # a private key: only its public part is kept
    expected = [keys.public_key(k.public_key()).kid for k in (signing, old_rsa, old_ed)]
    for previous in (f"{tmp_path / 'rsa.pub.pem'} {tmp_path / 'ed.pem'}",
                     public_pem(old_rsa) + pem(old_ed)):
        loaded = settings(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=pem(signing),
                          JWT_PREVIOUS_KEYS=previous)
        assert [k.kid for k in loaded.jwt_public_keys] == expected
        assert [k.algorithm for k in loaded.jwt_public_keys] == ["ES256", "RS256", "EdDSA"]


def test_jwt_secret_in_asymmetric_mode_is_optional_but_still_checked() -> None:
    key = pem(new_key("EdDSA"))
    assert settings(JWT_ALGORITHM="EdDSA", JWT_PRIVATE_KEY=key).jwt_secrets == ()
    assert "32 bytes" in settings_error(JWT_ALGORITHM="EdDSA", JWT_PRIVATE_KEY=key,
                                        JWT_SECRET="short")


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
    assert keys.thumbprint({"crv": "Ed25519", "kty": "OKP",
                            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}) == \
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    # RSA and EC: the same members as pyjwt's own JWK of the key.
    for algorithm, to_jwk, members in (
            ("RS256", jwt.algorithms.RSAAlgorithm.to_jwk, ("kty", "n", "e")),
            ("ES256", jwt.algorithms.ECAlgorithm.to_jwk, ("kty", "crv", "x", "y"))):
        key = new_key(algorithm)
        theirs = to_jwk(key.public_key(), as_dict=True)
        assert keys.public_key(key.public_key()).kid == \
            keys.thumbprint({m: theirs[m] for m in members})


# The JWKS endpoint -----------------------------------------------------------------------------
def test_hs256_publishes_an_empty_key_set_and_never_the_secret(service: Service) -> None:
    answer = httpx.get(service.base_url + JWKS_PATH)
    assert answer.status_code == 200
    assert answer.json() == {"keys": []}
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert answer.headers["content-type"].startswith("application/json")
    assert TEST_SECRET not in answer.text


def asymmetric(start_service: Callable[..., Service], key: Any, **env: str) -> Service:
    algorithm = keys.algorithm_of(key.public_key())
    assert algorithm
    return start_service(JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY=pem(key),
                         JWT_SECRET="", **env)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_downstream_verifies_the_real_cookie_with_the_jwks_and_no_secret(
        start_service: Callable[..., Service], algorithm: str) -> None:
    key = new_key(algorithm)
    kid = keys.public_key(key.public_key()).kid
    service = asymmetric(start_service, key)
    client = service.client()
    user = register(client).json()["user"]

    published = httpx.get(service.base_url + JWKS_PATH)
    assert published.headers["cache-control"] == "public, max-age=300"
    assert [(k["kid"], k["alg"], k["use"]) for k in published.json()["keys"]] == \
        [(kid, algorithm, "sig")]
    assert "d" not in published.json()["keys"][0]  # the private part of any key type

    for name in ("access", "refresh"):
        assert header(client.cookie(name)) == {"alg": algorithm, "kid": kid, "typ": "JWT"}
    claims = verify_access_token(client.cookie("access") or "",
                                 jwks_url=service.base_url + JWKS_PATH)
    assert claims["sub"] == user["id"] and claims["type"] == "access"
    with pytest.raises(InvalidToken):
        verify_access_token(client.cookie("access") or "", secret=TEST_SECRET)

    # Hecate itself: who-am-I and refresh work with the asymmetric tokens.
    assert client.get("/api/user").status_code == 200
    assert client.post("/api/auth/refresh").status_code == 200
    assert header(client.cookie("refresh"))["kid"] == kid


class CountingProxy:
    """Forwards GETs to a Hecate that can be swapped (a rolling deploy behind one URL) and counts
    them: how often a downstream verifier fetches the key set."""

    def __init__(self) -> None:
        self.upstream = ""
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.requests += 1
                answer = httpx.get(proxy.upstream + self.path)
                self.send_response(answer.status_code)
                for name in ("content-type", "cache-control"):
                    self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}{JWKS_PATH}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    server = CountingProxy()
    yield server
    server.http.shutdown()
    server.http.server_close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rotation_keeps_old_tokens_valid_and_downstream_refetches_once(
        start_service: Callable[..., Service], proxy: CountingProxy, tmp_path: Path,
        algorithm: str) -> None:
    old_key, new = new_key(algorithm), new_key(algorithm)
    old_kid, new_kid = (keys.public_key(k.public_key()).kid for k in (old_key, new))
    before = asymmetric(start_service, old_key)
    proxy.upstream = before.base_url
    alice = before.client()
    register(alice)
    old_access = alice.cookie("access")
    assert header(old_access)["kid"] == old_kid
    verifier = Verifier(jwks_url=proxy.url)  # keeps the set 300 s, refetches after 10 s at most
    for _ in range(3):
        assert verifier.verify(old_access or "")["type"] == "access"
    assert proxy.requests == 1

    # Rotation: the new key signs, the old one's public key stays published. The new key comes
    # from a file this time, the previous one as a public key file.
    (tmp_path / "new.pem").write_text(pem(new))
    (tmp_path / "old.pub.pem").write_text(public_pem(old_key))
    after = start_service(JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY=str(tmp_path / "new.pem"),
                          JWT_PREVIOUS_KEYS=str(tmp_path / "old.pub.pem"), JWT_SECRET="")
    proxy.upstream = after.base_url
    assert [k["kid"] for k in httpx.get(after.base_url + JWKS_PATH).json()["keys"]] == \
        [new_kid, old_kid]

    # Hecate accepts the tokens the old key signed: no one is signed out.
    moved = after.client()
    moved.jar = dict(alice.jar)
    assert moved.get("/api/user").status_code == 200
    assert moved.post("/api/auth/refresh").status_code == 200
    assert header(moved.cookie("access"))["kid"] == new_kid

    bob = after.client()
    register(bob, username="bobby1", email="bob@example.com")
    new_access = bob.cookie("access") or ""
    assert header(new_access)["kid"] == new_kid
    # The downstream verifier has never seen the new kid: it fetches the set once, then both
    # the old and the new tokens verify from its cache.
    assert verifier.verify(new_access)["sub"] != verifier.verify(old_access or "")["sub"]
    assert verifier.verify(moved.cookie("access") or "")["type"] == "access"
    assert proxy.requests == 2
    # Tokens with made-up kids do not make it hammer Hecate: no refetch within the cooldown.
    forged_kid = jwt.encode(jwt.decode(new_access, options={"verify_signature": False}),
                            new, algorithm=algorithm, headers={"kid": "made-up"})
    for _ in range(5):
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(forged_kid)
    assert proxy.requests == 2
    assert verify_access_token(old_access or "", jwks_url=after.base_url + JWKS_PATH)

    # Once the old key is dropped, its tokens are refused.
    final = asymmetric(start_service, new)
    late = final.client()
    late.jar = {"access": alice.jar["access"]}
    assert late.get("/api/user").status_code == 401


def test_moving_from_hs256_keeps_sessions_while_jwt_secret_stays(
        start_service: Callable[..., Service]) -> None:
    hs = start_service()  # HS256 with TEST_SECRET
    alice = hs.client()
    register(alice)
    assert header(alice.cookie("access"))["alg"] == "HS256"
    key = new_key("ES256")
    during = start_service(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=pem(key))  # JWT_SECRET kept
    moved = during.client()
    moved.jar = dict(alice.jar)
    assert moved.get("/api/user").status_code == 200
    assert moved.post("/api/auth/refresh").status_code == 200
    assert header(moved.cookie("access"))["alg"] == "ES256"  # only the new key signs
    assert httpx.get(during.base_url + JWKS_PATH).json()["keys"][0]["alg"] == "ES256"

    done = asymmetric(start_service, key)  # JWT_SECRET unset: HS256 tokens are refused
    late = done.client()
    late.jar = dict(alice.jar)
    assert late.get("/api/user").status_code == 401
    assert late.post("/api/auth/refresh").status_code == 401


def test_tokens_are_not_bigger_than_a_cookie_can_hold(
        start_service: Callable[..., Service]) -> None:
    big = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    service = asymmetric(start_service, big)
    client = service.client()
    register(client)
    assert 0 < len(client.cookie("access") or "") < 2000
    assert client.get("/api/user").status_code == 200


def test_going_back_to_hs256_keeps_the_previous_keys_verifying() -> None:
    key = new_key("EdDSA")
    before = TokenService(settings(JWT_ALGORITHM="EdDSA", JWT_PRIVATE_KEY=pem(key)))
    token, _ = before.issue_access("u1", "s1", True)
    back = TokenService(settings(JWT_SECRET=TEST_SECRET, JWT_PREVIOUS_KEYS=public_pem(key)))
    assert back.algorithm == "HS256" and back.verify_access(token).user_id == "u1"
    assert [k["kid"] for k in json.loads(back.jwks)["keys"]] == [before.kid]
    hs_token, _ = back.issue_access("u2", "s2", False)
    assert header(hs_token)["alg"] == "HS256"
    assert TokenService(settings(JWT_SECRET=TEST_SECRET)).jwks == '{"keys":[]}'


# Property test: whatever a client sends, verification in asymmetric mode fails with a 401 ----
_ES_KEY = keys.generate("ES256")
_ES_KID = keys.public_key(_ES_KEY.public_key()).kid
_ES_TOKENS = TokenService(settings(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=pem(_ES_KEY)))
_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256", "RS256", "EdDSA", "HS256", "none", "es256"]) | json_values},
    optional={"kid": st.just(_ES_KID) | json_values, "typ": st.just("JWT") | json_values})


def _b64json(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(any_text | st.builds(
    lambda head, claims, signature: f"{_b64json(head)}.{_b64json(claims)}.{signature}",
    _headers, near_valid_claims(), st.text(alphabet="AB-_x", max_size=90)))
def test_asymmetric_verification_of_any_text_fails_only_with_a_401_problem(token: str) -> None:
    for verify in (_ES_TOKENS.verify_access, _ES_TOKENS.verify_refresh):
        with pytest.raises(Problem) as caught:
            verify(token)
        assert caught.value.status == 401
