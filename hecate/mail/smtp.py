"""SMTP through Flask-Mail, with the connection made safe.

Flask-Mail 0.10 connects without a timeout (a silent server hangs the request forever) and calls
``starttls()`` without a context, that is without checking the server's certificate (anyone on
the path can read the links). :class:`_Connection` fixes both: every socket operation has
SMTP_TIMEOUT, and STARTTLS and implicit TLS verify the certificate and the host name, against
the system CAs or, when set, only against SMTP_CA_FILE.
"""

from __future__ import annotations

import smtplib
import ssl
from email.utils import make_msgid, parseaddr
from types import TracebackType
from typing import TYPE_CHECKING

import flask
import flask_mail

from . import MailError, Message

if TYPE_CHECKING:
    from ..core.settings import Settings


class _Connection(flask_mail.Connection):
    def __init__(self, mail: flask_mail._Mail, settings: Settings,
                 context: ssl.SSLContext | None) -> None:
        super().__init__(mail)  # type: ignore[arg-type]
        self.settings = settings
        self.context = context

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        s = self.settings
        host: smtplib.SMTP
        if s.smtp_security == "ssl":
            host = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout,
                                    context=self.context)
        else:
            host = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        try:
            if s.smtp_security == "starttls":
                # Raises when the server does not offer STARTTLS: never fall back to plain text.
                host.starttls(context=self.context)
            if s.smtp_user:
                host.login(s.smtp_user, s.smtp_pass)
        except BaseException:
            host.close()
            raise
        return host

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.host is None:
            return
        if exc_type is not None:
            self.host.close()
            return
        try:
            self.host.quit()
        except (smtplib.SMTPException, OSError):
            # The server has accepted the message already; failing now would make the caller
            # send it a second time.
            self.host.close()


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise MailError("SMTP_HOST is not set (MAIL_TRANSPORT=smtp)")
        self.settings = settings
        # Flask-Mail reads its configuration from an app; this private one is never served.
        self.app = flask.Flask("hecate.mail", static_folder=None)
        self.app.config.update(
            MAIL_SERVER=settings.smtp_host,
            MAIL_PORT=settings.smtp_port,
            MAIL_USE_TLS=settings.smtp_security == "starttls",
            MAIL_USE_SSL=settings.smtp_security == "ssl",
            MAIL_USERNAME=settings.smtp_user or None,
            MAIL_PASSWORD=settings.smtp_pass or None,
            MAIL_DEFAULT_SENDER=settings.app_email,
            MAIL_SUPPRESS_SEND=False,
            MAIL_DEBUG=False,
        )
        self.mail = flask_mail.Mail(self.app)
        self._context: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.settings.smtp_security == "none":
            return None
        if self._context is None:
            # Verifies the chain and the host name. With SMTP_CA_FILE only that CA is trusted
            # (a private relay's own CA); without it, the system's.
            self._context = ssl.create_default_context(cafile=self.settings.smtp_ca_file)
        return self._context

    def send(self, message: Message) -> None:
        s = self.settings
        where = f"SMTP {s.smtp_host}:{s.smtp_port} ({s.smtp_security})"
        try:
            context = self._tls_context()
            with self.app.app_context():
                mail = flask_mail.Message(
                    subject=message.subject,
                    recipients=[message.to],
                    body=message.text,
                    html=message.html,
                    # Already quoted by format_address; Flask-Mail would not quote a tuple.
                    sender=message.sender,
                )
                # The sender's domain, not the container's host name (often "localhost").
                domain = parseaddr(message.sender)[1].rpartition("@")[2]
                if domain:
                    mail.msgId = make_msgid(domain=domain)
                assert self.mail.state is not None  # Mail(app) initialised it
                with _Connection(self.mail.state, s, context) as connection:
                    connection.send(mail)
        except smtplib.SMTPAuthenticationError as error:
            raise MailError(f"{where}: authentication failed for SMTP_USER: "
                            f"{error.smtp_code} {_text(error.smtp_error)}") from error
        except smtplib.SMTPResponseException as error:
            raise MailError(f"{where}: the server answered {error.smtp_code} "
                            f"{_text(error.smtp_error)}") from error
        except ssl.SSLError as error:
            # SSLCertVerificationError says what is wrong with the certificate.
            raise MailError(f"{where}: TLS failed: {error}") from error
        except (smtplib.SMTPException, OSError) as error:
            if _timed_out(error):
                raise MailError(f"{where}: no answer within {s.smtp_timeout}s "
                                "(SMTP_TIMEOUT)") from error
            raise MailError(f"{where}: {type(error).__name__}: {error}") from error
        except flask_mail.BadHeaderError as error:
            raise MailError(f"{where}: a header holds a line break "
                            "(recipient or subject)") from error
        except ValueError as error:
            # e.g. a non-ASCII recipient and a server without SMTPUTF8; the text gives a
            # position, not the message.
            raise MailError(f"{where}: {type(error).__name__}: {error}") from error


def _timed_out(error: BaseException | None) -> bool:
    # smtplib turns a read timeout into SMTPServerDisconnected; the timeout is its context.
    while error is not None:
        if isinstance(error, TimeoutError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply
