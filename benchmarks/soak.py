"""Hecate under a long run of mixed traffic: `python benchmarks/soak.py [--minutes 10]`.

Starts its own SecantusDB and `hecate serve` (rate limits on, metrics on) on free 127.0.0.1
ports, then runs virtual users for the set time. Each is an SPA user behind a proxy (its own
X-Forwarded-For address, TRUSTED_PROXIES=1) who registers, then, with a short think time between
steps: asks who they are (refreshing once on a 401, as an SPA does), refreshes, signs out and in
again, signs in on another device, mistypes the password, sends malformed bodies, and now and then
becomes a new user (registers).

It reports, per interval (default a minute): requests, latency percentiles, the serving process's
RSS and its open connections to the database (TCP connections of the process to the database
port, from /proc, and SecantusDB's serverStatus); and, at the end, answers by kind. It checks the
promises and exits 1 if one is broken:

- no 5xx and no transport error (reset, timeout), and no answer a user would not expect
  (e.g. a 401 on a refresh that should work);
- RSS growth after warm-up within 10%: the lowest RSS sample of the last interval against that of
  the first interval after warm-up (the lowest sample of an interval is the memory the process
  keeps, without the 19 MiB argon2 buffers of hashes in flight);
- database connections bounded: in the last interval no more than in the first interval after
  warm-up plus 10% (pools grow with concurrency and then stay; a leak keeps growing);
- /api/metrics agrees with what the clients saw (login failures, requests per operation).

Linux only (/proc). Options: --minutes, --users, --think-ms, --interval, --warmup, --json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # benchmarks/run.py: servers, ports, /proc helpers

METRICS_TOKEN = "soak-" + secrets.token_urlsafe(24)

# action -> weight; every virtual user picks its next step by these.
MIX = {"whoami": 36, "refresh": 18, "relogin": 8, "login": 5, "typo": 6, "guess": 6,
       "bad_body": 14, "sessions": 5, "new_user": 2}
# action -> answers a user expects (anything else is an error of the kind "unexpected"). A typo
# is followed by the right password, which clears the typo's count; guesses at other users'
# passwords run into the rate limits (429) and must not lock those users out (their browsers
# carry a device cookie).
EXPECTED = {"register": {201}, "whoami": {200}, "refresh": {200}, "logout": {200},
            "login": {200}, "wrong_password": {401}, "guess": {401, 429},
            "bad_body": {400, 415}, "sessions": {200}}

BAD_BODIES: list[tuple[str, str, bytes, str]] = [
    # (path, content type, body, why)
    ("/api/auth/login", "application/json", b'{"email": "x@example.com", "password":',
     "not JSON"),
    ("/api/auth/login", "application/json", b'{"email": "x@example.com"}', "no password"),
    ("/api/auth/login", "application/json", b'{"email": 5, "password": "x"}', "wrong type"),
    ("/api/auth/login", "application/json", b"[]", "not an object"),
    ("/api/auth/login", "text/plain", b'{"email": "x@example.com", "password": "x"}',
     "not JSON content"),
    ("/api/user/register", "application/json",
     b'{"username": "ab", "email": "ab@example.com", "password": "long enough pass"}',
     "short username"),
    ("/api/user/register", "application/json",
     b'{"username": "abcdef", "email": "not-an-address", "password": "long enough pass"}',
     "bad email"),
    ("/api/auth/login", "application/json",
     b'{"email": "x@example.com", "password": "x", "admin": true}', "unknown field"),
    ("/api/auth/login", "application/json", b'{"email": "\xff\xfe@example.com", "password": "x"}',
     "not UTF-8"),
]


@dataclass
class Sample:
    at: float  # seconds since the start of the traffic
    action: str
    seconds: float
    status: int  # 0: no answer (transport error)
    kind: str  # "ok", "expected <status> <code>", "5xx ...", "unexpected ...", "transport ..."


@dataclass
class Resources:
    at: float
    rss_mib: float
    db_connections: int  # the service process's established TCP connections to the database
    server_connections: int | None  # SecantusDB serverStatus connections.current (all clients)
    service_cpu: float  # CPU seconds the service process has used so far
    database_cpu: float  # and the database process


@dataclass
class Soak:
    base_url: str
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)  # registered accounts, for guessers
    invalid_credentials: int = 0  # 401 invalid_credentials seen (= login failures counted)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def cookies_of(response: Any) -> dict[str, str]:
    found = {}
    for raw in response.headers.get_list("set-cookie"):
        name, _, rest = raw.partition("=")
        value = rest.split(";", 1)[0]
        if "max-age=0" in raw.lower():
            found[name.strip()] = ""
        else:
            found[name.strip()] = value.strip()
    return found


def problem_code(response: Any) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("code", ""))
    return ""


class User:
    """One SPA user: an address, a password, the cookies the browser holds."""

    def __init__(self, soak: Soak, http: Any, rng: random.Random) -> None:
        self.soak = soak
        self.http = http
        self.rng = rng

    def new_identity(self) -> None:
        tag = "%012x" % self.rng.getrandbits(48)
        self.username = f"soak{tag}"
        self.email = f"soak.{tag}@example.com"
        self.password = "soak " + secrets.token_urlsafe(12)
        octets = (self.rng.randrange(256), self.rng.randrange(256), self.rng.randrange(1, 255))
        self.ip = "10.{}.{}.{}".format(*octets)
        self.cookies: dict[str, str] = {}

    async def send(self, action: str, method: str, path: str, *, json_body: Any = None,
                   content: bytes | None = None, content_type: str | None = None,
                   cookies: tuple[str, ...] = (), ip: str | None = None) -> Any:
        headers = {"X-Forwarded-For": ip or self.ip, "User-Agent": "hecate-soak"}
        if method != "GET":
            headers["Content-Type"] = content_type or "application/json"
        jar = "; ".join(f"{name}={self.cookies[name]}" for name in cookies
                        if self.cookies.get(name))
        if jar:
            headers["Cookie"] = jar
        if json_body is not None:
            content = json.dumps(json_body).encode()
        started = time.perf_counter()
        at = self.soak.elapsed()
        try:
            response = await self.http.request(method, path, content=content, headers=headers)
        except Exception as error:  # noqa: BLE001 - every transport failure is reported
            self.soak.samples.append(Sample(at, action, time.perf_counter() - started, 0,
                                            f"transport {type(error).__name__}"))
            return None
        seconds = time.perf_counter() - started
        status = response.status_code
        code = problem_code(response) if status >= 400 else ""
        if status >= 500:
            kind = f"5xx {status} {code}"
        elif status in EXPECTED[action]:
            kind = "ok" if status < 300 else f"expected {status} {code}"
        else:
            kind = f"unexpected {status} {code}"
        if code == "invalid_credentials":
            self.soak.invalid_credentials += 1
        self.soak.samples.append(Sample(at, action, seconds, status, kind))
        self.cookies.update(cookies_of(response))
        return response

    # Steps -------------------------------------------------------------------------------------
    @property
    def signed_in(self) -> bool:
        return bool(self.cookies.get("access") and self.cookies.get("refresh"))

    async def register(self) -> None:
        response = await self.send("register", "POST", "/api/user/register", json_body={
            "username": self.username, "email": self.email, "password": self.password})
        if response is not None and response.status_code == 201:
            self.soak.emails.append(self.email)

    async def login(self) -> None:
        # The browser sends its device cookie (set at its first sign-in) with every login.
        await self.send("login", "POST", "/api/auth/login", json_body={
            "email": self.email, "password": self.password,
            "rememberMe": self.rng.random() < 0.5}, cookies=("device",))

    async def whoami(self) -> None:
        response = await self.send("whoami", "GET", "/api/user", cookies=("access",))
        if response is not None and response.status_code == 401:
            # As an SPA does: refresh once, then ask again.
            await self.refresh()
            await self.send("whoami", "GET", "/api/user", cookies=("access",))

    async def refresh(self) -> None:
        await self.send("refresh", "POST", "/api/auth/refresh", content=b"{}",
                        cookies=("refresh",))

    async def relogin(self) -> None:
        await self.send("logout", "POST", "/api/auth/logout", content=b"{}",
                        cookies=("refresh",))
        await self.login()

    async def typo(self) -> None:
        await self.send("wrong_password", "POST", "/api/auth/login", json_body={
            "email": self.email, "password": self.password + "typo"}, cookies=("device",))
        await self.login()

    async def guess(self) -> None:
        """Someone elsewhere guesses a user's password (as many do, all the time)."""
        victim = self.rng.choice(self.soak.emails) if self.soak.emails else self.email
        await self.send("guess", "POST", "/api/auth/login", json_body={
            "email": victim, "password": "guess " + secrets.token_hex(4)},
            ip=f"198.51.100.{self.rng.randrange(1, 255)}")

    async def bad_body(self) -> None:
        path, content_type, body, _why = self.rng.choice(BAD_BODIES)
        await self.send("bad_body", "POST", path, content=body, content_type=content_type)

    async def sessions(self) -> None:
        await self.send("sessions", "GET", "/api/auth/sessions", cookies=("access",))

    async def new_user(self) -> None:
        self.new_identity()
        await self.register()
        # Signs in on this browser too: from now on it carries a device cookie, and guesses at
        # the account cannot lock it out.
        await self.login()

    async def live(self, until: float, think: float) -> None:
        await self.new_user()
        actions, weights = zip(*MIX.items(), strict=True)
        while self.soak.elapsed() < until:
            await asyncio.sleep(self.rng.uniform(0, 2 * think))
            if self.soak.elapsed() >= until:
                break
            if not self.signed_in:
                # Signed out (logout, a reused token): the SPA shows the sign-in form.
                await self.login()
                continue
            await getattr(self, self.rng.choices(actions, weights)[0])()


# --- resources ------------------------------------------------------------------------------------

def socket_inodes(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    found.add(target[8:-1])
    return found


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, in seconds."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_pid() -> int | None:
    """The SecantusDB process run.database() started (a child of this process)."""
    for pid in run.children(os.getpid()):
        with contextlib.suppress(OSError):
            if b"secantusd" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return None


def connections_to(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to ``port`` (any address)."""
    inodes = socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


async def watch(soak: Soak, pid: int, db_url: str, until: float, every: float,
                into: list[Resources]) -> None:
    import pymongo

    db_port = urlsplit(db_url).port or 27017
    db_pid = database_pid()
    with pymongo.MongoClient[dict[str, Any]](db_url, serverSelectionTimeoutMS=2000) as client:
        while True:
            server: int | None = None
            with contextlib.suppress(Exception):
                status = await asyncio.to_thread(client.admin.command, "serverStatus")
                server = int(status["connections"]["current"])
            into.append(Resources(soak.elapsed(), run.memory(pid).get("VmRSS", 0.0),
                                  connections_to(pid, db_port), server, cpu_seconds(pid),
                                  cpu_seconds(db_pid)))
            if soak.elapsed() >= until:
                return
            await asyncio.sleep(every)


# --- the run --------------------------------------------------------------------------------------

async def traffic(base_url: str, pid: int, db_url: str, args: argparse.Namespace
                  ) -> tuple[Soak, list[Resources], str]:
    import httpx

    soak = Soak(base_url)
    duration = args.minutes * 60
    limits = httpx.Limits(max_connections=args.users, max_keepalive_connections=args.users)
    resources: list[Resources] = []
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        rng = random.Random(args.seed)
        users = [User(soak, http, random.Random(rng.random())) for _ in range(args.users)]
        watcher = asyncio.create_task(watch(soak, pid, db_url, duration, args.sample_seconds,
                                            resources))
        progress = asyncio.create_task(report_progress(soak, duration, args.interval))
        await asyncio.gather(*(user.live(duration, args.think_ms / 1000) for user in users))
        await watcher
        progress.cancel()
        scraped = await http.get("/api/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    return soak, resources, scraped.text if scraped.status_code == 200 else ""


async def report_progress(soak: Soak, duration: float, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        done = len(soak.samples)
        bad = sum(1 for s in soak.samples if not s.kind.startswith(("ok", "expected")))
        print(f"  {soak.elapsed() / 60:5.1f} / {duration / 60:.1f} min: {done} requests, "
              f"{bad} errors", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def metrics_check(text: str, soak: Soak) -> list[str]:
    """What /api/metrics says against what the clients saw."""
    from prometheus_client.parser import text_string_to_metric_families

    if not text:
        return ["/api/metrics did not answer 200"]
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    broken = []
    failures = values.get(("hecate_login_failures_total", ()), 0.0)
    if failures != soak.invalid_credentials:
        broken.append(f"hecate_login_failures_total {failures:.0f}, clients saw "
                      f"{soak.invalid_credentials} invalid_credentials")
    counted = sum(v for (name, labels), v in values.items() if name == "hecate_requests_total"
                  and dict(labels)["operation"] not in {"meta.metrics", "meta.health", "other"})
    answered = sum(1 for s in soak.samples if s.status)
    if counted != answered:
        broken.append(f"hecate_requests_total {counted:.0f}, clients got {answered} answers")
    return broken


def report(soak: Soak, resources: list[Resources], args: argparse.Namespace,
           metrics_text: str, server_errors: int) -> tuple[list[str], dict[str, Any]]:
    interval = args.interval
    warmup = args.warmup * 60
    # The second request of a step begun just before the end lands in the last interval.
    last = max(math.ceil(args.minutes * 60 / interval) - 1, 0)
    by_interval: dict[int, list[Sample]] = defaultdict(list)
    for sample in soak.samples:
        by_interval[min(int(sample.at // interval), last)].append(sample)
    res_by_interval: dict[int, list[Resources]] = defaultdict(list)
    for resource in resources:
        res_by_interval[min(int(resource.at // interval), last)].append(resource)

    print(f"\nper interval of {interval:g} s (warm-up: the first {args.warmup:g} min)")
    print("| minutes | requests | req/s | p50 ms | p95 ms | p99 ms | login p50 ms | "
          "who-am-I p50 ms | errors | CPU ms per request (service / database) | "
          "RSS low / high MiB | DB connections (process / server) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for index in sorted(by_interval):
        samples = by_interval[index]
        latencies = [s.seconds * 1000 for s in samples]
        logins = [s.seconds * 1000 for s in samples
                  if s.action in {"login", "wrong_password", "guess"}]
        whoami = [s.seconds * 1000 for s in samples if s.action == "whoami"]
        errors = sum(1 for s in samples if not s.kind.startswith(("ok", "expected")))
        res = res_by_interval.get(index, [])
        rss = [r.rss_mib for r in res]
        conns = [r.db_connections for r in res]
        server = [r.server_connections for r in res if r.server_connections is not None]
        span = min(interval, max(soak.samples[-1].at - index * interval, 1e-9))
        # CPU used between the interval's last sample and the one before its first.
        before = res_by_interval.get(index - 1, [])
        start = before[-1] if before else (res[0] if res else None)
        end = res[-1] if res else None
        cpu = db_cpu = 0.0
        if start and end and samples:
            cpu = (end.service_cpu - start.service_cpu) * 1000 / len(samples)
            db_cpu = (end.database_cpu - start.database_cpu) * 1000 / len(samples)
        row = {"start_min": index * interval / 60, "requests": len(samples),
               "rps": len(samples) / span, "p50": percentile(latencies, 0.5),
               "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99),
               "login_p50": percentile(logins, 0.5), "whoami_p50": percentile(whoami, 0.5),
               "errors": errors, "cpu_ms": cpu, "db_cpu_ms": db_cpu,
               "rss_low": min(rss, default=0.0),
               "rss_high": max(rss, default=0.0), "conn_max": max(conns, default=0),
               "server_conn_max": max(server, default=0)}
        rows.append(row)
        print(f"| {row['start_min']:g}–{(index + 1) * interval / 60:g} | {len(samples)} | "
              f"{row['rps']:.1f} | {row['p50']:.1f} | {row['p95']:.1f} | {row['p99']:.1f} | "
              f"{row['login_p50']:.1f} | {row['whoami_p50']:.1f} | {errors} | "
              f"{cpu:.1f} / {db_cpu:.1f} | "
              f"{row['rss_low']:.1f} / {row['rss_high']:.1f} | {row['conn_max']} / "
              f"{row['server_conn_max']} |")

    kinds = Counter((s.action, s.kind) for s in soak.samples)
    print("\nanswers by action and kind")
    print("| action | kind | count |")
    print("|---|---|---|")
    for (action, kind), count in sorted(kinds.items()):
        print(f"| {action} | {kind} | {count} |")

    broken: list[str] = []
    bad = Counter(s.kind for s in soak.samples if not s.kind.startswith(("ok", "expected")))
    fives = sum(n for kind, n in bad.items() if kind.startswith("5xx"))
    if fives:
        broken.append(f"{fives} answers were 5xx")
    for kind, n in sorted(bad.items()):
        if not kind.startswith("5xx"):
            broken.append(f"{n} × {kind}")
    if server_errors:
        broken.append(f"{server_errors} error lines in the service's log")

    after = [row for row in rows if row["start_min"] * 60 >= warmup]
    growth = conn_growth = None
    if len(after) >= 2:
        first, last = after[0], after[-1]
        growth = (last["rss_low"] - first["rss_low"]) / first["rss_low"] if first["rss_low"] else 0
        if growth > 0.10:
            broken.append(f"RSS grew {growth:.1%} after warm-up ({first['rss_low']:.1f} → "
                          f"{last['rss_low']:.1f} MiB)")
        conn_growth = last["conn_max"] - first["conn_max"]
        if last["conn_max"] > first["conn_max"] * 1.10 + 1:
            broken.append(f"database connections grew after warm-up ({first['conn_max']} → "
                          f"{last['conn_max']})")
    else:
        broken.append("too short to compare: run past the warm-up for at least two intervals")
    broken += metrics_check(metrics_text, soak)

    total = len(soak.samples)
    duration = soak.samples[-1].at if soak.samples else 0
    latencies = [s.seconds * 1000 for s in soak.samples]
    print(f"\ntotal: {total} requests in {duration / 60:.1f} min ({total / max(duration, 1):.1f}"
          f" req/s), {args.users} users, p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms; 5xx: {fives}; "
          f"login failures counted by /api/metrics: {soak.invalid_credentials}")
    if growth is not None:
        print(f"RSS (lowest sample per interval) after warm-up: {after[0]['rss_low']:.1f} → "
              f"{after[-1]['rss_low']:.1f} MiB ({growth:+.1%}); DB connections "
              f"{after[0]['conn_max']} → {after[-1]['conn_max']} ({conn_growth:+d})")
        # Not a promise of the issue, but what a soak is for: work per request that grows with
        # the data (on a busy machine latency alone can move; CPU per request is steadier).
        first, last = after[0], after[-1]
        for name, key in (("service", "cpu_ms"), ("database", "db_cpu_ms")):
            if first[key] and last[key] > 1.5 * first[key]:
                print(f"NOTICE: {name} CPU per request grew {first[key]:.1f} → "
                      f"{last[key]:.1f} ms after warm-up")
        if first["p50"] and last["p50"] > 1.5 * first["p50"]:
            print(f"NOTICE: p50 latency grew {first['p50']:.1f} → {last['p50']:.1f} ms after "
                  "warm-up")
    summary = {"rows": rows, "kinds": {f"{a} | {k}": n for (a, k), n in kinds.items()},
               "broken": broken, "total": total, "minutes": duration / 60,
               "users": args.users, "rss_growth": growth}
    return broken, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="traffic time (default 10)")
    parser.add_argument("--users", type=int, default=12, help="virtual users at once")
    parser.add_argument("--think-ms", type=float, default=200.0,
                        help="mean think time between a user's steps")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per report row")
    parser.add_argument("--warmup", type=float, default=1.0, help="minutes of warm-up")
    parser.add_argument("--sample-seconds", type=float, default=2.0,
                        help="how often RSS and connections are read")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    print(run.machine())
    print(f"command: python benchmarks/soak.py --minutes {args.minutes:g} --users {args.users} "
          f"--think-ms {args.think_ms:g}\n", flush=True)
    with run.database() as db_url, tempfile.TemporaryDirectory() as workdir:
        port = run.free_port()
        env = run.env_for(db_url, port, LIMITER_ENABLED="true", TRUSTED_PROXIES="1",
                          METRICS_ENABLED="true", METRICS_TOKEN=METRICS_TOKEN,
                          MONGODB_NAME="soak", MAIL_RESPONSE_MIN_MS="0", MAX_SESSIONS="10")
        log_path = Path(workdir) / "hecate.log"
        with log_path.open("wb") as log:
            # Mail goes to the console transport: its stdout is dropped, its log kept.
            process = subprocess.Popen([*run.tool("hecate"), "serve", "--port", str(port)],
                                       cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                       stderr=log)
        try:
            run.wait_for(port, process)
            soak, resources, metrics_text = asyncio.run(
                traffic(f"http://127.0.0.1:{port}", process.pid, db_url, args))
        finally:
            run.stop(process)
        server_errors = sum(1 for line in log_path.read_text(errors="replace").splitlines()
                            if '"level": "error"' in line or "Traceback" in line)
    broken, summary = report(soak, resources, args, metrics_text, server_errors)
    print(f"load average after the run {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if broken:
        print("\nBROKEN PROMISES:\n- " + "\n- ".join(broken))
        sys.exit(1)
    print("\nall promises kept")


if __name__ == "__main__":
    main()
