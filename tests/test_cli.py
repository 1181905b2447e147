"""The README's first command and the `hecate` console script, run as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pymongo
import pytest

from conftest import PASSWORD, ROOT, TEST_SECRET, Database, free_port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"MONGODB_URL", "JWT_SECRET", "HECATE_DEV", "APP_URL", "MAIL_TRANSPORT"}}
    env.update(extra)
    return env


def _wait_healthy(process: subprocess.Popen[str], url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the service exited with {process.returncode}:\n{out}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer 200 within {timeout} s")


def _stop(process: subprocess.Popen[str]) -> str:
    os.killpg(process.pid, signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"the service did not stop on Ctrl-C:\n{out}")
    return out


def _make_run(data_dir: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["make", "run"], cwd=ROOT, env=_env(PORT=str(port), HECATE_DATA_DIR=str(data_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def test_make_run_serves_on_the_embedded_database_and_keeps_data(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    process = _make_run(tmp_path, port)
    try:
        _wait_healthy(process, f"{base}/health", timeout=600)
        response = httpx.post(f"{base}/user/register", json={
            "username": "makerun1", "email": "make@example.com", "password": PASSWORD})
        assert response.status_code == 201, response.text
        # Development mode: SameSite=Lax cookies for an SPA on localhost.
        assert "SameSite=Lax" in response.headers["set-cookie"]
        assert httpx.get(f"{base}/ui/").status_code == 200
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "Hecate"
    finally:
        output = _stop(process)
    assert "not for production" in output
    assert f"http://localhost:{port}/api/ui/" in output
    assert (tmp_path / "jwt-secret").exists()
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0

    # Restart: the account and the generated secret survived, and the database child is gone.
    process = _make_run(tmp_path, port)
    try:
        _wait_healthy(process, f"{base}/health", timeout=120)
        login = httpx.post(f"{base}/auth/login",
                           json={"email": "make@example.com", "password": PASSWORD})
        assert login.status_code == 200, login.text
    finally:
        _stop(process)
    leftover = subprocess.run(["pgrep", "-f", f"secantusd-py.*{tmp_path}"],
                              capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "the embedded database outlived the service"


def _hecate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hecate.cli", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=120)


def test_serve_outside_dev_mode_refuses_without_mongodb_url(tmp_path: Path) -> None:
    result = _hecate("serve", JWT_SECRET=TEST_SECRET, APP_URL="https://app.example",
                     HECATE_DATA_DIR=str(tmp_path), MAIL_TRANSPORT="console")
    assert result.returncode == 2
    assert "MONGODB_URL" in result.stderr


def test_serve_outside_dev_mode_refuses_a_missing_or_short_secret() -> None:
    result = _hecate("serve", MONGODB_URL="mongodb://127.0.0.1:1", APP_URL="https://a.example")
    assert result.returncode == 2 and "JWT_SECRET" in result.stderr
    result = _hecate("serve", MONGODB_URL="mongodb://127.0.0.1:1", APP_URL="https://a.example",
                     JWT_SECRET="short")
    assert result.returncode == 2 and "32 bytes" in result.stderr


def test_serve_outside_dev_mode_refuses_without_a_mail_transport() -> None:
    result = _hecate("serve", MONGODB_URL="mongodb://127.0.0.1:1", APP_URL="https://a.example",
                     JWT_SECRET=TEST_SECRET)
    assert result.returncode == 2 and "MAIL_TRANSPORT" in result.stderr


def test_serve_with_mongodb_url_and_check_reports_node_era_duplicates(
    database: Database, db_name: str, mongo: pymongo.database.Database
) -> None:
    env = {"MONGODB_URL": database.url, "MONGODB_NAME": db_name, "JWT_SECRET": TEST_SECRET,
           "APP_URL": "https://app.example", "MAIL_TRANSPORT": "console"}
    result = _hecate("check", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "indexes are in place" in result.stdout
    assert {"emailNormalized_unique", "usernameNormalized_unique"} <= set(
        mongo.users.index_information())

    mongo.users.insert_many([
        {"username": "nodeuser1", "email": "Twin@Example.com", "hash": "$2b$10$x",
         "verified": True, "allowMagicLogin": False, "sessions": []},
        {"username": "nodeuser2", "email": "twin@example.com", "hash": "$2b$10$y",
         "verified": True, "allowMagicLogin": False, "sessions": []},
    ])
    result = _hecate("check", **env)
    assert result.returncode == 1
    assert "twin@example.com" in result.stdout and "problem:" in result.stdout
    assert "2 bcrypt hashes" in result.stdout

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hecate.cli", "serve", "--port", str(port)], env=_env(**env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}/api/health", timeout=60)
    finally:
        output = _stop(process)
    assert "not for production" not in output


def test_keys_generate_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    from hecate.core.settings import Settings

    result = _hecate("keys", "generate", "--algorithm", "EdDSA", "--out", str(tmp_path / "k"))
    assert result.returncode == 0, result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    private = next(p for p in (tmp_path / "k").glob("jwt-eddsa-*.pem")
                   if not p.name.endswith(".pub.pem"))
    public = next((tmp_path / "k").glob("jwt-eddsa-*.pub.pem"))
    assert private.stat().st_mode & 0o777 == 0o600
    assert "PUBLIC KEY" in public.read_text()
    assert "JWT_ALGORITHM=EdDSA" in result.stdout
    assert f"JWT_PRIVATE_KEY={private}" in result.stdout
    # The key works as printed, and the kid shown is the one tokens will carry.
    settings = Settings.from_env({"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": str(private),
                                  "APP_URL": "https://a.example"})
    assert settings.jwt_signing_key is not None
    assert f"kid:         {settings.jwt_signing_key.kid}" in result.stdout


def test_keys_generate_to_stdout_only_when_asked() -> None:
    result = _hecate("keys", "generate", "--algorithm", "RS256", "--out", "-")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE KEY" not in result.stderr and "JWT_ALGORITHM=RS256" in result.stderr


def test_check_reports_the_algorithm_and_the_kids(
    database: Database, db_name: str, tmp_path: Path
) -> None:
    env = {"MONGODB_URL": database.url, "MONGODB_NAME": db_name, "JWT_SECRET": TEST_SECRET,
           "APP_URL": "https://app.example", "MAIL_TRANSPORT": "console"}
    result = _hecate("check", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tokens: HS256, signing key kid=" in result.stdout
    assert TEST_SECRET not in result.stdout

    made = _hecate("keys", "generate", "--algorithm", "ES256", "--out", str(tmp_path))
    kid = made.stdout.split("kid:")[1].split()[0]
    private = next(p for p in tmp_path.glob("*.pem") if not p.name.endswith(".pub.pem"))
    result = _hecate("check", JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=str(private), **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"tokens: ES256, signing key kid={kid}" in result.stdout
    assert "JWT_SECRET (1 value(s)) still verifies HS256 tokens" in result.stdout

    result = _hecate("check", JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=str(tmp_path / "nope.pem"),
                     **env)
    assert result.returncode == 2
    assert "JWT_PRIVATE_KEY: cannot read the key file" in result.stderr
