"""Hecate and SecantusDB as separate processes, for the fault and many-instance tests: signals,
crashes and restarts need real processes, not threads of the test process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pymongo

from conftest import TEST_SECRET, Client, free_port, secantusd


def service_env(mongodb_url: str, db_name: str, **extra: str) -> dict[str, str]:
    """The environment of a service process: the test process's, less any Hecate settings it
    happens to carry, plus these."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"MONGODB_URL", "JWT_SECRET", "HECATE_DEV", "APP_URL", "MAIL_TRANSPORT"}}
    env.update({
        "MONGODB_URL": mongodb_url,
        "MONGODB_NAME": db_name,
        "JWT_SECRET": TEST_SECRET,
        "APP_URL": "http://localhost:4200",
        "MAIL_TRANSPORT": "console",
        "LOG_LEVEL": "warning",
        "MONGODB_TIMEOUT_MS": "1000",
        "EMAIL_VERIFICATION_REQUIRED": "false",
    })
    env.update(extra)
    return env


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Process:
    """A command run in its own process group, its output kept in a file."""

    def __init__(self, command: Sequence[str], env: dict[str, str], log: Path,
                 port: int) -> None:
        self.port = port
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(list(command), env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not listening after {timeout} s:\n{self.output}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Ends the whole group, whatever state it is in (test teardown)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


class Serve(Process):
    """`hecate serve` on a free port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        port = free_port()
        super().__init__([sys.executable, "-m", "hecate.cli", "serve", "--port", str(port)],
                         env, log, port)
        self.base_url = f"http://127.0.0.1:{port}"

    def client(self) -> Client:
        return Client(self.base_url)

    def for_client(self, client: Client) -> Client:
        """The same cookie jar, talking to this instance (a load balancer's next pick)."""
        other = Client(self.base_url)
        other.jar = client.jar
        return other


class SecantusDB(Process):
    """A SecantusDB server on a given port and data directory, durable (--sync-on-commit), so a
    SIGKILL loses nothing that was committed (see STACK-NOTES)."""

    def __init__(self, port: int, data_dir: Path, log: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__([secantusd(), "--host", "127.0.0.1", "--port", str(port),
                          "--storage-path", str(data_dir), "--sync-on-commit",
                          "--log-level", "WARNING"], os.environ.copy(), log, port)

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with pymongo.MongoClient(self.url, serverSelectionTimeoutMS=300) as client:
                    client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError:
                if self.process.poll() is not None:
                    raise AssertionError(f"secantusd-py exited:\n{self.output}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"secantusd-py not ready:\n{self.output}") from None
                time.sleep(0.1)


def wait_status(url: str, status: int, timeout: float) -> httpx.Response:
    """GET url until it answers ``status`` (not listening yet counts as not yet); the last
    answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=10)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        else:
            if response.status_code == status or time.monotonic() > deadline:
                return response
        time.sleep(0.2)
