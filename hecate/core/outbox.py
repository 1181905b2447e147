"""How the flows send mail: strictly (the caller has shown who they are, so a failure is a clear
503 they can retry) or quietly (endpoints that must not reveal whether an account exists: the
failure is logged without the token, and counted)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote

from . import metrics
from .errors import Problem
from .settings import Settings

log = logging.getLogger("hecate.mail")


class Sender(Protocol):
    def send(self, template: str, to: str, **context: Any) -> None: ...


class Outbox:
    def __init__(self, settings: Settings, mailer: Sender) -> None:
        self.settings = settings
        self.mailer = mailer
        self.failures = 0
        self._lock = threading.Lock()

    def link(self, path: str, token: str) -> str:
        return f"{self.settings.app_url}{path}?token={quote(token, safe='')}"

    def send(self, template: str, to: str, **context: Any) -> None:
        """Send or raise 503 mail_unavailable."""
        if not self.try_send(template, to, **context):
            raise Problem("mail_unavailable", "The email could not be sent right now; "
                          "nothing was changed, please try again in a few minutes.",
                          headers={"Retry-After": "60"})

    def try_send(self, template: str, to: str, **context: Any) -> bool:
        context.setdefault("app_name", self.settings.app_name)
        context.setdefault("app_url", self.settings.app_url)
        try:
            self.mailer.send(template, to, **context)
            return True
        except Exception as error:  # noqa: BLE001 - any transport failure is a failed send
            with self._lock:
                self.failures += 1
            metrics.mail_failed(template)
            # The error text of our transports never carries the message body (it holds links).
            log.warning("mail not sent", extra={"template": template,
                                                "error": f"{type(error).__name__}: {error}"})
            return False


@contextlib.contextmanager
def padded(minimum_ms: int) -> Iterator[None]:
    """Answer no sooner than ``minimum_ms``: whether a mail was sent (the account exists) must not
    show in the response time."""
    started = time.monotonic()
    try:
        yield
    finally:
        remaining = minimum_ms / 1000 - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
