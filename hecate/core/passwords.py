"""Password hashing: argon2id for new hashes, bcrypt hashes from the Node original still verified
and upgraded on the next successful login."""

from __future__ import annotations

import functools
import hmac

from passlib.context import CryptContext

# OWASP's argon2id recommendation (m=19 MiB, t=2, p=1). Memory per running hash is m, which
# matters inside a 128 MB function; see benchmarks/ for the measured cost.
ARGON2_MEMORY_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

# The Node bcrypt library hashed only the first 72 bytes of a password; bcrypt 5 raises on longer
# input, so old hashes are checked the way they were made.
BCRYPT_MAX_BYTES = 72


@functools.lru_cache(maxsize=1)
def _context() -> CryptContext:
    return CryptContext(
        schemes=["argon2", "bcrypt"],
        deprecated=["bcrypt"],
        argon2__type="ID",
        argon2__memory_cost=ARGON2_MEMORY_KIB,
        argon2__rounds=ARGON2_TIME_COST,
        argon2__parallelism=ARGON2_PARALLELISM,
    )


def hash_password(password: str) -> str:
    return _context().hash(password)


def _secret_for(password: str, stored_hash: str) -> bytes:
    secret = password.encode("utf-8")
    if stored_hash.startswith("$2"):
        return secret[:BCRYPT_MAX_BYTES]
    return secret


def verify_password(password: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """(matches, new_hash). ``new_hash`` is set when the stored hash should be replaced (bcrypt
    from the Node era, or argon2 with weaker parameters). An unknown account is checked against a
    real dummy hash so that both answers take the same time."""
    if not stored_hash:
        _context().verify(password.encode("utf-8"), _dummy_hash())
        return False, None
    try:
        ok = _context().verify(_secret_for(password, stored_hash), stored_hash)
    except (ValueError, TypeError):
        # A corrupt or unknown hash format: refuse, but spend the same time.
        _context().verify(password.encode("utf-8"), _dummy_hash())
        return False, None
    if not ok:
        return False, None
    if _context().needs_update(stored_hash):
        return True, hash_password(password)
    return True, None


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Computed on first use, not at import: import time is cold-start time on FaaS.
    return _context().hash("hecate-dummy-password-for-timing-equality")


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
