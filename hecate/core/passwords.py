"""Password hashing: argon2id for new hashes, bcrypt hashes from the Node original still verified
and upgraded on the next successful login."""

from __future__ import annotations

import functools
import hmac
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from passlib.context import CryptContext

# OWASP's argon2id recommendation (m=19 MiB, t=2, p=1). Memory per running hash is m, which
# matters inside a 128 MB function; see benchmarks/ for the measured cost.
ARGON2_MEMORY_KIB = 19456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

# The Node bcrypt library hashed only the first 72 bytes of a password; bcrypt 5 raises on longer
# input, so old hashes are checked the way they were made.
BCRYPT_MAX_BYTES = 72

# Each running argon2 hash holds its memory cost in RAM: the number running at once in a process
# is bounded by a memory budget (HASH_MEMORY_BUDGET_MB) instead of weakening the parameters. Extra
# requests wait for a slot. create_app sizes it from the settings (configure); until then, the
# default budget's.
ARGON2_MEMORY_MIB = ARGON2_MEMORY_KIB // 1024
DEFAULT_HASH_MEMORY_BUDGET_MB = 48


def slots_for(budget_mb: int) -> int:
    """How many argon2 hashes fit in ``budget_mb`` MiB at once (at least one)."""
    return max(1, budget_mb // ARGON2_MEMORY_MIB)


_slots = threading.BoundedSemaphore(slots_for(DEFAULT_HASH_MEMORY_BUDGET_MB))
_max_concurrent = slots_for(DEFAULT_HASH_MEMORY_BUDGET_MB)


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def _release_hash_memory() -> bool:
    """Make glibc hand each hash's 19 MiB back to the system when the hash ends. By default glibc
    raises its mmap threshold after the first large free, and later 19 MiB blocks then come from
    per-thread heaps that keep them: measured, a worker's RSS grew to ≈ 260 MB under 16 parallel
    logins with only 2 hashing at once. A fixed threshold keeps large blocks mmap'ed (and
    unmapped on free); Python's small objects are not affected."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (or no mallopt): nothing to adjust
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


def configure(max_concurrent: int) -> None:
    """Bound the hashes (and verifications) running at once in this process."""
    global _slots, _max_concurrent
    _release_hash_memory()
    max_concurrent = max(1, int(max_concurrent))
    if max_concurrent != _max_concurrent:
        _slots = threading.BoundedSemaphore(max_concurrent)
        _max_concurrent = max_concurrent


def max_concurrent() -> int:
    return _max_concurrent


def _hash(secret: str | bytes) -> str:
    with _slots:
        return _context().hash(secret)


def _verify(secret: bytes, stored_hash: str) -> bool:
    # bcrypt needs little memory, but every check takes a slot so that timing stays alike.
    with _slots:
        return bool(_context().verify(secret, stored_hash))


@functools.lru_cache(maxsize=1)
def _context() -> CryptContext:
    # Imported on first use: passlib is not needed to start serving (cold start).
    from passlib.context import CryptContext

    return CryptContext(
        schemes=["argon2", "bcrypt"],
        deprecated=["bcrypt"],
        argon2__type="ID",
        argon2__memory_cost=ARGON2_MEMORY_KIB,
        argon2__rounds=ARGON2_TIME_COST,
        argon2__parallelism=ARGON2_PARALLELISM,
    )


def hash_password(password: str) -> str:
    return _hash(password)


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
        _verify(password.encode("utf-8"), _dummy_hash())
        return False, None
    try:
        ok = _verify(_secret_for(password, stored_hash), stored_hash)
    except (ValueError, TypeError):
        # A corrupt or unknown hash format: refuse, but spend the same time.
        _verify(password.encode("utf-8"), _dummy_hash())
        return False, None
    if not ok:
        return False, None
    if _context().needs_update(stored_hash):
        return True, hash_password(password)
    return True, None


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Computed on first use, not at import: import time is cold-start time on FaaS.
    return _hash("hecate-dummy-password-for-timing-equality")


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
