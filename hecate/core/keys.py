"""Asymmetric signing keys (JWT_ALGORITHM=RS256, ES256 or EdDSA): reading them from PEM text or a
file, their public JWK and its RFC 7638 thumbprint (the ``kid``), and new key pairs for
``hecate keys generate``.

Imported only when an asymmetric key is configured or generated: HS256 deployments do not pay for
it at cold start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .settings import SettingsError

ALGORITHMS = ("RS256", "ES256", "EdDSA")
MIN_RSA_BITS = 2048
_KEY_TYPES = {"RS256": "an RSA key (2048 bits or more)", "ES256": "an EC key on curve P-256",
              "EdDSA": "an Ed25519 key"}
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)


@dataclass(frozen=True, eq=False)
class PublicKey:
    """A key tokens are verified with and the JWKS publishes; ``kid`` is its JWK thumbprint."""

    algorithm: str
    kid: str
    key: Any = field(repr=False)  # a cryptography public key
    jwk: dict[str, str] = field(repr=False)


@dataclass(frozen=True, eq=False)
class SigningKey:
    """JWT_PRIVATE_KEY: signs every token Hecate issues."""

    public: PublicKey
    private: Any = field(repr=False)  # a cryptography private key; never printed

    @property
    def algorithm(self) -> str:
        return self.public.algorithm

    @property
    def kid(self) -> str:
        return self.public.kid


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(number: int, length: int | None = None) -> bytes:
    return number.to_bytes(length or max(1, (number.bit_length() + 7) // 8), "big")


def algorithm_of(public_key: Any) -> str | None:
    """The JWS algorithm a public key signs with, or None for a key type Hecate does not use."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(public_key, ec.EllipticCurvePublicKey) and \
            isinstance(public_key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    return None


def describe(public_key: Any) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"an RSA key of {public_key.key_size} bits"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"an EC key on curve {public_key.curve.name}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    return f"a {type(public_key).__name__.lstrip('_')}"


def public_jwk(public_key: Any) -> dict[str, str]:
    """The members RFC 7638 requires for the key type (what the thumbprint is computed over)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _b64(_int_bytes(numbers.n)), "e": _b64(_int_bytes(numbers.e))}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64(_int_bytes(point.x, 32)),
                "y": _b64(_int_bytes(point.y, 32))}
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace."""
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def public_key(key: Any, name: str = "key") -> PublicKey:
    algorithm = algorithm_of(key)
    if algorithm is None:
        raise SettingsError(f"{name} holds {describe(key)}: Hecate signs with RSA (RS256), "
                            "EC P-256 (ES256) or Ed25519 (EdDSA) keys")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise SettingsError(f"{name} holds {describe(key)}: RS256 needs at least "
                            f"{MIN_RSA_BITS} bits")
    jwk = public_jwk(key)
    kid = thumbprint(jwk)
    return PublicKey(algorithm, kid, key, {**jwk, "kid": kid, "alg": algorithm, "use": "sig"})


def _pem_text(name: str, value: str) -> str:
    """PEM text as given, or the text of the file ``value`` names."""
    text = value.strip()
    if "-----BEGIN" in text:
        # Some platforms cannot hold newlines in a variable: accept them written as \n.
        return text.replace("\\n", "\n") if "\n" not in text else text
    try:
        return Path(text).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise SettingsError(f"{name}: cannot read the key file {text!r} ({reason}); give PEM "
                            "text or the path of a PEM file") from None


def _pem_blocks(name: str, text: str) -> list[str]:
    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(text)]
    if not blocks:
        raise SettingsError(f"{name} holds no PEM key (-----BEGIN ... KEY-----)")
    return blocks


def _load_private(name: str, block: str) -> Any:
    try:
        return serialization.load_pem_private_key(block.encode(), password=None)
    except TypeError:
        raise SettingsError(f"{name} is an encrypted private key: give it unencrypted (keep "
                            "it in your secret store instead)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SettingsError(f"{name} is not a readable PEM private key") from None


def load_signing_key(name: str, value: str, algorithm: str) -> SigningKey:
    """JWT_PRIVATE_KEY for JWT_ALGORITHM=algorithm; SettingsError naming ``name`` if it is
    unreadable, not a private key, or of another type than the algorithm needs."""
    blocks = _pem_blocks(name, _pem_text(name, value))
    if len(blocks) != 1:
        raise SettingsError(f"{name} holds {len(blocks)} PEM blocks: give exactly one private "
                            "key (previous keys go in JWT_PREVIOUS_KEYS)")
    if "PRIVATE KEY" not in blocks[0].partition("\n")[0]:
        raise SettingsError(f"{name} is not a private key (a public key or certificate?)")
    private = _load_private(name, blocks[0])
    public = private.public_key()
    found = algorithm_of(public)
    if found != algorithm:
        raise SettingsError(f"{name} holds {describe(public)}, but JWT_ALGORITHM={algorithm} "
                            f"needs {_KEY_TYPES[algorithm]}")
    return SigningKey(public_key(public, name), private)


def load_public_keys(name: str, value: str) -> tuple[PublicKey, ...]:
    """JWT_PREVIOUS_KEYS: PEM text with one or more keys, or whitespace-separated file paths.
    Public or private keys (only the public part is kept), each of any type Hecate signs with."""
    if "-----BEGIN" in value:
        texts = [_pem_text(name, value)]
    else:
        texts = [_pem_text(name, path) for path in value.replace(",", " ").split()]
    found: dict[str, PublicKey] = {}
    for text in texts:
        for block in _pem_blocks(name, text):
            if "PRIVATE KEY" in block.partition("\n")[0]:
                key = _load_private(name, block).public_key()
            else:
                try:
                    key = serialization.load_pem_public_key(block.encode())
                except (ValueError, UnsupportedAlgorithm):
                    raise SettingsError(f"{name} holds a PEM block that is not a readable "
                                        "public key") from None
            public = public_key(key, name)
            found.setdefault(public.kid, public)
    return tuple(found.values())


def generate(algorithm: str) -> Any:
    """A new private key for ``algorithm`` (RSA: 3072 bits, NIST's size beyond 2030)."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown algorithm {algorithm!r}")


def private_pem(private: Any) -> bytes:
    return bytes(private.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def public_pem(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))
