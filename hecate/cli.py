"""The `hecate` command: serve, check, keys generate."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

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


def serve(settings: Settings) -> int:
    import logging

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
        # TRUSTED_PROXIES (ProxyFix in create_app) is the one place that decides.
        config = uvicorn.Config(app, host=settings.host, port=settings.port,
                                access_log=False, log_level="warning", lifespan="off",
                                proxy_headers=False, timeout_graceful_shutdown=20)
        try:
            uvicorn.Server(config).run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises Ctrl-C after its graceful shutdown
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
    print(f"tokens: {describe_signing(settings)}")
    for note in report.notes:
        print(f"ok: {note}")
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1 if report.problems else 0


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
    for command in (serve_cmd, check_cmd):
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
