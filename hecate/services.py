"""The per-app bundle of services the handlers reach through the app (never module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .core.limits import RateLimits
from .core.outbox import Outbox
from .core.sessions import Sessions
from .core.settings import Settings
from .core.tokens import TokenService


@dataclass
class Services:
    settings: Settings
    tokens: TokenService = field(init=False)
    sessions: Sessions = field(init=False)
    limits: RateLimits | None = field(init=False, default=None)  # set by create_app

    def __post_init__(self) -> None:
        self.tokens = TokenService(self.settings)
        self.sessions = Sessions(self.settings)

    @cached_property
    def outbox(self) -> Outbox:
        # Built on first use: templates and transports are not needed to answer most requests,
        # and import time is cold-start time.
        from .mail import Mailer

        return Outbox(self.settings, Mailer(self.settings))

    def close(self) -> None:
        """Release the clients this app opened (the rate-limit store's, here)."""
        if self.limits is not None:
            self.limits.close()
