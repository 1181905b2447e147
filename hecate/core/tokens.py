"""What a token is: JWT encoding and verification for access and refresh tokens.

With HS256 downstream services hold the signing secret, so they can mint any JWT: only the access
token is meant for them. A refresh token is worthless without the server-side session that stores
its ``jti`` (see sessions.py). With RS256, ES256 or EdDSA they hold only the public keys (the JWKS).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import Problem
from .settings import Settings

ALGORITHM = "HS256"  # with JWT_SECRET
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})  # with JWT_PRIVATE_KEY
# Far above any token Hecate issues; refuse to even parse larger input.
MAX_TOKEN_LENGTH = 4096


def new_id(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str | None
    verified: bool


@dataclass(frozen=True)
class RefreshClaims:
    user_id: str
    session_id: str
    jti: str | None  # None: a refresh token issued by the Node original
    expires_at: int
    # What the session was created with (None in tokens of earlier versions and of the Node
    # original): a rotation then need not read the session first (sessions.Sessions.rotate).
    remember: bool | None = None
    session_expires_at: int | None = None


# Beyond it a session end is no date (year 2242); such a claim is ignored, never an error.
SESSION_EXP_LIMIT = 2**33


def key_id(secret: str) -> str:
    """The ``kid`` header of tokens signed with ``secret``: names the key among JWT_SECRET's
    without revealing it (a prefix of a hash of a secret of at least 32 random bytes)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The first secret signs; every one verifies, so a key can be rotated without signing
        # everybody out: JWT_SECRET="new old", and "new" once the old tokens have expired.
        self._keys = {key_id(secret): secret for secret in reversed(settings.jwt_secrets)}
        # Asymmetric keys by kid (their JWK thumbprint): the signing key's and the previous ones.
        self._public = {key.kid: key for key in settings.jwt_public_keys}
        signing = settings.jwt_signing_key
        if signing is not None:
            self._signing_key: Any = signing.private
            self._algorithm, self._kid = signing.algorithm, signing.kid
        else:
            secret = settings.jwt_secret
            self._signing_key, self._algorithm, self._kid = secret, ALGORITHM, key_id(secret)
        # Computed once: the JWKS endpoint answers it as it is. Never a secret, only public keys.
        self.jwks = json.dumps({"keys": [key.jwk for key in self._public.values()]},
                               separators=(",", ":"))

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def kid(self) -> str:
        """The kid of the key that signs (names it among the published ones)."""
        return self._kid

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._signing_key, algorithm=self._algorithm,
                          headers={"kid": self._kid})

    def _candidates(self, alg: object, kid: object) -> tuple[tuple[Any, ...], str]:
        """The keys a token with this header may be verified with, and the algorithm. A key is
        only ever used with its own algorithm: a public key is never tried as an HMAC secret."""
        if alg == ALGORITHM and self._keys:
            known = self._keys.get(kid) if isinstance(kid, str) else None
            # Without a known kid (tokens of the Node original have none) every secret is tried.
            return ((known,) if known is not None else self.settings.jwt_secrets), ALGORITHM
        if isinstance(alg, str) and alg in ASYMMETRIC_ALGORITHMS and self._public:
            public = self._public.get(kid) if isinstance(kid, str) else None
            if public is None:
                raise Problem("invalid_token", "The token is signed with an unknown key.")
            if public.algorithm != alg:
                raise Problem("invalid_token", "The token's algorithm does not match its key.")
            return (public.key,), public.algorithm
        raise Problem("invalid_token", "The token is signed with an unexpected algorithm.")

    def _decode(self, token: str, **options: Any) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Problem("invalid_token", "The token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Problem("invalid_token", "The token is malformed.") from None
        candidates, algorithm = self._candidates(header.get("alg"), header.get("kid"))
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=[algorithm], options={"require": ["exp"]},
                    leeway=self.settings.jwt_leeway, **options,
                )
                return claims
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Problem("invalid_token", "The token has expired.") from None
            except jwt.ImmatureSignatureError:
                # iat or nbf further in the future than the leeway: we never issue such a token;
                # a wrong clock or a forgery did.
                raise Problem("invalid_token", "The token is not yet valid.") from None
            except jwt.InvalidAudienceError:
                raise Problem("invalid_token", "The token is meant for another audience.") \
                    from None
            except jwt.PyJWTError:
                raise Problem("invalid_token", "The token is invalid.") from None
        raise Problem("invalid_token", "The token signature is invalid.")

    # Access tokens -------------------------------------------------------------------------
    def issue_access(self, user_id: str, session_id: str, verified: bool) -> tuple[str, int]:
        now = int(time.time())
        ttl = self.settings.access_ttl
        token = self._encode({
            "id": user_id,  # the original's downstream snippet reads payload.id
            "sub": user_id,
            "sid": session_id,
            "verified": verified,
            "type": "access",
            "iss": self.settings.jwt_issuer,
            "iat": now,
            "exp": now + ttl,
            "jti": new_id(12),
            **({"aud": self.settings.jwt_audience} if self.settings.jwt_audience else {}),
        })
        return token, ttl

    def verify_access(self, token: str) -> AccessClaims:
        # With JWT_AUDIENCE set, a token without that `aud` is refused; without it, a token that
        # names an audience is refused (RFC 7519 4.1.3). Refresh tokens carry no `aud`, so
        # turning the setting on or off costs a refresh, not a sign-in.
        claims = self._decode(token, issuer=self.settings.jwt_issuer,
                              audience=self.settings.jwt_audience)
        if claims.get("type") != "access":
            raise Problem("invalid_token", "This is not an access token.")
        user_id = claims.get("sub")
        if not isinstance(user_id, str) or not user_id:
            raise Problem("invalid_token", "The token names no user.")
        sid = claims.get("sid")
        return AccessClaims(user_id, sid if isinstance(sid, str) else None,
                            bool(claims.get("verified")))

    # Refresh tokens ------------------------------------------------------------------------
    def issue_refresh(self, user_id: str, session_id: str, jti: str, expires_at: int, *,
                      remember: bool, session_expires_at: int) -> str:
        return self._encode({
            "id": user_id,
            "session": session_id,
            "type": "refresh",
            "iss": self.settings.jwt_issuer,
            "iat": int(time.time()),
            "exp": expires_at,
            "jti": jti,
            "remember": remember,
            "session_exp": session_expires_at,
        })

    def verify_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token)
        if claims.get("type") != "refresh":
            raise Problem("invalid_token", "This is not a refresh token.")
        user_id, session_id, jti = claims.get("id"), claims.get("session"), claims.get("jti")
        if not isinstance(user_id, str) or not isinstance(session_id, str):
            raise Problem("invalid_token", "The token names no session.")
        if jti is None and "iss" not in claims:
            # Issued by the Node deployment: accepted once each (see sessions.adopt_legacy).
            if not self.settings.legacy_refresh_tokens:
                raise Problem("invalid_token", "Refresh tokens of the old service are refused.")
            return RefreshClaims(user_id, session_id, None, int(claims["exp"]))
        if claims.get("iss") != self.settings.jwt_issuer or not isinstance(jti, str):
            raise Problem("invalid_token", "The token was not issued by this service.")
        remember, session_exp = claims.get("remember"), claims.get("session_exp")
        if (not isinstance(remember, bool) or type(session_exp) is not int
                or not 0 < session_exp < SESSION_EXP_LIMIT):
            remember, session_exp = None, None  # the session is read instead
        return RefreshClaims(user_id, session_id, jti, int(claims["exp"]), remember, session_exp)

