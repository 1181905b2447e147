"""The `hecate` command: serve, check, keys generate, and the operator's user and sessions
commands."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .core.settings import Settings, SettingsError

BANNER = """
  ============================================================================
   DEVELOPMENT MODE - not for production
   * {signing}
   * {database}
   * SameSite={samesite} cookies for an SPA on localhost, mail printed to the console
  ============================================================================
"""


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Settings with a database URL: MONGODB_URL, or in dev mode the embedded database."""
    settings.require_database()
    if settings.mongodb_url:
        yield settings
        return
    from .core import models
    from .embedded import EmbeddedDatabase

    embedded = EmbeddedDatabase(settings.data_dir)
    embedded.start()
    try:
        yield dataclasses.replace(settings, mongodb_url=embedded.url)
    finally:
        models.disconnect()  # SecantusDB waits for open connections at shutdown
        embedded.stop()


@contextmanager
def connected(settings: Settings) -> Iterator[Settings]:
    """database(), with this process's MongoEngine connection to it (the CLI commands that work
    on the data without serving)."""
    from .core import models

    with database(settings) as ready:
        models.connect(ready.mongodb_url, ready.mongodb_name, ready.mongodb_timeout_ms)
        try:
            yield ready
        finally:
            models.disconnect()


def serve(settings: Settings) -> int:
    import logging
    import signal
    import threading

    import uvicorn

    from .app import create_app
    from .core import models

    embedded = not settings.mongodb_url
    with database(settings) as settings:
        app = create_app(settings)
        log = logging.getLogger("hecate")

        def build_indexes() -> None:
            try:
                models.require_indexes()
            except Exception as error:  # noqa: BLE001 - registration builds them when it can
                log.warning("could not build the indexes yet; they are built on first need",
                            extra={"error": type(error).__name__})

        # Off the start path: with the database down, listening (and answering 503) must not wait
        # for server selection to time out.
        threading.Thread(target=build_indexes, name="hecate-indexes", daemon=True).start()
        shown = "localhost" if settings.host in {"127.0.0.1", "0.0.0.0", "::1"} else settings.host
        base = f"http://{shown}:{settings.port}{settings.api_path}"
        if settings.dev_mode:
            where = (f"embedded database in {settings.data_dir / 'db'}" if embedded
                     else "database from MONGODB_URL")
            signing = (f"tokens signed with JWT_PRIVATE_KEY ({settings.jwt_algorithm})"
                       if settings.jwt_signing_key else
                       f"generated JWT secret in {settings.data_dir}/jwt-secret")
            print(BANNER.format(signing=signing, database=where,
                                samesite=settings.cookie_samesite), flush=True)
        print(f"Hecate listening on {base}\n"
              f"  Swagger UI:   {base}/ui/\n"
              f"  OpenAPI spec: {base}/openapi.json\n"
              f"  Health:       {base}/health", flush=True)
        # proxy_headers off: uvicorn would trust X-Forwarded-For from 127.0.0.1 by itself;
        # TRUSTED_PROXIES (middleware.ProxyHeaders) is the one place that decides.
        config = uvicorn.Config(app, host=settings.host, port=settings.port,
                                access_log=False, log_level="warning", lifespan="off",
                                proxy_headers=False, timeout_graceful_shutdown=20)
        # uvicorn shuts down gracefully on SIGTERM (stops accepting, lets requests in flight
        # finish), then raises the signal again; with SIGTERM's default action that killed the
        # process (exit 143) after a clean stop. Raised as KeyboardInterrupt, it ends here like
        # Ctrl-C: exit 0, after the clients below are closed.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            uvicorn.Server(config).run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises Ctrl-C (and SIGTERM, above) after its graceful shutdown
        # Stopping already: a repeated SIGTERM (supervisors send one per process of a group, or
        # again after a while) must not break off closing the clients below, or the exit itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        app.services.close()
        models.disconnect()
    return 0


def check(settings: Settings) -> int:
    from .core.check import check_database

    with connected(settings):
        try:
            report = check_database()
        except Exception as error:  # noqa: BLE001
            print(f"error: the database does not answer: {type(error).__name__}: {error}")
            return 1
    print("settings: ok")
    print(f"tokens: {describe_signing(settings)}")
    for note in report.notes:
        print(f"ok: {note}")
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1 if report.problems else 0


def _print_overview(data: dict[str, Any]) -> None:
    user = data["user"]
    print(f"user {user['id']} {user['username']} <{user['email']}>  verified: "
          f"{'yes' if user['verified'] else 'no'}  disabled: "
          f"{'yes' if user['disabled'] else 'no'}  created: {user['created'] or '-'}")
    print(f"sessions ({len(data['sessions'])}):")
    for s in data["sessions"]:
        print(f"  {s['id']}  created {s['created']}  last used {s['lastUsed']}  "
              f"remember: {'yes' if s['remember'] else 'no'}  {s['userAgent'] or '-'}")
    print(f"recent events ({len(data['events'])}, newest first):")
    for e in data["events"]:
        details = " ".join(f"{k}={v}" for k, v in e["details"].items())
        print(f"  {e['time']}  {e['event']}  session={e['sessionId'] or '-'}  "
              f"ip={e['ip'] or '-'}  {details}  {e['userAgent'] or ''}".rstrip())


def _operate(settings: Settings, args: argparse.Namespace) -> int:
    from .core import operator
    from .core.sessions import Sessions

    sessions = Sessions(settings)
    if args.command == "sessions" and args.all:
        if sys.stdin.isatty() and not args.yes:
            answer = input("End every session of every user? Everyone must sign in again. "
                           "Type yes: ")
            if answer.strip().lower() != "yes":
                print("nothing done")
                return 1
        print(f"ended {operator.end_all_sessions()} sessions of all users")
        return 0
    if args.command == "sessions":
        user, ended = operator.end_sessions(sessions, args.email)
        print(f"ended {ended} sessions of {user.email}")
    elif args.action == "disable":
        user, ended = operator.disable(sessions, args.email)
        print(f"disabled {user.email}; ended {ended} sessions")
    elif args.action == "enable":
        user = operator.enable(args.email)
        print(f"enabled {user.email}")
    else:
        data = operator.overview_json(operator.show(sessions, args.email, limit=args.limit))
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            _print_overview(data)
    return 0


def operate(settings: Settings, args: argparse.Namespace) -> int:
    """`hecate user ...` and `hecate sessions end ...`, on the database of `hecate check`."""
    from pymongo.errors import PyMongoError

    from .core import audit
    from .core.operator import UnknownAccount

    with connected(settings) as ready:
        audit.configure(ready.audit_retention)
        try:
            return _operate(ready, args)
        except UnknownAccount as error:
            print(f"hecate: no account has the email address {error}", file=sys.stderr)
            return 1
        except PyMongoError as error:
            print(f"hecate: the database does not answer: {type(error).__name__}: {error}",
                  file=sys.stderr)
            return 1


def _count(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError("must be 1 to 1000")
    return number


def _operator_commands(commands: Any) -> list[argparse.ArgumentParser]:
    user_cmd = commands.add_parser("user", help="operator: show, disable or enable an account")
    actions = user_cmd.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="the account, its sessions and recent events")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--limit", type=_count, default=20, help="events to show (default 20)")
    disable = actions.add_parser("disable", help="no sign-in or refresh; its sessions end")
    enable = actions.add_parser("enable", help="allow sign-in again")
    for command in (show, disable, enable):
        command.add_argument("email", help="the account's email address")
    sessions_cmd = commands.add_parser("sessions", help="operator: end sessions")
    session_actions = sessions_cmd.add_subparsers(dest="action", required=True)
    end = session_actions.add_parser("end", help="end every session of one user, or of all")
    which = end.add_mutually_exclusive_group(required=True)
    which.add_argument("email", nargs="?", help="the account's email address")
    which.add_argument("--all", action="store_true",
                       help="every session of every user (after a key leak)")
    end.add_argument("--yes", action="store_true", help="do not ask (--all)")
    return [show, disable, enable, end]


def describe_signing(settings: Settings) -> str:
    """Which algorithm and key sign, which keys verify: ids only, never key material."""
    from .core.tokens import TokenService

    tokens = TokenService(settings)
    line = f"{tokens.algorithm}, signing key kid={tokens.kid}"
    if settings.jwt_signing_key is None:
        return line + f"; {len(settings.jwt_secrets)} JWT_SECRET value(s) verify"
    published = [key.kid for key in settings.jwt_public_keys]
    line += f"; published in the JWKS: {', '.join(published)}"
    if settings.jwt_secrets:
        line += (f"; JWT_SECRET ({len(settings.jwt_secrets)} value(s)) still verifies HS256 "
                 "tokens: unset it once the move is done")
    return line


def generate_keys(algorithm: str, out: str) -> int:
    """Write a new key pair (or, with out="-", the private key to stdout); print the settings."""
    import os

    from .core import keys

    private = keys.generate(algorithm)
    signing = keys.public_key(private.public_key())
    info = sys.stderr if out == "-" else sys.stdout
    if out == "-":
        sys.stdout.write(keys.private_pem(private).decode())
        sys.stdout.flush()
        private_ref = "<the PEM text written to stdout>"
        public_line = ""
        print(f"wrote a new {algorithm} private key to stdout (nothing on disk)", file=info)
    else:
        folder = Path(out).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"jwt-{algorithm.lower()}-{signing.kid[:12]}"
        private_path, public_path = folder / f"{stem}.pem", folder / f"{stem}.pub.pem"
        # O_EXCL: never overwrite a key; 0600: the private key is nobody else's to read.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(keys.private_pem(private))
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(keys.public_pem(private.public_key()))
        private_ref = str(private_path)
        public_line = f"  public key:  {public_path}\n"
        print(f"wrote a new {algorithm} key pair\n"
              f"  private key: {private_path} (mode 0600: keep it secret)", file=info)
    print(f"{public_line}  kid:         {signing.kid}\n"
          "set on Hecate:\n"
          f"  JWT_ALGORITHM={algorithm}\n"
          f"  JWT_PRIVATE_KEY={private_ref}\n"
          "rotating? put the key it replaces (its public key is enough) in JWT_PREVIOUS_KEYS\n"
          "until the tokens it signed have expired", file=info)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # Connexion imports starlette's test client at runtime; its deprecation notice is noise here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    parser = argparse.ArgumentParser(prog="hecate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the service")
    serve_cmd.add_argument("--host", help="interface to listen on (HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (PORT, default 8080)")
    check_cmd = commands.add_parser("check", help="validate settings, build indexes, check data")
    for command in (serve_cmd, check_cmd, *_operator_commands(commands)):
        command.add_argument("--dev", action="store_true", default=None,
                             help="development mode: embedded database, generated secret")
    keys_cmd = commands.add_parser("keys", help="asymmetric signing keys (JWT_PRIVATE_KEY)")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", required=True)
    generate_cmd = keys_sub.add_parser(
        "generate", help="create a key pair; prints the settings and the kid, not the key")
    generate_cmd.add_argument("--algorithm", choices=("RS256", "ES256", "EdDSA"),
                              default="ES256", help="JWT_ALGORITHM of the key (default ES256)")
    generate_cmd.add_argument("--out", default=".", metavar="DIR",
                              help="folder for the two PEM files (default: the current one); "
                                   "'-' writes the private key to stdout and nothing to disk")
    args = parser.parse_args(argv)
    if args.command == "keys":
        # Needs no settings: keys are made before Hecate is configured with them.
        try:
            return generate_keys(args.algorithm, args.out)
        except OSError as error:
            print(f"hecate: cannot write the key: {error}", file=sys.stderr)
            return 2
    import importlib.util

    if importlib.util.find_spec("connexion") is None or importlib.util.find_spec("mongoengine") \
            is None:
        # `pip install hecate` (or hecate[verify]) is the verification module alone.
        print("hecate: the service's dependencies are not installed: pip install 'hecate[server]'",
              file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(dev=args.dev)
        if args.command == "serve":
            settings.require_mail()
            overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
            return serve(dataclasses.replace(settings, **overrides))
        if args.command in {"user", "sessions"}:
            return operate(settings, args)
        return check(settings)
    except SettingsError as error:
        print(f"hecate: configuration error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"hecate: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
