"""The per-app bundle of services the handlers reach through the app (never module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .core.outbox import Outbox
from .core.sessions import Sessions
from .core.settings import Settings
from .core.tokens import TokenService


@dataclass
class Services:
    settings: Settings
    tokens: TokenService = field(init=False)
    sessions: Sessions = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenService(self.settings)
        self.sessions = Sessions(self.settings)

    @cached_property
    def outbox(self) -> Outbox:
        # Built on first use: templates and transports are not needed to answer most requests,
        # and import time is cold-start time.
        from .mail import Mailer

        return Outbox(self.settings, Mailer(self.settings))
