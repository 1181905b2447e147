"""The per-app bundle of services the handlers reach through the app (never module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
