"""The `hecate` command: serve, check."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .core.settings import Settings, SettingsError

BANNER = """
  ============================================================================
   DEVELOPMENT MODE - not for production
   * generated JWT secret in {data_dir}/jwt-secret
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


def serve(settings: Settings) -> int:
    import logging
    import signal

    import uvicorn

    from .app import create_app
    from .core import models

    embedded = not settings.mongodb_url
    with database(settings) as settings:
        app = create_app(settings)
        log = logging.getLogger("hecate")
        try:
            models.ensure_indexes()
        except Exception as error:  # noqa: BLE001 - the service still starts (FaaS cannot wait)
            log.warning("could not build the indexes; run `hecate check`",
                        extra={"error": type(error).__name__})
        shown = "localhost" if settings.host in {"127.0.0.1", "0.0.0.0", "::1"} else settings.host
        base = f"http://{shown}:{settings.port}{settings.api_path}"
        if settings.dev_mode:
            where = (f"embedded database in {settings.data_dir / 'db'}" if embedded
                     else "database from MONGODB_URL")
            print(BANNER.format(data_dir=settings.data_dir, database=where,
                                samesite=settings.cookie_samesite), flush=True)
        print(f"Hecate listening on {base}\n"
              f"  Swagger UI:   {base}/ui/\n"
              f"  OpenAPI spec: {base}/openapi.json\n"
              f"  Health:       {base}/health", flush=True)
        # proxy_headers off: uvicorn would trust X-Forwarded-For from 127.0.0.1 by itself;
        # TRUSTED_PROXIES (ProxyFix in create_app) is the one place that decides.
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
        app.app.extensions["hecate"].close()
        models.disconnect()
    return 0


def check(settings: Settings) -> int:
    from .core import models
    from .core.check import check_database

    with database(settings) as settings:
        models.connect(settings.mongodb_url, settings.mongodb_name, settings.mongodb_timeout_ms)
        try:
            report = check_database()
        except Exception as error:  # noqa: BLE001
            print(f"error: the database does not answer: {type(error).__name__}: {error}")
            return 1
        finally:
            models.disconnect()
    print("settings: ok")
    for note in report.notes:
        print(f"ok: {note}")
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1 if report.problems else 0


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
    for command in (serve_cmd, check_cmd):
        command.add_argument("--dev", action="store_true", default=None,
                             help="development mode: embedded database, generated secret")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(dev=args.dev)
        if args.command == "serve":
            settings.require_mail()
            overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
            return serve(dataclasses.replace(settings, **overrides))
        return check(settings)
    except SettingsError as error:
        print(f"hecate: configuration error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"hecate: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
