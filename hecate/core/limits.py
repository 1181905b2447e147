"""Rate limits, counted in storage shared by every instance (MongoDB by default, or Redis).

Failed logins are limited three ways (see README, "Rate limits"):

- per (client IP, account), strict (LIMITER_ATTEMPTS per LIMITER_INTERVAL): stops guessing one
  account from one place. An attacker elsewhere cannot use it to lock the owner out: the owner's
  attempts are counted under the owner's own IP.
- per client IP across all accounts, looser: stops credential stuffing from one place.
- per account across all IPs, looser: stops distributed guessing. It would let a botnet lock the
  owner out, so attempts that carry a valid device cookie (from an earlier successful sign-in to
  that account in this browser) are counted per device instead.

Every attempt is counted before the password is checked, with one atomic increment per counter,
so a burst of parallel guesses cannot slip past the limit; a success then clears its own counters
and gives back its place in the looser ones ("only failed attempts count").
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItem, parse
from limits.limits import RateLimitItemPerSecond

from . import audit, metrics
from .errors import Problem
from .models import normalize_email
from .settings import Settings

log = logging.getLogger("hecate.limits")

INCR_ATTEMPTS = 4


def client_key(ip: str | None) -> str:
    """IPv4 as is, IPv6 grouped by /64 (one host usually owns the whole /64)."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return f"unknown:{(ip or '')[:64]}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address) + "/64"
    return str(address)


@dataclass
class Counter:
    item: RateLimitItem
    keys: tuple[str, ...]
    count: int = 0
    reset_at: float = 0.0

    @property
    def key(self) -> str:
        return self.item.key_for(*self.keys)

    @property
    def exceeded(self) -> bool:
        return self.count > self.item.amount

    def headers(self) -> dict[str, str]:
        reset = max(int(self.reset_at - time.time()) + 1, 1)
        headers = {
            "X-RateLimit-Limit": str(self.item.amount),
            "X-RateLimit-Remaining": str(max(self.item.amount - self.count, 0)),
            "X-RateLimit-Reset": str(int(self.reset_at) + 1),
        }
        if self.exceeded:
            headers["Retry-After"] = str(reset)
        return headers


@dataclass
class LoginAttempt:
    """The counters one login attempt was charged to; ``primary`` sets the response headers."""

    limits: RateLimits
    primary: Counter | None
    refundable: list[Counter] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return self.primary.headers() if self.primary else {}

    def failed(self, problem: Problem) -> Problem:
        problem.headers.update(self.headers())
        return problem

    def succeeded(self) -> None:
        if self.primary is not None:
            self.limits._clear(self.primary)
        for counter in self.refundable:
            self.limits._refund(counter)


class RateLimits:
    def __init__(self, settings: Settings, storage: Any) -> None:
        self.settings = settings
        self.storage = storage
        self._expiry_indexed = False
        # Close the client before interpreter teardown (see close()); processes that never
        # stop the app explicitly (FaaS, tests) would otherwise hang or warn at exit.
        atexit.register(self.close)
        window = settings.limiter_interval
        self.pair = RateLimitItemPerSecond(settings.limiter_attempts, window, "login-pair")
        self.device = RateLimitItemPerSecond(settings.limiter_attempts, window, "login-device")
        self.ip = RateLimitItemPerSecond(settings.limiter_ip_attempts, window, "login-ip")
        self.account = RateLimitItemPerSecond(settings.limiter_account_attempts, window,
                                              "login-account")
        self.mail = _named(settings.limiter_mail, "mail-address")
        self.mail_ip = _named(settings.limiter_mail_ip, "mail-ip")
        self.register_ip = _named(settings.limiter_register, "register-ip")
        self.refresh_session = _named(settings.limiter_refresh, "refresh-session")

    # Storage -------------------------------------------------------------------------------
    def _hit(self, item: RateLimitItem, *keys: str) -> Counter:
        counter = Counter(item, keys)
        try:
            # limits' incr answers 0 when the store returned no document: SecantusDB can do so
            # for an upsert racing a delete (a success clearing the same counter), and under a
            # burst of sign-ins on one account that can happen twice in a row. Count again (a
            # retry may charge twice: stricter, never looser) rather than let the attempt
            # through uncounted; after INCR_ATTEMPTS, fail closed with 503.
            count = 0
            for _ in range(INCR_ATTEMPTS):
                count = self.storage.incr(counter.key, item.get_expiry(), amount=1)
                if count:
                    break
            counter.count = int(count)
            counter.reset_at = float(self.storage.get_expiry(counter.key))
            if not self._expiry_indexed:
                self._index_expiry()
        except Problem:
            raise
        except Exception as error:  # noqa: BLE001 - fail closed, whatever the storage raised
            log.error("rate limit storage unavailable", extra={"error": type(error).__name__})
            metrics.database_error("rate_limits")
            raise Problem("service_unavailable", "The service is temporarily unavailable; "
                          "please retry shortly.", headers={"Retry-After": "5"}) from None
        if not counter.count:
            raise Problem("service_unavailable", "The service is temporarily unavailable; "
                          "please retry shortly.", headers={"Retry-After": "5"})
        return counter

    def _index_expiry(self) -> None:
        """limits' MongoDB storage builds its TTL index only when it opens its client, and never
        again if the database was down then: expired counters would pile up for good. So once per
        process, after a counter was written, make sure the index is there (idempotent)."""
        from limits.storage.mongodb import MongoDBStorageBase

        try:
            if isinstance(self.storage, MongoDBStorageBase):
                self.storage.counters.create_index("expireAt", expireAfterSeconds=0)
            self._expiry_indexed = True
        except Exception as error:  # noqa: BLE001 - the count stands; tried again next time
            log.warning("could not build the rate limit expiry index",
                        extra={"error": type(error).__name__})

    def _clear(self, counter: Counter) -> None:
        try:
            self.storage.clear(counter.key)
        except Exception:  # noqa: BLE001 - the attempt succeeded; a stale counter only slows
            log.warning("could not clear a rate limit counter")

    def _refund(self, counter: Counter) -> None:
        try:
            self.storage.incr(counter.key, counter.item.get_expiry(), amount=-1)
        except Exception:  # noqa: BLE001
            log.warning("could not refund a rate limit counter")

    def _refuse(self, counter: Counter) -> Problem:
        log.warning("rate limit hit", extra={"limit": counter.item.namespace})
        if counter.count == counter.item.amount + 1:
            # One audit event per limit and window: the request that crosses it (an attacker's
            # further refused attempts would otherwise each cost a database write).
            audit.record(audit.RATE_LIMIT_HIT, limit=counter.item.namespace)
        metrics.rate_limited(counter.item.namespace)
        return Problem("too_many_requests", "Too many attempts; please wait before trying "
                       "again.", headers=counter.headers())

    def close(self) -> None:
        """Close the storage's client (SecantusDB, like mongod, waits for open connections at
        shutdown); it is created lazily, so only an opened one is closed."""
        state = vars(self.storage)
        client = state.get("_storage") or state.get("storage")
        if client is not None and hasattr(client, "close"):
            client.close()
        if "_storage" in state and client is None:
            # limits' MongoDB storage closes its client in __del__ through a property that
            # creates one when none exists: at interpreter exit that new client's threads hang.
            self.storage._storage = _ClosedClient()

    # Policies ------------------------------------------------------------------------------
    def login(self, ip: str | None, email: str, device: str | None) -> LoginAttempt:
        """Charge one login attempt; raise 429 when any limit is exceeded. ``device`` is the
        id of a valid device cookie for this account, or None."""
        if not self.settings.limiter_enabled:
            return LoginAttempt(self, None)
        client = client_key(ip)
        account = normalize_email(email)
        per_ip = self._hit(self.ip, client)
        if device:
            primary = self._hit(self.device, device)
            counters = [primary, per_ip]
        else:
            primary = self._hit(self.pair, client, account)
            counters = [primary, per_ip, self._hit(self.account, account)]
        attempt = LoginAttempt(self, primary, [c for c in counters if c is not primary])
        for counter in counters:
            if counter.exceeded:
                raise self._refuse(counter)
        return attempt

    def check(self, item: RateLimitItem, *keys: str) -> None:
        if not self.settings.limiter_enabled:
            return
        counter = self._hit(item, *keys)
        if counter.exceeded:
            raise self._refuse(counter)

    def mail_request(self, ip: str | None, email: str) -> None:
        self.check(self.mail_ip, client_key(ip))
        self.check(self.mail, normalize_email(email))

    def registration(self, ip: str | None) -> None:
        self.check(self.register_ip, client_key(ip))

    def refresh(self, session_id: str) -> None:
        self.check(self.refresh_session, session_id)


class _ClosedClient:
    def close(self) -> None:
        pass


def _named(rate: str, namespace: str) -> RateLimitItem:
    item = parse(rate)
    return type(item)(item.amount, item.multiples, namespace)


def storage_config(settings: Settings) -> tuple[str, dict[str, Any]]:
    """Where counters live: LIMITER_STORAGE_URL, or the MongoDB database itself. Timeouts are
    bounded so an unreachable store fails closed quickly (503) and never hangs."""
    url = settings.limiter_storage_url or settings.mongodb_url
    scheme = url.split("://", 1)[0]
    timeout = settings.mongodb_timeout_ms
    options: dict[str, Any] = {}
    if scheme.startswith("mongodb"):
        options = {"database_name": settings.mongodb_name, "serverSelectionTimeoutMS": timeout,
                   "connectTimeoutMS": timeout, "socketTimeoutMS": timeout * 2,
                   "counter_collection_name": "rate_limits",
                   "window_collection_name": "rate_limit_windows"}
    elif scheme.startswith("redis"):
        options = {"socket_timeout": timeout / 1000, "socket_connect_timeout": timeout / 1000}
    return url, options
