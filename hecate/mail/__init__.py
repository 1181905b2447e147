"""Hecate's mail: render a message from templates, hand it to a transport.

Framework-free. Transports (smtp, mailjet, console or a deployer's ``package.module:ClassName``)
and Jinja2 are imported only when the first mail is sent: import time is FaaS cold-start time.

Every transport raises :class:`MailError` on any failure, and its text never includes the message
body: bodies carry live tokens, and the error text ends up in logs.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from ..core.settings import Settings
    from .templates import Templates

__all__ = ["MailError", "Mailer", "Message", "Transport", "format_address", "load_transport"]


@dataclass(frozen=True)
class Message:
    sender: str
    """``App Name <app@email>``, quoted where the name needs it."""
    to: str
    subject: str
    text: str
    html: str


class MailError(Exception):
    """A mail could not be sent. The text says why, never what the message said."""


class Transport(Protocol):
    def send(self, message: Message) -> None: ...


_BUILTIN = {
    "console": ("hecate.mail.console", "ConsoleTransport"),
    "smtp": ("hecate.mail.smtp", "SmtpTransport"),
    "mailjet": ("hecate.mail.mailjet", "MailjetTransport"),
}


def load_transport(settings: Settings) -> Transport:
    """The transport named by ``settings.mail_transport``: console, smtp, mailjet or
    ``package.module:ClassName`` (instantiated with ``cls(settings)``, or ``cls()``)."""
    spec = settings.mail_transport.strip()
    if not spec:
        raise MailError("no mail transport is configured (MAIL_TRANSPORT)")
    if spec in _BUILTIN:
        module_name, class_name = _BUILTIN[spec]
    elif ":" in spec:
        module_name, _, class_name = spec.partition(":")
    else:
        raise MailError(f"MAIL_TRANSPORT={spec!r} must be console, smtp, mailjet or "
                        "package.module:ClassName")
    try:
        target: Any = importlib.import_module(module_name)
        for part in class_name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as error:
        raise MailError(f"MAIL_TRANSPORT={spec!r} could not be imported: "
                        f"{type(error).__name__}: {error}") from error
    if not callable(target):
        raise MailError(f"MAIL_TRANSPORT={spec!r} is not a class")
    try:
        transport = target(settings) if _takes_an_argument(target) else target()
    except MailError:
        raise
    except Exception as error:
        raise MailError(f"MAIL_TRANSPORT={spec!r} could not be created: "
                        f"{type(error).__name__}: {error}") from error
    if not callable(getattr(transport, "send", None)):
        raise MailError(f"MAIL_TRANSPORT={spec!r} has no send(message) method")
    return transport  # type: ignore[no-any-return]


def _takes_an_argument(cls: Any) -> bool:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in parameters)


_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


def format_address(name: str, address: str) -> str:
    """``Name <address>``; the name is quoted when it holds RFC 5322 specials (``Acme, Inc``).
    Unlike ``email.utils.formataddr`` non-ASCII names stay readable: SMTP encodes them itself."""
    name = " ".join(name.split())
    if not name:
        return address
    if _SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


class Mailer:
    """Renders templates into messages and sends them through one transport."""

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self.settings = settings
        self.sender = format_address(settings.app_name, settings.app_email)
        self._transport = transport
        self._templates: Templates | None = None
        self._lock = threading.Lock()

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = load_transport(self.settings)
        return self._transport

    @property
    def templates(self) -> Templates:
        if self._templates is None:
            with self._lock:
                if self._templates is None:
                    from .templates import Templates

                    self._templates = Templates(self.settings.mail_templates_dir)
        return self._templates

    def link(self, path: str, token: str) -> str:
        """The SPA page ``path`` with the token as a query parameter."""
        return f"{self.settings.app_url}{path}?token={quote(token, safe='')}"

    def render(self, template: str, to: str, **context: Any) -> Message:
        """The message ``template`` (``NAME.txt`` and ``NAME.html``) addressed to ``to``."""
        values: dict[str, Any] = {"app_name": self.settings.app_name,
                                  "app_url": self.settings.app_url, "username": ""}
        values.update(context)
        subject, text, html = self.templates.render(template, values)
        return Message(sender=self.sender, to=to, subject=subject, text=text, html=html)

    def send(self, template: str, to: str, **context: Any) -> None:
        """Render and send; raise MailError on any failure."""
        message = self.render(template, to, **context)
        transport = self.transport
        try:
            transport.send(message)
        except MailError:
            raise
        except Exception as error:
            # A deployer's transport may raise anything; callers handle one exception type.
            raise MailError(f"{type(transport).__name__} failed: "
                            f"{type(error).__name__}: {error}") from error
