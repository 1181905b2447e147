"""Hecate, measured: `python benchmarks/run.py` (or `make bench`).

Starts its own SecantusDB and Hecate processes on free 127.0.0.1 ports and prints:

  (a) cold start, spawn -> first answer (GET /api/health), of `hecate serve` and of the
      functions-framework entry point (main.py), median/min/max of 5, with the serving process's
      RSS after start;
  (b) GET /api/user, POST /api/auth/refresh chains and POST /api/auth/login under
      `uvicorn --factory hecate.asgi:create --workers N` (N = 1, 2) at 1 and 16 concurrent
      clients: requests/s, p50/p99, and the workers' RSS and peak RSS (VmHWM);
  (c) the floor of each: the same work without HTTP or framework, in a loop in one process, and
      service / floor;
  (d) what verifying one access token costs.

The load generator is wrk (Debian's `wrk`; `make bench` installs it), one thread per connection,
with a Lua script that keeps each connection's refresh chain: a C client whose own cost per request
is tens of microseconds, so p50 is the service's latency (the asyncio + httpx client used before
added ≈ 2 ms to every request, which the floors do not have). Nothing here is asserted: the
numbers depend on the machine (printed first). Options: --duration S (per cell, default 5),
--quick (2 s cells, 3 cold starts).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET = "benchmark-secret-" + "x" * 40
EMAIL = "bench@example.com"
PASSWORD = "correct horse battery staple"
SCENARIOS = ("user", "refresh", "login")
LABELS = {"user": "GET /api/user", "refresh": "POST /api/auth/refresh (chain)",
          "login": "POST /api/auth/login"}


# --- helpers ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tool(name: str) -> list[str]:
    found = BIN / name
    if found.exists():
        return [str(found)]
    which = shutil.which(name)
    if which:
        return [which]
    raise SystemExit(f"{name} is not installed (pip install -e '.[test,gcp]')")


def get(port: int, path: str, timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_for(port: int, process: subprocess.Popen[bytes], limit: float = 60.0) -> float:
    """Seconds until GET /api/health answers 200 (polling every 5 ms)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if get(port, "/api/health") == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{process.args!r} did not answer within {limit} s")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    pids, todo = [pid], [pid]
    while todo:
        kids = children(todo.pop())
        pids += kids
        todo += kids
    return pids


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MiB."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def env_for(db_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"HECATE_DEV", "PYTHONWARNINGS"}}
    env.update({"MONGODB_URL": db_url, "MONGODB_NAME": "bench", "JWT_SECRET": SECRET,
                "APP_URL": "http://localhost:4200", "MAIL_TRANSPORT": "console",
                "LOG_LEVEL": "warning", "PORT": str(port), "HOST": "127.0.0.1",
                "LIMITER_ENABLED": "false", "MAX_SESSIONS": "64"})
    env.update(extra)
    return env


@contextlib.contextmanager
def database() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [*tool("secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path",
         ":memory:", "--sync-on-commit", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    import pymongo

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with pymongo.MongoClient[dict[str, Any]](url, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                break
            except pymongo.errors.PyMongoError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("secantusd-py did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- (a) cold start -----------------------------------------------------------------------------

def cold_start(kind: str, db_url: str, runs: int) -> dict[str, Any]:
    times, rss = [], []
    for _ in range(runs):
        port = free_port()
        if kind == "hecate serve":
            args = [*tool("hecate"), "serve", "--port", str(port)]
        else:
            args = [*tool("functions-framework"), "--target", "hecate", "--source",
                    str(ROOT / "main.py"), "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(args, cwd=ROOT, env=env_for(db_url, port),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            times.append(wait_for(port, process) * 1000)
            # the serving process: the spawned one, or gunicorn's worker under functions-framework
            pids = tree(process.pid)
            rss.append(max(memory(pid).get("VmRSS", 0) for pid in pids))
        finally:
            stop(process)
    return {"kind": kind, "median": statistics.median(times), "min": min(times),
            "max": max(times), "rss": statistics.median(rss)}


# --- (b) load -----------------------------------------------------------------------------------

def set_cookies(response: Any) -> dict[str, str]:
    found = {}
    for raw in response.headers.get_list("set-cookie"):
        name, _, value = raw.split(";", 1)[0].partition("=")
        found[name.strip()] = value.strip()
    return found


# wrk, one thread per connection, so that each connection keeps its own refresh chain: `setup`
# hands each thread its session's cookie, `response` takes the rotated refresh cookie (the last
# Set-Cookie header of the answer, which wrk keeps) for the next request on that connection.
WRK_SCRIPT = """
local cookies = {%(cookies)s}
local given = 0
function setup(thread)
  given = given + 1
  thread:set("cookie", cookies[given])
end
function request()
  return wrk.format("%(method)s", "%(path)s", %(headers)s, %(body)s)
end
%(response)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": %%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""
WRK_ROTATE = """
function response(status, headers, body)
  local set = headers["set-cookie"]
  if status == 200 and set then cookie = set:match("^([^;]+)") end
end
"""


def _lua(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for these values


def wrk_script(scenario: str, cookies: list[str]) -> str:
    json_headers = '{["Content-Type"] = "application/json", ["Cookie"] = cookie}'
    if scenario == "user":
        method, path, headers, body = "GET", "/api/user", '{["Cookie"] = cookie}', "nil"
    elif scenario == "refresh":
        method, path, headers, body = "POST", "/api/auth/refresh", json_headers, _lua("{}")
    else:
        method, path, headers, body = ("POST", "/api/auth/login", json_headers,
                                       _lua(json.dumps({"email": EMAIL, "password": PASSWORD})))
    return WRK_SCRIPT % {"cookies": ", ".join(_lua(c) for c in cookies), "method": method,
                         "path": path, "headers": headers, "body": body,
                         "response": WRK_ROTATE if scenario == "refresh" else ""}


def sessions(port: int, count: int) -> list[dict[str, str]]:
    """Setup, not timed: a session per connection (refresh chains never share one)."""
    import httpx

    found = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        for _ in range(count):
            response = http.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
            response.raise_for_status()
            found.append(set_cookies(response))
    return found


def wrk(port: int, scenario: str, cookies: list[str], seconds: float) -> dict[str, Any]:
    """One wrk run: each of len(cookies) connections on a thread of its own."""
    connections = len(cookies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(scenario, cookies))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(
            [tool("wrk")[0], f"-t{connections}", f"-c{connections}", f"-d{max(seconds, 1):.0f}s",
             "--timeout", "30s", "-s", script.name, f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True)
    finally:
        os.unlink(script.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["client_cpu_s"] = (after.ru_utime + after.ru_stime
                              - before.ru_utime - before.ru_stime)
    return result


def load_cell(port: int, scenario: str, concurrency: int, duration: float) -> dict[str, Any]:
    """A warm-up run on sessions of its own, then the measured run."""
    cookie = "refresh" if scenario == "refresh" else "access"
    states = sessions(port, 2 * concurrency)
    cookies = [f"{cookie}={state[cookie]}" for state in states]
    wrk(port, scenario, cookies[:concurrency], min(1.0, duration / 5))
    run = wrk(port, scenario, cookies[concurrency:], duration)
    seconds = run["duration_us"] / 1e6
    return {"rps": run["requests"] / seconds, "p50": run["p50_us"] / 1000,
            "p99": run["p99_us"] / 1000, "count": run["requests"], "errors": run["errors"],
            "client_cpu": run["client_cpu_s"] / seconds}


def serve_uvicorn(db_url: str, workers: int, duration: float) -> dict[str, Any]:
    port = free_port()
    process = subprocess.Popen(
        [*tool("uvicorn"), "--factory", "hecate.asgi:create", "--host", "127.0.0.1", "--port",
         str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env_for(db_url, port), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        wait_for(port, process)
        # every worker answers once before "after start" is read
        for _ in range(4 * workers):
            get(port, "/api/health")
        time.sleep(0.3)
        worker_pids = [p for p in tree(process.pid) if p != process.pid] or [process.pid]
        if workers == 1 and len(worker_pids) > 1:
            worker_pids = [process.pid]
        rss_start = max(memory(pid).get("VmRSS", 0) for pid in worker_pids)
        cells = {}
        for scenario in SCENARIOS:
            for concurrency in (1, 16):
                cells[(scenario, concurrency)] = load_cell(port, scenario, concurrency, duration)
                print(f"  {workers} worker(s) {scenario:8s} c={concurrency:<3d} "
                      f"{cells[(scenario, concurrency)]['rps']:8.1f} req/s", file=sys.stderr,
                      flush=True)
        mem = [memory(pid) for pid in worker_pids]
        return {"workers": workers, "cells": cells, "rss_start": rss_start,
                "rss_after": max(m.get("VmRSS", 0) for m in mem),
                "hwm": max(m.get("VmHWM", 0) for m in mem), "pids": len(worker_pids)}
    finally:
        stop(process)


def register(db_url: str) -> None:
    """The benchmark account, registered through the app itself (argon2id hash)."""
    os.environ.update(env_for(db_url, 0))
    from hecate.core import models, users
    from hecate.core.settings import Settings

    settings = Settings.from_env()
    models.connect(settings.mongodb_url, settings.mongodb_name, settings.mongodb_timeout_ms)
    models.ensure_indexes()
    users.register("bench1", EMAIL, PASSWORD, min_length=8)
    models.disconnect()


# --- (c), (d) floors ----------------------------------------------------------------------------

def _floor() -> dict[str, Any]:
    """In this process, no HTTP, no framework: the database calls and token work of each route."""
    import jwt

    from hecate.core import models, passwords, users
    from hecate.core.settings import Settings
    from hecate.services import Services

    settings = Settings.from_env()
    models.connect(settings.mongodb_url, settings.mongodb_name, settings.mongodb_timeout_ms)
    services = Services(settings)
    user = users.find_by_email(EMAIL)
    assert user is not None
    grant = services.sessions.create(user.id, remember=False)
    access, _ = services.tokens.issue_access(str(user.id), grant.session_id, True)
    refresh = services.tokens.issue_refresh(
        str(user.id), grant.session_id, grant.jti, int(grant.expires_at.timestamp()),
        remember=grant.remember, session_expires_at=int(grant.absolute_expires_at.timestamp()))

    def timed(work: Any, seconds: float = 2.0) -> float:
        work()  # warm
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            work()
            count += 1
        return (time.perf_counter() - started) / count

    def whoami() -> None:
        claims = services.tokens.verify_access(access)
        json.dumps({"user": users.get(claims.user_id).public()}, default=str)

    state = {"refresh": refresh}

    def rotate() -> None:
        claims = services.tokens.verify_refresh(state["refresh"])
        new = services.sessions.rotate(claims)
        found = users.get(claims.user_id)
        services.tokens.issue_access(str(found.id), new.session_id, bool(found.verified))
        state["refresh"] = services.tokens.issue_refresh(
            str(found.id), new.session_id, new.jti, int(new.expires_at.timestamp()),
            remember=new.remember, session_expires_at=int(new.absolute_expires_at.timestamp()))
        json.dumps({"user": found.public()}, default=str)

    def login() -> None:
        found = users.find_by_email(EMAIL)
        assert found is not None
        ok, _ = passwords.verify_password(PASSWORD, found.hash)
        assert ok

    result = {"user": timed(whoami), "refresh": timed(rotate), "login": timed(login, 3.0)}

    # (d) the token check alone: Hecate's verify_access, and bare PyJWT HS256 with the same claims
    result["verify_access"] = timed(lambda: services.tokens.verify_access(access), 1.0)
    options: Any = {"require": ["exp"]}
    result["pyjwt_decode"] = timed(lambda: jwt.decode(
        access, SECRET, algorithms=["HS256"], issuer=settings.jwt_issuer, leeway=30,
        options=options), 1.0)
    result["argon2_verify"] = timed(lambda: passwords.verify_password(PASSWORD, user.hash),
                                    2.0)
    models.disconnect()
    return result


def floors(db_url: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "_floor"], capture_output=True, text=True,
                         check=True, env=env_for(db_url, 0), cwd=ROOT)
    return json.loads(out.stdout)


# --- report -------------------------------------------------------------------------------------

def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for name in ("connexion", "flask", "starlette", "uvicorn", "pymongo", "mongoengine", "pyjwt",
                 "libpass", "argon2-cffi", "functions-framework", "secantusdb", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    versions.append(f"wrk {wrk_version()}")
    load = os.getloadavg()
    return (f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {model}; "
            f"load average before the run {load[0]:.2f}\n"
            f"python {platform.python_version()} on {platform.platform()}\n"
            f"versions: {', '.join(versions)}")


def wrk_version() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (`make bench` does)")
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).split()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load cell")
    parser.add_argument("--runs", type=int, default=5, help="cold starts per entry point")
    parser.add_argument("--quick", action="store_true", help="2 s cells, 3 cold starts")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.runs = 2.0, 3
    started = time.monotonic()
    print(machine())
    print(f"command: python benchmarks/run.py{' --quick' if args.quick else ''} "
          f"(cells of {args.duration:g} s, {args.runs} cold starts)\n", flush=True)
    with database() as db_url:
        register(db_url)
        print("(a) cold start, spawn -> first answer of GET /api/health", flush=True)
        print("| entry point | median ms | min ms | max ms | RSS after start MiB |")
        print("|---|---|---|---|---|")
        for kind in ("hecate serve", "functions-framework"):
            c = cold_start(kind, db_url, args.runs)
            print(f"| {kind} | {c['median']:.0f} | {c['min']:.0f} | {c['max']:.0f} | "
                  f"{c['rss']:.1f} |", flush=True)
        floor = floors(db_url)
        served = [serve_uvicorn(db_url, workers, args.duration) for workers in (1, 2)]

    print("\n(b) uvicorn --factory hecate.asgi:create; load from a separate process "
          "(wrk, a thread per connection), LIMITER_ENABLED=false")
    print("| route | workers | clients | req/s | p50 ms | p99 ms | errors | "
          "service / floor (req/s) | load generator CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        for run in served:
            for concurrency in (1, 16):
                cell = run["cells"][(scenario, concurrency)]
                floor_rps = 1 / floor[scenario]
                print(f"| {LABELS[scenario]} | {run['workers']} | {concurrency} | "
                      f"{cell['rps']:.1f} | {cell['p50']:.2f} | {cell['p99']:.2f} | "
                      f"{cell['errors']} | {cell['rps'] / floor_rps:.2f} | "
                      f"{cell['client_cpu'] * 100:.0f}% |")
    print("\nworker memory (MiB, max over workers)")
    print("| workers | RSS after start | RSS after load | peak (VmHWM) |")
    print("|---|---|---|---|")
    for run in served:
        print(f"| {run['workers']} | {run['rss_start']:.1f} | {run['rss_after']:.1f} | "
              f"{run['hwm']:.1f} |")

    print("\n(c) floor: the same work in a loop in one process, no HTTP, no framework")
    print("| route | floor per op | floor ops/s | service p50 at 1 client, 1 worker | "
          "service p50 / floor |")
    print("|---|---|---|---|---|")
    what = {"user": "access JWT check + user by id + JSON",
            "refresh": "refresh JWT check + session rotation + user by id + 2 JWTs",
            "login": "user by email + one argon2id verify"}
    for scenario in SCENARIOS:
        per = floor[scenario] * 1000
        p50 = served[0]["cells"][(scenario, 1)]["p50"]
        print(f"| {LABELS[scenario]} ({what[scenario]}) | {per:.2f} ms | {1000 / per:.0f} | "
              f"{p50:.2f} ms | {p50 / per:.2f} |")
    print("\n(d) token verification, per call")
    print(f"- Hecate TokenService.verify_access (HS256, kid, iss/aud/exp/nbf/iat, type): "
          f"{floor['verify_access'] * 1e6:.1f} µs")
    print(f"- bare pyjwt.decode HS256 (exp required, iss checked): "
          f"{floor['pyjwt_decode'] * 1e6:.1f} µs")
    print(f"- one argon2id verify (m=19 MiB, t=2, p=1): {floor['argon2_verify'] * 1000:.1f} ms")
    print(f"\ntotal run time {time.monotonic() - started:.0f} s; load average after the run "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_floor":
        print(json.dumps(_floor()))
    else:
        main()
