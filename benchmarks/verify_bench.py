"""Microseconds per access-token verification with hecate.verify: HS256 with one secret and with
a rotation list, and ES256 / EdDSA / RS256 from a JWKS (served locally, keys cached after the
first fetch). Prints numbers; asserts nothing.

    python benchmarks/verify_bench.py [ROUNDS]
"""

from __future__ import annotations

import json
import sys
import threading
import time
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hecate.verify import Verifier, key_id

SECRET = "bench-secret-" + "x" * 40
OLD = "old-secret-" + "y" * 40


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {"id": "u1", "sub": "u1", "sid": "s1", "verified": True, "type": "access",
            "iss": "hecate", "iat": now, "exp": now + 900, "jti": "abcdefghijklmnop"}


def serve(keys: list[dict[str, Any]]) -> tuple[ThreadingHTTPServer, str]:
    body = json.dumps({"keys": keys}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"


def measure(name: str, verify: Any, token: str, rounds: int) -> None:
    verify(token)  # warm: fetch the JWKS once
    best = min(timeit.repeat(lambda: verify(token), number=rounds, repeat=5))
    print(f"{name:<40} {best / rounds * 1e6:8.1f} µs per verify")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    hs = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": key_id(SECRET)})
    measure("HS256, one secret", Verifier(secret=SECRET).verify, hs, rounds)
    old = jwt.encode(claims(), OLD, algorithm="HS256")  # no kid: every secret is tried
    measure("HS256, no kid, 2nd of 2 secrets", Verifier(secret=[SECRET, OLD]).verify, old, rounds)
    measure("pyjwt.decode alone (HS256, reference)",
            lambda t: jwt.decode(t, SECRET, algorithms=["HS256"], issuer="hecate"), hs, rounds)

    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [{**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "e"},
            {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ed_key.public_key())), "kid": "d"},
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "r"}]
    server, url = serve(keys)
    try:
        verifier = Verifier(jwks_url=url)
        for name, key, alg, kid in (("ES256, JWKS cached", ec_key, "ES256", "e"),
                                    ("EdDSA, JWKS cached", ed_key, "EdDSA", "d"),
                                    ("RS256 (2048), JWKS cached", rsa_key, "RS256", "r")):
            token = jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})
            measure(name, verifier.verify, token, rounds // 4)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
