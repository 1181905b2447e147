"""The mail layer against real servers: aiosmtpd (plain, STARTTLS with a certificate made here,
implicit TLS) and a local HTTP server speaking Mailjet's Send API v3.1."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from hecate.core.settings import Settings
from hecate.mail import Mailer, MailError, Message, load_transport

TOKEN = "tok+en/with=specials"
LINK = "https://app.example/verify?token=tok%2Ben%2Fwith%3Dspecials"
OTHER_LINK = "https://app.example/password-reset?token=other"
USERNAME = 'Zoë <b>&"'
SMTP_USER, SMTP_PASS = "mailer", "correct horse battery"

# template -> (subject, context); every template in the package must be listed here.
TEMPLATES: dict[str, tuple[str, dict[str, Any]]] = {
    "verify_email": ("Confirm your email address", {"link": LINK}),
    "email_change_confirm": ("Confirm your new email address",
                             {"link": LINK, "new_email": "new@example.com"}),
    "email_change_notice": ("Your email address is being changed",
                            {"new_email": "new@example.com", "cancel_link": LINK}),
    "password_reset": ("Reset your password", {"link": LINK, "ttl_minutes": 60}),
    "magic_login": ("Your sign-in link", {"link": LINK, "ttl_minutes": 5}),
    "password_changed": ("Your password was changed", {}),
    "account_deleted": ("Your account was deleted", {}),
    "already_registered": ("You already have an account",
                           {"login_link": LINK, "reset_link": OTHER_LINK}),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(**env: str) -> Settings:
    return Settings.from_env({
        "JWT_SECRET": "x" * 40, "APP_URL": "https://app.example", "APP_NAME": "Acme",
        "APP_EMAIL": "hello@acme.example", "SMTP_TIMEOUT": "3", **env,
    })


# --- SMTP servers ---------------------------------------------------------------------------

@dataclass
class Received:
    envelope: Any
    message: email.message.EmailMessage
    authenticated: bool
    tls: bool

    @property
    def text(self) -> str:
        return str(self.message.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]

    @property
    def html(self) -> str:
        return str(self.message.get_body(preferencelist=("html",)).get_content())  # type: ignore[union-attr]


class Inbox:
    """An aiosmtpd server on a free 127.0.0.1 port that keeps what it receives."""

    def __init__(self, **smtp_options: Any) -> None:
        self.received: list[Received] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **smtp_options)
        self.controller.start()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(Received(envelope, parsed,  # type: ignore[arg-type]
                                      bool(session.authenticated), session.ssl is not None))
        return "250 OK"

    def last(self, to: str) -> Received:
        found = [r for r in self.received if to in r.envelope.rcpt_tos]
        assert found, f"nothing delivered to {to}"
        return found[-1]

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    server = Inbox()
    yield server
    server.stop()


def smtp_env(port: int, **env: str) -> dict[str, str]:
    return {"MAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
            "SMTP_SECURITY": "none", **env}


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> Any:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificate(directory: Path, dns_name: str, ip: str | None) -> Certificate:
    """A self-signed certificate, also its own CA, made as strict verifiers want it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(dns_name)]
    if ip:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{dns_name}.pem", directory / f"{dns_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_path, key_path)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"), "localhost", "127.0.0.1")


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASS.encode())
    # handled=False: aiosmtpd answers 535 itself on failure.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture(scope="module")
def starttls_inbox(certificate: Certificate) -> Iterator[Inbox]:
    server = Inbox(require_starttls=True, tls_context=certificate.server_context(),
                   authenticator=authenticator, auth_require_tls=True, auth_required=True)
    yield server
    server.stop()


def starttls_env(server: Inbox, certificate: Certificate, **env: str) -> dict[str, str]:
    return {"MAIL_TRANSPORT": "smtp", "SMTP_HOST": "localhost", "SMTP_PORT": str(server.port),
            "SMTP_SECURITY": "starttls", "SMTP_USER": SMTP_USER, "SMTP_PASS": SMTP_PASS,
            "SMTP_CA_FILE": str(certificate.cert), **env}


def assert_no_body(error: BaseException) -> None:
    """Failures are logged: their text must never carry a link's token."""
    text = str(error)
    assert "tok" not in text.replace("token", "") and LINK not in text, text


# --- Templates over plain SMTP --------------------------------------------------------------

def test_every_template_in_the_package_is_tested() -> None:
    directory = Path(__file__).resolve().parent.parent / "hecate" / "mail" / "templates"
    names = {p.stem for p in directory.iterdir() if not p.name.startswith("_")}
    assert names == set(TEMPLATES)
    for name in names:
        assert (directory / f"{name}.txt").exists() and (directory / f"{name}.html").exists()


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_each_template_is_delivered_with_text_and_escaped_html(inbox: Inbox,
                                                               template: str) -> None:
    subject, context = TEMPLATES[template]
    to = f"{template}@example.com"
    Mailer(make_settings(**smtp_env(inbox.port))).send(template, to, username=USERNAME, **context)

    got = inbox.last(to)
    address = got.message["From"].addresses[0]
    assert (address.display_name, address.addr_spec) == ("Acme", "hello@acme.example")
    assert got.envelope.mail_from == "hello@acme.example"
    assert str(got.message["To"]) == to
    assert str(got.message["Subject"]) == subject
    assert got.message["Message-ID"].endswith("@acme.example>")
    text, html = got.text, got.html
    assert not text.startswith("Subject:"), "the subject line is not part of the body"
    assert USERNAME in text, "text is not escaped"
    assert "Zoë &lt;b&gt;&amp;&#34;" in html and "<b>" not in html, "HTML is escaped"
    assert f"<title>{subject}</title>" in html
    for value in context.values():
        if isinstance(value, str):
            assert value in text and value in html
            if value.startswith("https://"):
                assert f'href="{value}"' in html, "links are buttons"
        else:
            assert f"{value} minutes" in text and f"{value} minutes" in html
    assert "Acme" in text and "https://app.example" in html


def test_untrusted_values_are_escaped_even_in_the_app_name(inbox: Inbox) -> None:
    settings = make_settings(**smtp_env(inbox.port), APP_NAME="Acme <script>, Inc")
    Mailer(settings).send("password_changed", "escape@example.com", username="<i>x</i>")
    got = inbox.last("escape@example.com")
    assert "<script>" not in got.html and "Acme &lt;script&gt;, Inc" in got.html
    assert "&lt;i&gt;x&lt;/i&gt;" in got.html
    assert "Acme <script>, Inc" in got.text
    # "Acme <script>, Inc" holds specials: it is quoted, not parsed as an address.
    address = got.message["From"].addresses[0]
    assert (address.display_name, address.addr_spec) == ("Acme <script>, Inc",
                                                         "hello@acme.example")


def test_a_line_break_cannot_add_headers(inbox: Inbox, tmp_path: Path) -> None:
    (tmp_path / "password_changed.txt").write_text("Subject: Hi {{ username }}\nBody\n")
    settings = make_settings(**smtp_env(inbox.port), MAIL_TEMPLATES_DIR=str(tmp_path))
    Mailer(settings).send("password_changed", "inject@example.com",
                          username="x\r\nBcc: evil@example.com")
    got = inbox.last("inject@example.com")
    assert str(got.message["Subject"]) == "Hi x Bcc: evil@example.com"
    assert got.message["Bcc"] is None and got.envelope.rcpt_tos == ["inject@example.com"]


def test_mailer_link_quotes_the_token() -> None:
    mailer = Mailer(make_settings())
    assert mailer.link("/verify", TOKEN) == LINK


def test_a_missing_template_or_subject_line_is_a_mail_error(tmp_path: Path) -> None:
    (tmp_path / "verify_email.txt").write_text("No subject here\n{{ link }}\n")
    mailer = Mailer(make_settings(MAIL_TEMPLATES_DIR=str(tmp_path)))
    with pytest.raises(MailError, match="Subject"):
        mailer.render("verify_email", "a@example.com", link=LINK)
    with pytest.raises(MailError, match="not found"):
        mailer.render("no_such_mail", "a@example.com")
    with pytest.raises(MailError, match="UndefinedError: 'link' is undefined"):
        Mailer(make_settings()).render("verify_email", "a@example.com")
    with pytest.raises(MailError, match="plain name"):
        mailer.render("../settings", "a@example.com")


def test_templates_dir_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "verify_email.txt").write_text(
        "Subject: Welcome to {{ app_name }}!\nClick {{ link }} to begin, {{ username }}.\n")
    (tmp_path / "verify_email.html").write_text("<p>Click <a href='{{ link }}'>here</a>, "
                                                "{{ username }}.</p>")
    mailer = Mailer(make_settings(MAIL_TEMPLATES_DIR=str(tmp_path)))

    custom = mailer.render("verify_email", "a@example.com", username="<b>", link=LINK)
    assert custom == Message(sender="Acme <hello@acme.example>", to="a@example.com",
                             subject="Welcome to Acme!",
                             text=f"Click {LINK} to begin, <b>.\n",
                             html=f"<p>Click <a href='{LINK}'>here</a>, &lt;b&gt;.</p>")
    packaged = mailer.render("password_reset", "a@example.com", link=LINK, ttl_minutes=60)
    assert packaged.subject == "Reset your password" and "60 minutes" in packaged.text


# --- STARTTLS, implicit TLS, failures -------------------------------------------------------

def test_starttls_with_a_verified_certificate_and_login(starttls_inbox: Inbox,
                                                        certificate: Certificate) -> None:
    mailer = Mailer(make_settings(**starttls_env(starttls_inbox, certificate)))
    mailer.send("magic_login", "tls@example.com", username="alice", link=LINK, ttl_minutes=5)
    got = starttls_inbox.last("tls@example.com")
    assert got.tls and got.authenticated
    assert LINK in got.text


def test_starttls_wrong_password_is_a_mail_error(starttls_inbox: Inbox,
                                                 certificate: Certificate) -> None:
    settings = make_settings(**starttls_env(starttls_inbox, certificate, SMTP_PASS="wrong"))
    with pytest.raises(MailError, match=r"authentication failed.*535") as raised:
        Mailer(settings).send("magic_login", "tls@example.com", link=LINK, ttl_minutes=5)
    assert_no_body(raised.value)
    assert "wrong" not in str(raised.value)


def test_starttls_refuses_a_certificate_it_cannot_verify(starttls_inbox: Inbox,
                                                         certificate: Certificate) -> None:
    # Without SMTP_CA_FILE the system CAs are used, and they did not sign our certificate.
    settings = make_settings(**starttls_env(starttls_inbox, certificate, SMTP_CA_FILE=""))
    with pytest.raises(MailError, match=r"(?i)certificate verify failed") as raised:
        Mailer(settings).send("magic_login", "tls@example.com", link=LINK, ttl_minutes=5)
    assert_no_body(raised.value)
    assert all(r.envelope.rcpt_tos != ["tls@example.com"] or r.authenticated
               for r in starttls_inbox.received)


def test_starttls_checks_the_host_name(tmp_path: Path) -> None:
    other = make_certificate(tmp_path, "mail.example", None)
    server = Inbox(require_starttls=True, tls_context=other.server_context())
    try:
        settings = make_settings(**smtp_env(server.port, SMTP_HOST="localhost",
                                            SMTP_SECURITY="starttls",
                                            SMTP_CA_FILE=str(other.cert)))
        with pytest.raises(MailError, match=r"(?i)hostname mismatch|doesn't match|not valid for"):
            Mailer(settings).send("password_changed", "name@example.com")
        assert server.received == []
    finally:
        server.stop()


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(inbox: Inbox) -> None:
    settings = make_settings(**smtp_env(inbox.port, SMTP_SECURITY="starttls"))
    with pytest.raises(MailError, match="STARTTLS"):
        Mailer(settings).send("password_changed", "downgrade@example.com")
    assert all("downgrade@example.com" not in r.envelope.rcpt_tos for r in inbox.received)


def test_implicit_tls(certificate: Certificate) -> None:
    server = Inbox(ssl_context=certificate.server_context())
    try:
        settings = make_settings(**smtp_env(server.port, SMTP_HOST="localhost",
                                            SMTP_SECURITY="ssl",
                                            SMTP_CA_FILE=str(certificate.cert)))
        Mailer(settings).send("account_deleted", "ssl@example.com", username="bob")
        assert "bob" in server.last("ssl@example.com").text
    finally:
        server.stop()
    untrusted = make_settings(**smtp_env(free_port(), SMTP_SECURITY="ssl"))
    with pytest.raises(MailError):
        Mailer(untrusted).send("account_deleted", "ssl@example.com")


def test_smtp_server_down_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(MailError, match="ConnectionRefused") as raised:
        Mailer(make_settings(**smtp_env(free_port()))).send("verify_email", "a@example.com",
                                                            link=LINK)
    assert time.monotonic() - started < 3 + 2
    assert_no_body(raised.value)


def test_a_silent_smtp_server_times_out() -> None:
    # The kernel completes the TCP handshake on a listening socket nobody accepts from: the
    # connection opens and the greeting never comes. Flask-Mail alone would wait forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        settings = make_settings(**smtp_env(port), SMTP_TIMEOUT="1")
        started = time.monotonic()
        with pytest.raises(MailError, match="SMTP_TIMEOUT"):
            Mailer(settings).send("verify_email", "a@example.com", link=LINK)
        assert time.monotonic() - started < 1 + 2


# --- Mailjet --------------------------------------------------------------------------------

MAILJET_SUCCESS = {"Messages": [{"Status": "success", "CustomID": "", "To": [{
    "Email": "jet@example.com", "MessageUUID": "123e4567-e89b-12d3-a456-426614174000",
    "MessageID": 1152921504600000000,
    "MessageHref": "https://api.mailjet.com/v3/REST/message/1152921504600000000"}],
    "Cc": [], "Bcc": []}]}
MAILJET_INVALID = {"Messages": [{"Status": "error", "Errors": [{
    "ErrorIdentifier": "x", "ErrorCode": "mj-0013", "StatusCode": 400,
    "ErrorMessage": "\"invalid\" is an invalid email address.",
    "ErrorRelatedTo": ["To[0].Email"]}]}]}
MAILJET_UNAUTHORIZED = {"ErrorIdentifier": "y", "StatusCode": 401,
                        "ErrorMessage": "API key authentication/authorization failure. You may "
                                        "be unauthorized to access the API or your API key may "
                                        "be expired."}


@dataclass
class MailjetServer:
    """A local HTTP server that records requests and answers what the test says."""

    status: int = 200
    answer: Any = field(default_factory=lambda: MAILJET_SUCCESS)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> MailjetServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                api.requests.append({"method": "POST", "path": self.path,
                                     "headers": dict(self.headers),
                                     "body": self.rfile.read(length)})
                data = json.dumps(api.answer).encode()
                self.send_response(api.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for the next poll.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mailjet() -> Iterator[MailjetServer]:
    server = MailjetServer().start()
    yield server
    server.stop()


def mailjet_settings(url: str) -> Settings:
    return make_settings(MAIL_TRANSPORT="mailjet", MAILJET_API_URL=url,
                         MJ_APIKEY_PUBLIC="public-key", MJ_APIKEY_PRIVATE="private-key")


def test_mailjet_send_api_v3_1(mailjet: MailjetServer) -> None:
    Mailer(mailjet_settings(mailjet.url)).send("verify_email", "jet@example.com",
                                               username=USERNAME, link=LINK)
    [request] = mailjet.requests
    assert request["method"] == "POST" and request["path"] == "/v3.1/send"
    expected = "Basic " + base64.b64encode(b"public-key:private-key").decode()
    assert request["headers"]["Authorization"] == expected
    assert request["headers"]["Content-Type"] == "application/json"
    [message] = json.loads(request["body"])["Messages"]
    assert message["From"] == {"Email": "hello@acme.example", "Name": "Acme"}
    assert message["To"] == [{"Email": "jet@example.com"}]
    assert message["Subject"] == "Confirm your email address"
    assert LINK in message["TextPart"] and USERNAME in message["TextPart"]
    assert LINK in message["HTMLPart"] and "&lt;b&gt;" in message["HTMLPart"]


def test_mailjet_refused_keys_are_a_mail_error(mailjet: MailjetServer) -> None:
    mailjet.status, mailjet.answer = 401, MAILJET_UNAUTHORIZED
    with pytest.raises(MailError, match="HTTP 401: API key authentication") as raised:
        Mailer(mailjet_settings(mailjet.url)).send("verify_email", "jet@example.com", link=LINK)
    assert_no_body(raised.value)


@pytest.mark.parametrize("status", [200, 400])
def test_mailjet_per_message_error_is_a_mail_error(mailjet: MailjetServer, status: int) -> None:
    # The brief's case is a 200; Mailjet itself answers 400 when a message has errors.
    mailjet.status, mailjet.answer = status, MAILJET_INVALID
    with pytest.raises(MailError) as raised:
        Mailer(mailjet_settings(mailjet.url)).send("verify_email", "invalid", link=LINK)
    assert '"invalid" is an invalid email address. (To[0].Email)' in str(raised.value)
    assert_no_body(raised.value)


def test_mailjet_down_is_a_mail_error() -> None:
    with pytest.raises(MailError, match="Mailjet"):
        Mailer(mailjet_settings(f"http://127.0.0.1:{free_port()}")).send(
            "verify_email", "jet@example.com", link=LINK)


# --- Choosing a transport -------------------------------------------------------------------

class RecordingTransport:
    """A deployer's transport, loaded by MAIL_TRANSPORT=module:Class."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


class NoArgumentTransport:
    def send(self, message: Message) -> None:
        raise RuntimeError("the provider said no")


def test_a_custom_transport_is_loaded_by_its_path() -> None:
    # pytest imports this file as a top-level module (tests/ has no __init__.py and is put on
    # sys.path), so "test_mail:RecordingTransport" names this very class.
    assert __name__ == "test_mail"
    settings = make_settings(MAIL_TRANSPORT="test_mail:RecordingTransport")
    mailer = Mailer(settings)
    mailer.send("password_changed", "custom@example.com", username="carol")
    transport = mailer.transport
    assert isinstance(transport, RecordingTransport) and transport.settings is settings
    [message] = transport.sent
    assert message.to == "custom@example.com" and message.subject == "Your password was changed"


def test_a_custom_transport_without_arguments_and_its_errors() -> None:
    transport = load_transport(make_settings(MAIL_TRANSPORT="test_mail:NoArgumentTransport"))
    assert isinstance(transport, NoArgumentTransport)
    with pytest.raises(MailError, match="NoArgumentTransport failed: RuntimeError"):
        Mailer(make_settings(), transport).send("password_changed", "a@example.com")


@pytest.mark.parametrize("spec, message", [
    ("", r"no mail transport is configured \(MAIL_TRANSPORT\)"),
    ("no_such_module:Transport", "could not be imported: ModuleNotFoundError"),
    ("test_mail:Missing", "could not be imported: AttributeError"),
    ("test_mail:LINK", "is not a class"),
    ("test_mail:Received", "could not be created"),
])
def test_a_bad_transport_is_a_clear_mail_error(spec: str, message: str) -> None:
    settings = make_settings(MAIL_TRANSPORT=spec)
    with pytest.raises(MailError, match=message):
        load_transport(settings)
    with pytest.raises(MailError, match=message):
        Mailer(settings).send("password_changed", "a@example.com")


def test_builtin_transports_by_name(inbox: Inbox) -> None:
    from hecate.mail.console import ConsoleTransport
    from hecate.mail.mailjet import MailjetTransport
    from hecate.mail.smtp import SmtpTransport

    assert isinstance(load_transport(make_settings(MAIL_TRANSPORT="console")), ConsoleTransport)
    assert isinstance(load_transport(make_settings(**smtp_env(inbox.port))), SmtpTransport)
    assert isinstance(load_transport(mailjet_settings("https://api.mailjet.com")),
                      MailjetTransport)


def test_console_transport_prints_the_link(capsys: pytest.CaptureFixture[str]) -> None:
    Mailer(make_settings(MAIL_TRANSPORT="console")).send("verify_email", "dev@example.com",
                                                         username="dev", link=LINK)
    out = capsys.readouterr().out
    assert "From: Acme <hello@acme.example>" in out and "To: dev@example.com" in out
    assert "Subject: Confirm your email address" in out
    assert LINK in out and "Hello dev," in out


def test_importing_the_mail_package_imports_no_transport_or_jinja() -> None:
    # Import time is FaaS cold-start time.
    code = ("import sys, hecate.mail; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jinja2', 'flask', 'flask_mail', 'smtplib') or m in ('urllib.request', 'ssl') or "
            "m.startswith('hecate.mail.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parent.parent)
    assert result.stdout.strip() == "[]", result.stdout
