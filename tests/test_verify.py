"""hecate.verify, the library downstream services verify access tokens with: tokens minted as
Hecate mints them, Flask, Starlette and FastAPI apps using the helpers, a JWKS served over HTTP,
and one access cookie from the real service."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from conftest import TEST_SECRET, Service, register
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hecate.verify import HecateAuthMiddleware, InvalidToken, Verifier, key_id, verify_access_token

OLD_SECRET = "old-secret-" + "y" * 40
APP = "http://app.example"
EVIL = "http://evil.example"


def mint(secret: str = TEST_SECRET, *, headers: dict[str, Any] | None = None,
         algorithm: str = "HS256", key: Any = None, **claims: Any) -> str:
    """An access token shaped as hecate.core.tokens.issue_access makes it; a claim given as None
    is left out."""
    now = int(time.time())
    body: dict[str, Any] = {"id": "u1", "sub": "u1", "sid": "s1", "verified": True,
                            "type": "access", "iss": "hecate", "iat": now, "exp": now + 900,
                            "jti": uuid.uuid4().hex[:16]}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    header = {"kid": key_id(secret)} if headers is None else headers
    return jwt.encode(body, key if key is not None else secret, algorithm=algorithm,
                      headers=header)


def refused(token: str, **options: Any) -> str:
    options.setdefault("secret", TEST_SECRET)
    with pytest.raises(InvalidToken) as caught:
        verify_access_token(token, **options)
    assert not token or token not in str(caught.value)
    return str(caught.value)


# The token -------------------------------------------------------------------------------------
def test_valid_token_gives_its_claims() -> None:
    claims = verify_access_token(mint(), secret=TEST_SECRET)
    assert claims["id"] == claims["sub"] == "u1" and claims["type"] == "access"


def test_expired_token_is_refused_after_the_leeway() -> None:
    assert "expired" in refused(mint(exp=int(time.time()) - 60))
    assert verify_access_token(mint(exp=int(time.time()) - 10), secret=TEST_SECRET)
    assert "expired" in refused(mint(exp=int(time.time()) - 10), leeway=0)


def test_refresh_token_is_refused() -> None:
    assert "not an access token" in refused(mint(type="refresh"))
    assert "not an access token" in refused(mint(type=None))


def test_wrong_or_missing_issuer_is_refused() -> None:
    assert "issuer" in refused(mint(iss="someone-else"))
    refused(mint(iss=None))
    assert verify_access_token(mint(iss="auth.example"), secret=TEST_SECRET,
                               issuer="auth.example")


def test_audience() -> None:
    assert verify_access_token(mint(aud="notes"), secret=TEST_SECRET, audience="notes")
    assert "audience" in refused(mint(aud="billing"), audience="notes")
    refused(mint(), audience="notes")  # JWT_AUDIENCE set: a token without aud is refused
    refused(mint(aud="notes"))  # a token for an audience, a verifier without one


def test_missing_claims_are_refused() -> None:
    refused(mint(exp=None))
    refused(mint(sub=None))
    refused(mint(sub=""))


def test_tampered_token_is_refused() -> None:
    head, body, signature = mint().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = claims["id"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert "signature" in refused(f"{head}.{forged}.{signature}")


@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_alg_none_and_other_algorithms_are_refused() -> None:
    assert "algorithm" in refused(mint(algorithm="none", key="", headers={}))
    assert "algorithm" in refused(mint(algorithm="HS512"))


def test_wrong_key_is_refused() -> None:
    assert "signature" in refused(mint(OLD_SECRET))
    assert "signature" in refused(mint(OLD_SECRET, headers={}))


def test_malformed_tokens_are_refused() -> None:
    for token in ("", "abc", "a.b.c", "x" * 5000):
        refused(token)


def test_rotated_secret_list() -> None:
    rotating = f"{TEST_SECRET} {OLD_SECRET}"  # JWT_SECRET="NEW OLD"
    for token in (mint(), mint(OLD_SECRET), mint(OLD_SECRET, headers={})):
        assert verify_access_token(token, secret=rotating)["sub"] == "u1"
        assert verify_access_token(token, secret=[TEST_SECRET, OLD_SECRET])["sub"] == "u1"
    # A kid names one key: a token signed with another is not tried against the rest.
    refused(mint(OLD_SECRET, headers={"kid": key_id(TEST_SECRET)}), secret=rotating)
    refused(mint(OLD_SECRET))  # the old key dropped


def test_configuration_errors() -> None:
    with pytest.raises(ValueError):
        Verifier()
    with pytest.raises(ValueError):
        Verifier(secret=TEST_SECRET, allowed_origins=["*"])


def test_importable_without_the_server_dependencies() -> None:
    code = ("import sys, hecate.verify\n"
            "heavy = {'flask', 'starlette', 'fastapi', 'connexion', 'hecate.core', 'hecate.app',"
            " 'mongoengine', 'pymongo'}\n"
            "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


REPO = Path(__file__).resolve().parent.parent


def test_the_verify_extra_installs_none_of_the_servers_dependencies(tmp_path: Path) -> None:
    """`pip install 'hecate[verify]'` into an empty environment: hecate.verify works there (it
    verifies a token and refuses a forged one) and nothing of the server came with it."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = env / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{REPO}[verify]"], capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    token = jwt.encode({"sub": "u1", "id": "u1", "type": "access", "iss": "hecate",
                        "iat": int(time.time()), "exp": int(time.time()) + 60},
                       TEST_SECRET, algorithm="HS256", headers={"kid": key_id(TEST_SECRET)})
    code = (
        "import importlib.util, sys\n"
        "from hecate.verify import InvalidToken, verify_access_token\n"
        f"claims = verify_access_token({token!r}, secret={TEST_SECRET!r})\n"
        "assert claims['sub'] == 'u1', claims\n"
        "try:\n"
        f"    verify_access_token({token!r}, secret='another secret of enough length!')\n"
        "    sys.exit('a token signed with another secret was accepted')\n"
        "except InvalidToken:\n"
        "    pass\n"
        "server = ['connexion', 'flask', 'starlette', 'mongoengine', 'pymongo', 'argon2',\n"
        "          'passlib', 'limits', 'flask_mail', 'uvicorn', 'prometheus_client']\n"
        "present = [m for m in server if importlib.util.find_spec(m) is not None]\n"
        "assert not present, present\n")
    checked = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr[-3000:]
    # The console script says what is missing instead of a traceback.
    serve = subprocess.run([str(env / "bin" / "hecate"), "serve"], capture_output=True,
                           text=True, timeout=60, check=False)
    assert serve.returncode == 2
    assert "pip install 'hecate[server]'" in serve.stderr
    assert "Traceback" not in serve.stderr


# Flask -----------------------------------------------------------------------------------------
def flask_app(**options: Any) -> Any:
    import flask

    options.setdefault("secret", TEST_SECRET)
    verifier = Verifier(allowed_origins=[APP], **options)
    app = flask.Flask(__name__)

    @app.route("/notes", methods=["GET", "POST", "DELETE"])
    @verifier.require_user
    def notes() -> Any:
        return {"user": flask.g.user_id, "sid": flask.g.token_claims["sid"]}

    return app.test_client()


def test_flask_cookie_and_bearer() -> None:
    client = flask_app()
    client.set_cookie("access", mint())
    assert client.get("/notes").get_json() == {"user": "u1", "sid": "s1"}
    bearer = flask_app().get("/notes", headers={"Authorization": f"Bearer {mint()}"})
    assert bearer.status_code == 200 and bearer.get_json()["user"] == "u1"


def test_flask_cookie_prefix() -> None:
    client = flask_app(cookie_prefix="__Host-")
    client.set_cookie("access", mint())
    assert client.get("/notes").status_code == 401
    client.set_cookie("__Host-access", mint())
    assert client.get("/notes").status_code == 200


def test_flask_401_problems() -> None:
    client = flask_app()
    missing = client.get("/notes")
    assert missing.status_code == 401
    assert missing.headers["Content-Type"] == "application/problem+json"
    body = missing.get_json(force=True)
    assert body["code"] == "authentication_required" and body["status"] == 401
    assert set(body) == {"type", "title", "status", "detail", "code", "message"}
    assert body["message"] == body["detail"]
    client.set_cookie("access", mint(exp=int(time.time()) - 3600))
    expired = client.get("/notes")
    assert expired.status_code == 401
    assert expired.get_json(force=True)["code"] == "invalid_token"
    assert "WWW-Authenticate" in expired.headers


def test_flask_origin_check() -> None:
    client = flask_app()
    client.set_cookie("access", mint())
    assert client.post("/notes", headers={"Origin": APP}).status_code == 200
    assert client.get("/notes", headers={"Origin": EVIL}).status_code == 200
    for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Referer": EVIL + "/page"},
                    {"Sec-Fetch-Site": "cross-site"}):
        for method in ("POST", "DELETE"):
            answer = client.open("/notes", method=method, headers=headers)
            assert answer.status_code == 403, (method, headers)
            assert answer.get_json(force=True)["code"] == "origin_not_allowed"
    assert client.post("/notes", headers={"Referer": APP + "/notes"}).status_code == 200
    assert client.post("/notes").status_code == 200  # no browser: curl, server to server
    # The service's own pages (scheme, host and port of the request).
    assert client.post("/notes", headers={"Origin": "http://localhost"}).status_code == 200


# Starlette and FastAPI -------------------------------------------------------------------------
def starlette_app(verifier: Verifier) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def notes(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.user["sub"]})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/notes", notes, methods=["GET", "POST"]),
                             Route("/health", health)],
                     middleware=[Middleware(HecateAuthMiddleware, verifier=verifier,
                                            public_paths=["/health"])])


def test_starlette_middleware() -> None:
    from starlette.testclient import TestClient

    app = starlette_app(Verifier(secret=TEST_SECRET, allowed_origins=[APP]))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        missing = client.get("/notes")
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["code"] == "authentication_required"
        client.cookies.set("access", mint())
        assert client.get("/notes").json() == {"user": "u1"}
        assert client.post("/notes", headers={"Origin": APP}).status_code == 200
        foreign = client.post("/notes", headers={"Origin": EVIL})
        assert foreign.status_code == 403 and foreign.json()["code"] == "origin_not_allowed"
        client.cookies.set("access", mint(type="refresh"))
        assert client.get("/notes").json()["code"] == "invalid_token"


def test_middleware_inside_cors_as_the_readme_shows() -> None:
    from starlette.middleware.cors import CORSMiddleware
    from starlette.testclient import TestClient

    app = starlette_app(Verifier(secret=TEST_SECRET, allowed_origins=[APP]))
    app.add_middleware(CORSMiddleware, allow_origins=[APP], allow_credentials=True,
                       allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
    with TestClient(app) as client:
        preflight = client.options("/notes", headers={
            "Origin": APP, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-credentials"] == "true"
        refused = client.get("/notes", headers={"Origin": APP})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == APP  # the SPA can read it


def test_middleware_guards_websockets() -> None:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"user": websocket.state.user["sub"]})
        await websocket.close()

    app = HecateAuthMiddleware(Starlette(routes=[WebSocketRoute("/ws", echo)]),
                               Verifier(secret=TEST_SECRET))
    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws") as ws:
            ws.receive_json()
        client.cookies.set("access", mint())
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"user": "u1"}


def fastapi_app(verifier: Verifier, problems: bool) -> Any:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    if problems:
        verifier.install_problem_handler(app)

    @app.get("/notes")
    async def notes(user: dict = fastapi.Depends(verifier.fastapi_user)) -> dict:  # noqa: B008
        return {"user": user["sub"]}

    @app.post("/notes")
    def create(user: dict = fastapi.Depends(verifier.fastapi_user)) -> dict:  # noqa: B008
        return {"user": user["sub"]}

    return app


def test_fastapi_dependency() -> None:
    from starlette.testclient import TestClient

    verifier = Verifier(secret=TEST_SECRET, allowed_origins=[APP])
    with TestClient(fastapi_app(verifier, problems=True)) as client:
        missing = client.get("/notes")
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["code"] == "authentication_required"
        assert client.get("/notes", headers={"Authorization": f"Bearer {mint()}"}).json() == {
            "user": "u1"}
        client.cookies.set("access", mint())
        assert client.get("/notes").json() == {"user": "u1"}
        assert client.post("/notes", headers={"Origin": EVIL}).json()["code"] == \
            "origin_not_allowed"
    with TestClient(fastapi_app(verifier, problems=False)) as client:
        # Without the handler: FastAPI's own rendering, the problem under "detail".
        answer = client.get("/notes", headers={"Authorization": "Bearer nonsense"})
        assert answer.status_code == 401 and answer.json()["detail"]["code"] == "invalid_token"


# JWKS ------------------------------------------------------------------------------------------
class JwksServer:
    """A JWKS endpoint on a free port that counts its requests."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def add(self, private_key: Any, kid: str) -> None:
        jwk = json.loads(_public_jwk(private_key))
        self.keys.append({**jwk, "kid": kid, "use": "sig"})


def _public_jwk(private_key: Any) -> str:
    public = private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return str(jwt.algorithms.ECAlgorithm.to_jwk(public))
    if isinstance(public, rsa.RSAPublicKey):
        return str(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    return str(jwt.algorithms.OKPAlgorithm.to_jwk(public))


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.http.shutdown()
    server.http.server_close()


def signed(private_key: Any, algorithm: str, kid: str, **claims: Any) -> str:
    return mint(headers={"kid": kid}, algorithm=algorithm, key=private_key, **claims)


def test_jwks_keys_are_cached_and_refetched_for_an_unknown_kid(jwks: JwksServer) -> None:
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks.add(first, "k1")
    verifier = Verifier(jwks_url=jwks.url, jwks_refetch_cooldown=60)
    for _ in range(5):
        assert verifier.verify(signed(first, "ES256", "k1"))["sub"] == "u1"
    assert jwks.requests == 1
    # A new key (rotation on Hecate's side): the unknown kid fetches the set again, once.
    jwks.add(second, "k2")
    assert verifier.verify(signed(second, "ES256", "k2"))["sub"] == "u1"
    assert verifier.verify(signed(first, "ES256", "k1"))["sub"] == "u1"
    assert jwks.requests == 2
    # Made-up kids do not hammer the endpoint: at most one refetch per cooldown.
    for n in range(5):
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(signed(second, "ES256", f"nope{n}"))
    assert jwks.requests == 2


def test_jwks_set_expires_after_its_lifespan(jwks: JwksServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.add(key, "k1")
    verifier = Verifier(jwks_url=jwks.url, jwks_lifespan=0.2)
    verifier.verify(signed(key, "ES256", "k1"))
    time.sleep(0.3)
    verifier.verify(signed(key, "ES256", "k1"))
    assert jwks.requests == 2


def test_jwks_rs256_and_eddsa(jwks: JwksServer) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    jwks.add(rsa_key, "r1")
    jwks.add(ed_key, "e1")
    assert verify_access_token(signed(rsa_key, "RS256", "r1"), jwks_url=jwks.url)
    assert verify_access_token(signed(ed_key, "EdDSA", "e1"), jwks_url=jwks.url)
    assert jwks.requests == 1  # verify_access_token keeps the verifier (and its keys)


def test_jwks_refuses_none_hmac_and_mismatched_algorithms(jwks: JwksServer) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.add(ec_key, "k1")
    jwks.add(rsa_key, "r1")
    verifier = Verifier(jwks_url=jwks.url)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forgeries = [
        mint(algorithm="none", key="", headers={"kid": "k1"}),
        mint(headers={"kid": "k1"}),  # HS256 with some secret
        # The public key as an HMAC secret (the classic confusion attack); pyjwt refuses to
        # sign with a PEM, so sign by hand.
        _hs256_by_hand(public_pem, "r1"),
        signed(rsa_key, "RS256", "k1"),  # an RSA signature under the EC key's kid
        signed(ec_key, "ES256", "r1"),
        signed(rsa_key, "RS512", "r1"),  # not an algorithm we accept
    ]
    for token in forgeries:
        with pytest.raises(InvalidToken):
            verifier.verify(token)
    assert verifier.verify(signed(rsa_key, "RS256", "r1"))["sub"] == "u1"


def _hs256_by_hand(secret: bytes, kid: str) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "."
                     + b64(json.dumps({"sub": "u1", "type": "access", "iss": "hecate",
                                       "exp": now + 900}).encode()))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_jwks_unreachable_is_an_invalid_token() -> None:
    verifier = Verifier(jwks_url="http://127.0.0.1:9/jwks.json", jwks_timeout=1)
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidToken, match="could not be fetched"):
        verifier.verify(signed(key, "ES256", "k1"))


def test_jwks_behind_the_asgi_middleware(jwks: JwksServer) -> None:
    from starlette.testclient import TestClient

    key = ec.generate_private_key(ec.SECP256R1())
    jwks.add(key, "k1")
    app = starlette_app(Verifier(jwks_url=jwks.url, secret=TEST_SECRET))
    with TestClient(app) as client:
        for token in (signed(key, "ES256", "k1"), mint()):  # during a move to asymmetric keys
            answer = client.get("/notes", headers={"Authorization": f"Bearer {token}"})
            assert answer.json() == {"user": "u1"}
    assert jwks.requests == 1


# The real service ------------------------------------------------------------------------------
def test_access_cookie_of_the_real_service(start_service: Callable[..., Service]) -> None:
    service = start_service()
    client = service.client()
    user = register(client).json()["user"]
    claims = verify_access_token(client.cookie("access") or "", secret=TEST_SECRET)
    assert claims["id"] == claims["sub"] == user["id"]
    assert claims["verified"] is False and claims["sid"]
