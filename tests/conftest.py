"""Real servers for the tests: one SecantusDB process (MongoDB wire protocol over TCP) for the
session, a fresh database per test, and Hecate served by uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mongoengine
import pymongo
import pytest
import uvicorn

from hecate.app import create_app
from hecate.core import models
from hecate.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secantusd() -> str:
    found = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    if not Path(found).exists():
        pytest.fail("secantusd-py is not installed: pip install -e '.[test]'")
    return found


@dataclass
class Database:
    """A SecantusDB server run as a separate process."""

    storage: str = ":memory:"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> Database:
        self.process = subprocess.Popen(
            [secantusd(), "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", self.storage, "--sync-on-commit", "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with pymongo.MongoClient(self.url, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                return self
            except pymongo.errors.PyMongoError:
                if self.process.poll() is not None:
                    raise RuntimeError("secantusd-py exited at start") from None
                time.sleep(0.2)
        raise RuntimeError("secantusd-py did not answer within 30 s")

    def stop(self) -> None:
        # SecantusDB hangs at shutdown while clients are connected: disconnect first.
        mongoengine.disconnect_all()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    db = Database().start()
    yield db
    db.stop()


@pytest.fixture
def db_name(database: Database) -> Iterator[str]:
    name = f"hecate_test_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(database.url) as client:
        client.drop_database(name)


@pytest.fixture
def mongo(database: Database, db_name: str) -> Iterator[Any]:
    """Direct access to the test's database, for arranging Node-era data and checking state."""
    with pymongo.MongoClient(database.url, tz_aware=True) as client:
        yield client[db_name]


class Client:
    """An HTTP client that keeps cookies the way a browser does for our purposes: by name and
    path, honouring Max-Age=0, and (unlike http.cookiejar) sending Secure cookies over the
    plain-HTTP test connection, as browsers do for localhost."""

    def __init__(self, base_url: str, origin: str | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self.jar: dict[str, tuple[str, str]] = {}
        self.origin = origin

    def cookie(self, name: str) -> str | None:
        entry = self.jar.get(name)
        return entry[0] if entry else None

    def set_cookie(self, name: str, value: str, path: str = "/") -> None:
        self.jar[name] = (value, path)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        cookies = "; ".join(
            f"{name}={value}" for name, (value, cookie_path) in self.jar.items()
            if path.startswith(cookie_path)
        )
        if cookies and "cookie" not in {k.lower() for k in headers}:
            headers["Cookie"] = cookies
        if self.origin and "origin" not in {k.lower() for k in headers}:
            headers["Origin"] = self.origin
        if (method.upper() in {"POST", "PUT", "DELETE", "PATCH"}
                and not {"json", "content", "data", "files"} & kwargs.keys()
                and "content-type" not in {k.lower() for k in headers}):
            # As SPAs do: a bodiless request that changes something is still sent as JSON (the
            # CSRF check requires it).
            headers["Content-Type"] = "application/json"
        response = self.http.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            attrs = parse_set_cookie(raw)
            if attrs["max-age"] == "0":
                self.jar.pop(attrs["name"], None)
            else:
                self.jar[attrs["name"]] = (attrs["value"], attrs.get("path", "/"))
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def close(self) -> None:
        self.http.close()


def parse_set_cookie(raw: str) -> dict[str, str]:
    """name, value and lower-cased attributes (flags map to '')."""
    first, *rest = raw.split(";")
    name, _, value = first.partition("=")
    attrs = {"name": name.strip(), "value": value.strip(), "max-age": ""}
    for part in rest:
        key, _, val = part.partition("=")
        attrs[key.strip().lower()] = val.strip()
    return attrs


class AsgiServer:
    """An ASGI app under uvicorn in a thread of the test process, on 127.0.0.1:port, over HTTPS
    when given (certfile, keyfile)."""

    def __init__(self, app: Any, port: int, tls: tuple[str, str] | None = None,
                 **config: Any) -> None:
        certfile, keyfile = tls or (None, None)
        self.server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
            lifespan="off", proxy_headers=False, ssl_certfile=certfile, ssl_keyfile=keyfile,
            **config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def wait_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path,
                 timeout: float = 60) -> None:
    """Until a server started as a process answers GET /api/health with 200; its log on failure."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        try:
            if httpx.get(base_url + "/api/health", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)


def production_command(port: int) -> list[str]:
    """The Dockerfile's CMD (the README's production command), run from this environment on
    127.0.0.1:port."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            command: list[str] = json.loads(line[4:])
            break
    else:
        raise AssertionError("the Dockerfile has no CMD")
    command[0] = str(Path(sys.executable).with_name(command[0]))
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    return command


class Service:
    """Hecate served by uvicorn in a thread of the test process, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        models.ensure_indexes()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server = AsgiServer(self.app, self.port)
        self.clients: list[Client] = []

    def client(self, origin: str | None = None) -> Client:
        client = Client(self.base_url, origin)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.stop()
        self.app.services.close()


def test_settings(database: Database, db_name: str, **env: str) -> Settings:
    base = {
        "MONGODB_URL": database.url,
        "MONGODB_NAME": db_name,
        "JWT_SECRET": TEST_SECRET,
        "APP_URL": "http://localhost:4200",
        "LOG_LEVEL": "warning",
        "MONGODB_TIMEOUT_MS": "3000",
        "MAIL_TRANSPORT": "console",
    }
    base.update(env)
    return Settings.from_env(base)


@pytest.fixture
def start_service(database: Database, db_name: str) -> Iterator[Callable[..., Service]]:
    """start_service(**env) -> a running Hecate with those settings on this test's database."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        service = Service(test_settings(database, db_name, **env))
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def service(start_service: Callable[..., Service]) -> Service:
    return start_service()


@pytest.fixture
def client(service: Service) -> Client:
    return service.client()


PASSWORD = "correct horse battery"


def register(client: Client, username: str = "alice1", email: str = "alice@example.com",
             password: str = PASSWORD) -> httpx.Response:
    response = client.post("/api/user/register",
                           json={"username": username, "email": email, "password": password})
    assert response.status_code == 201, response.text
    return response


def login(client: Client, email: str = "alice@example.com", password: str = PASSWORD,
          remember: bool = False) -> httpx.Response:
    return client.post("/api/auth/login",
                       json={"email": email, "password": password, "rememberMe": remember})


@pytest.fixture
def registered(client: Client) -> Client:
    """A client signed in as alice1 (registered through the API)."""
    register(client)
    return client


class Inbox:
    """A real SMTP server (aiosmtpd) in the test process that keeps every message it receives."""

    def __init__(self) -> None:
        import email
        import email.policy

        from aiosmtpd.controller import Controller

        self._email = email
        self._policy = email.policy.default
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        inbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = inbox._email.message_from_bytes(envelope.content,
                                                          policy=inbox._policy)
                with inbox._lock:
                    inbox.messages.append(message)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.stopped = False

    def env(self) -> dict[str, str]:
        return {"MAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port),
                "SMTP_SECURITY": "none", "SMTP_TIMEOUT": "5", "MAIL_RESPONSE_MIN_MS": "0"}

    def to(self, address: str) -> list[Any]:
        with self._lock:
            return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    def last(self, address: str) -> Any:
        found = self.to(address)
        assert found, f"no mail to {address}; got {[str(m['To']) for m in self.messages]}"
        return found[-1]

    @staticmethod
    def text(message: Any) -> str:
        return str(message.get_body(preferencelist=("plain",)).get_content())

    @staticmethod
    def html(message: Any) -> str:
        return str(message.get_body(preferencelist=("html",)).get_content())

    def link_token(self, address: str) -> str:
        """The token of the link in the last mail to ``address``."""
        import re

        match = re.search(r"\?token=([A-Za-z0-9_%-]+)", self.text(self.last(address)))
        assert match, "the mail carries no link"
        from urllib.parse import unquote

        return unquote(match.group(1))

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.controller.stop()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    server = Inbox()
    yield server
    server.stop()


@pytest.fixture
def mail_service(start_service: Callable[..., Service], inbox: Inbox) -> Service:
    """Hecate sending mail to the test's SMTP server."""
    return start_service(**inbox.env())
