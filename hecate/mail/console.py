"""Development transport: prints each mail to stdout, so a newcomer clicks the link from the
terminal. The printed text holds live tokens: never use it where logs are kept."""

from __future__ import annotations

from typing import Any

from . import Message

_RULE = "=" * 72


class ConsoleTransport:
    def __init__(self, settings: Any = None) -> None:
        self.settings = settings

    def send(self, message: Message) -> None:
        print(f"{_RULE}\nFrom: {message.sender}\nTo: {message.to}\nSubject: {message.subject}\n\n"
              f"{message.text.rstrip()}\n{_RULE}", flush=True)
