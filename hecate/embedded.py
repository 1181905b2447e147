"""The embedded development database: a SecantusDB server (MongoDB wire protocol) started as a
child process on a free port, its data under the data dir so it survives restarts.

SecantusDB is GPL-2.0 and an optional dependency (``pip install 'hecate[embedded]'``): Hecate
only starts its command and talks to it over TCP, as to any MongoDB.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

START_TIMEOUT = 30.0


class EmbeddedDatabaseError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> str:
    beside = Path(sys.executable).with_name("secantusd-py")
    found = str(beside) if beside.exists() else shutil.which("secantusd-py")
    if not found:
        raise EmbeddedDatabaseError(
            "the embedded database needs SecantusDB: pip install 'hecate[embedded]' "
            "(or set MONGODB_URL to use your own MongoDB)"
        )
    return found


class EmbeddedDatabase:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "secantusd.log"

    def start(self) -> str:
        import pymongo  # imported here: only development mode needs it this early

        storage = self.data_dir / "db"
        storage.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self._log = open(self.log_path, "ab")
        # --sync-on-commit: without it, commits made just before a crash are lost on restart.
        self.process = subprocess.Popen(
            [_command(), "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(storage), "--sync-on-commit", "--log-level", "WARNING"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise EmbeddedDatabaseError(
                    f"the embedded database exited at start (is another Hecate using "
                    f"{storage}?); see {self.log_path}"
                )
            try:
                with pymongo.MongoClient(self.url, serverSelectionTimeoutMS=300) as client:
                    client.admin.command("ping")
                return self.url
            except pymongo.errors.PyMongoError:
                time.sleep(0.1)
        self.stop()
        raise EmbeddedDatabaseError(f"the embedded database did not answer; see {self.log_path}")

    def stop(self) -> None:
        """Callers disconnect their clients first: SecantusDB waits for open connections."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
