"""All of Hecate's settings, read from the environment once and validated at start.

Names of the Node original's properties file are kept (JWT_SECRET, MONGODB_*, APP_*, LOG_LEVEL,
PORT). Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, urlsplit

if TYPE_CHECKING:
    from .keys import PublicKey, SigningKey


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, value: str) -> int:
    """'15m', '7d', '3600' -> seconds."""
    match = _DURATION.match(value)
    if not match:
        raise SettingsError(f"{name}={value!r} is not a duration (use e.g. 900, 15m, 1h, 7d)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean (use true or false)")


def _int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a whole number") from None
    if number < minimum:
        raise SettingsError(f"{name}={value!r} must be at least {minimum}")
    return number


def _origin(name: str, url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(f"{name}={url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc}".lower()


def build_mongodb_url(url: str, user: str, password: str) -> str:
    """The original built ``mongodb+srv://USER:PASSWORD@URL`` when the URL had no scheme."""
    if "://" in url:
        return url
    credentials = ""
    if user:
        credentials = f"{quote_plus(user)}:{quote_plus(password)}@"
    return f"mongodb+srv://{credentials}{url}"


@dataclasses.dataclass(frozen=True)
class Settings:
    dev_mode: bool = False
    data_dir: Path = Path(".hecate-data")

    # Tokens
    jwt_secrets: tuple[str, ...] = ()
    # HS256 signs with the first of jwt_secrets; RS256/ES256/EdDSA with jwt_signing_key (and
    # jwt_secrets, if any, then only verify: a move from HS256).
    jwt_algorithm: str = "HS256"
    jwt_signing_key: SigningKey | None = None
    jwt_previous_keys: tuple[PublicKey, ...] = ()  # published and verify; never sign
    jwt_issuer: str = "hecate"
    access_ttl: int = 15 * 60
    refresh_ttl: int = 60 * 60
    extended_refresh_ttl: int = 7 * 86400
    session_max_age: int = 30 * 86400
    refresh_reuse_grace: int = 10
    email_verification_required: bool = True
    login_requires_verified_email: bool = False
    mail_response_min_ms: int = 1000
    verification_ttl: int = 24 * 3600
    password_reset_ttl: int = 60 * 60
    magic_login_ttl: int = 5 * 60
    email_change_ttl: int = 24 * 3600
    max_sessions: int = 10
    legacy_refresh_tokens: bool = True
    audit_retention: int = 90 * 86400  # how long audit events are kept

    # Database (empty mongodb_url + dev mode = embedded SecantusDB)
    mongodb_url: str = ""
    mongodb_name: str = "hecate"
    mongodb_timeout_ms: int = 5000

    # Abuse resistance
    limiter_enabled: bool = True
    limiter_storage_url: str = ""  # empty: the MongoDB database itself
    limiter_attempts: int = 5  # failed logins per (client IP, account) or per device
    limiter_interval: int = 900
    limiter_ip_attempts: int = 50  # failed logins per client IP across all accounts
    limiter_account_attempts: int = 20  # failed logins per account across IPs, no device cookie
    limiter_mail: str = "3/hour"  # mail-sending requests per address
    limiter_mail_ip: str = "20/hour"  # mail-sending requests per client IP
    limiter_register: str = "10/hour"  # registrations per client IP
    limiter_refresh: str = "120/minute"  # refreshes per session
    trusted_proxies: int = 0
    password_min_length: int = 8
    hash_memory_budget_mb: int = 48  # argon2 hashes at once: budget // 19 MiB, at least 1
    registration_enumeration_safe: bool = False
    jwt_audience: str | None = None
    jwt_leeway: int = 30

    # Cookies and browsers
    cookie_prefix: str = ""
    cookie_partitioned: bool = False
    cookie_samesite: str = "None"
    cookie_domain: str | None = None
    public_base_path: str = ""
    cors_origins: tuple[str, ...] = ()

    # Application
    app_name: str = "Hecate"
    app_email: str = "no-reply@localhost"
    app_url: str = "http://localhost:4200"
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    error_format: str = "json"
    max_body_bytes: int = 64 * 1024

    # Metrics (GET /api/metrics, Prometheus text format)
    metrics_enabled: bool = False
    metrics_token: str = dataclasses.field(default="", repr=False)
    metrics_multiproc_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR: sum over workers

    # Mail
    mail_transport: str = ""
    mail_templates_dir: Path | None = None
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_pass: str = ""
    smtp_security: str = "starttls"
    smtp_timeout: int = 10
    smtp_ca_file: str | None = None
    mailjet_api_url: str = "https://api.mailjet.com"
    mj_apikey_public: str = ""
    mj_apikey_private: str = ""
    verify_path: str = "/verify"
    reset_path: str = "/password-reset"
    magic_path: str = "/token-login"
    email_change_cancel_path: str = "/email-change/cancel"

    @property
    def jwt_secret(self) -> str:
        return self.jwt_secrets[0]

    @property
    def jwt_public_keys(self) -> tuple[PublicKey, ...]:
        """The keys the JWKS publishes: the signing key's first, then JWT_PREVIOUS_KEYS."""
        first = (self.jwt_signing_key.public,) if self.jwt_signing_key else ()
        return first + tuple(k for k in self.jwt_previous_keys
                             if not first or k.kid != first[0].kid)

    @property
    def api_path(self) -> str:
        return f"{self.public_base_path}/api"

    @property
    def refresh_cookie_path(self) -> str:
        # Browsers accept a __Host- cookie only with Path=/.
        return "/" if self.cookie_prefix == "__Host-" else f"{self.api_path}/auth"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dev: bool | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); raise SettingsError naming the
        variable on any problem."""
        env = os.environ if env is None else env
        get = env.get
        dev_mode = _bool("HECATE_DEV", get("HECATE_DEV", "false")) if dev is None else dev
        data_dir = Path(get("HECATE_DATA_DIR", ".hecate-data"))

        jwt_algorithm, signing_key, previous_keys = _jwt_keys(get)
        secrets_raw = get("JWT_SECRET", "")
        jwt_secrets = tuple(s for s in secrets_raw.split() if s)
        # With an asymmetric key JWT_SECRET is optional: it then only verifies HS256 tokens
        # issued before the move (and the Node deployment's refresh tokens).
        if not jwt_secrets and jwt_algorithm == "HS256":
            if not dev_mode:
                raise SettingsError(
                    "JWT_SECRET is not set: give it a random value of at least 32 bytes "
                    "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
            jwt_secrets = (_dev_secret(data_dir),)
        for secret in jwt_secrets:
            if len(secret.encode()) < 32 and not dev_mode:
                raise SettingsError(
                    "JWT_SECRET is shorter than 32 bytes: use a longer random value")

        samesite = get("COOKIE_SAMESITE", "Lax" if dev_mode else "None").strip().capitalize()
        if samesite not in {"Lax", "Strict", "None"}:
            raise SettingsError(f"COOKIE_SAMESITE={samesite!r} must be Lax, Strict or None")

        base_path = get("PUBLIC_BASE_PATH", "").strip().rstrip("/")
        if base_path and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", base_path):
            raise SettingsError(f"PUBLIC_BASE_PATH={base_path!r} must look like /prefix")

        app_url = get("APP_URL", "").strip()
        if not app_url:
            if not dev_mode:
                raise SettingsError("APP_URL is not set: the URL of your SPA (mail links, CORS)")
            app_url = "http://localhost:4200"
        app_origin = _origin("APP_URL", app_url)

        origins_raw = get("CORS_ORIGINS", "").replace(",", " ").split()
        if "*" in origins_raw:
            raise SettingsError(
                "CORS_ORIGINS='*' is refused: credentials (cookies) need explicit origins"
            )
        cors_origins = tuple(_origin("CORS_ORIGINS", o) for o in origins_raw) or (app_origin,)

        error_format = get("ERROR_FORMAT", "json").strip().lower()
        if error_format not in {"json", "text"}:
            raise SettingsError(f"ERROR_FORMAT={error_format!r} must be json or text")

        log_level = get("LOG_LEVEL", "info").strip().upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(f"LOG_LEVEL={log_level!r} must be debug, info, warning or error")

        durations = {
            "access_ttl": ("JWT_ACCESS_TTL", "15m"),
            "refresh_ttl": ("JWT_REFRESH_TTL", "1h"),
            "extended_refresh_ttl": ("JWT_EXTENDED_REFRESH_TTL", "7d"),
            "session_max_age": ("SESSION_MAX_AGE", "30d"),
            "refresh_reuse_grace": ("REFRESH_REUSE_GRACE", "10"),
            "verification_ttl": ("JWT_EMAIL_VERIFICATION_TTL", "24h"),
            "password_reset_ttl": ("JWT_PASSWORD_RESET_TTL", "60m"),
            "magic_login_ttl": ("JWT_MAGIC_LOGIN_TTL", "5m"),
            "email_change_ttl": ("JWT_EMAIL_CHANGE_TTL", "24h"),
            "audit_retention": ("AUDIT_RETENTION", "90d"),
        }
        parsed = {key: parse_duration(name, get(name, default)) for key, (name, default) in
                  durations.items()}
        for key in ("access_ttl", "refresh_ttl", "extended_refresh_ttl", "session_max_age",
                    "verification_ttl", "password_reset_ttl", "magic_login_ttl",
                    "email_change_ttl", "audit_retention"):
            if parsed[key] <= 0:
                raise SettingsError(f"{durations[key][0]} must be longer than 0 seconds")

        if _bool("LOGIN_REQUIRES_VERIFIED_EMAIL", get("LOGIN_REQUIRES_VERIFIED_EMAIL", "false")) \
                and not _bool("EMAIL_VERIFICATION_REQUIRED", get("EMAIL_VERIFICATION_REQUIRED",
                                                                 "true")):
            raise SettingsError("LOGIN_REQUIRES_VERIFIED_EMAIL=true needs "
                                "EMAIL_VERIFICATION_REQUIRED=true (or nobody could verify)")

        prefix = get("COOKIE_PREFIX", "").strip()
        if prefix not in {"", "__Secure-", "__Host-"}:
            raise SettingsError(f"COOKIE_PREFIX={prefix!r} must be empty, __Secure- or __Host-")
        if prefix == "__Host-" and get("COOKIE_DOMAIN", "").strip():
            raise SettingsError("COOKIE_PREFIX=__Host- forbids COOKIE_DOMAIN (browsers refuse "
                                "__Host- cookies with a Domain)")
        storage = get("LIMITER_STORAGE_URL", "").strip()
        if storage.startswith("memory://") and not dev_mode:
            raise SettingsError("LIMITER_STORAGE_URL=memory:// is only allowed in development "
                                "mode: limits must be shared by every instance")
        if storage and storage.split("://")[0] not in {"mongodb", "mongodb+srv", "redis",
                                                       "rediss", "memory"}:
            raise SettingsError(f"LIMITER_STORAGE_URL={storage!r} must be a mongodb://, "
                                "redis:// or (dev mode) memory:// URL")
        for name in ("LIMITER_MAIL", "LIMITER_MAIL_IP", "LIMITER_REGISTER", "LIMITER_REFRESH"):
            value = get(name, "")
            if value and not re.fullmatch(r"\s*\d+\s*(/|per)\s*(\d+\s*)?"
                                          r"(second|minute|hour|day)s?\s*", value):
                raise SettingsError(f"{name}={value!r} is not a rate (use e.g. 3/hour)")

        metrics_token = get("METRICS_TOKEN", "").strip()
        if metrics_token and len(metrics_token) < 16:
            raise SettingsError("METRICS_TOKEN is shorter than 16 characters: use a longer "
                                "random value")
        multiproc_dir = get("PROMETHEUS_MULTIPROC_DIR", "").strip()
        if multiproc_dir and Path(multiproc_dir).exists() and not Path(multiproc_dir).is_dir():
            raise SettingsError(f"PROMETHEUS_MULTIPROC_DIR={multiproc_dir!r} is not a directory")

        return cls(
            dev_mode=dev_mode,
            metrics_enabled=_bool("METRICS_ENABLED", get("METRICS_ENABLED", "false")),
            metrics_token=metrics_token,
            metrics_multiproc_dir=Path(multiproc_dir) if multiproc_dir else None,
            limiter_enabled=_bool("LIMITER_ENABLED", get("LIMITER_ENABLED", "true")),
            limiter_storage_url=storage,
            limiter_attempts=_int("LIMITER_ATTEMPTS", get("LIMITER_ATTEMPTS", "5"), minimum=1),
            limiter_interval=parse_duration("LIMITER_INTERVAL", get("LIMITER_INTERVAL", "900")),
            limiter_ip_attempts=_int("LIMITER_IP_ATTEMPTS", get("LIMITER_IP_ATTEMPTS", "50"),
                                     minimum=1),
            limiter_account_attempts=_int(
                "LIMITER_ACCOUNT_ATTEMPTS", get("LIMITER_ACCOUNT_ATTEMPTS", "20"), minimum=1),
            limiter_mail=get("LIMITER_MAIL", "3/hour"),
            limiter_mail_ip=get("LIMITER_MAIL_IP", "20/hour"),
            limiter_register=get("LIMITER_REGISTER", "10/hour"),
            limiter_refresh=get("LIMITER_REFRESH", "120/minute"),
            trusted_proxies=_int("TRUSTED_PROXIES", get("TRUSTED_PROXIES", "0")),
            password_min_length=_int("PASSWORD_MIN_LENGTH", get("PASSWORD_MIN_LENGTH", "8"),
                                     minimum=8),
            hash_memory_budget_mb=_int("HASH_MEMORY_BUDGET_MB",
                                       get("HASH_MEMORY_BUDGET_MB", "48"), minimum=1),
            registration_enumeration_safe=_bool(
                "REGISTRATION_ENUMERATION_SAFE", get("REGISTRATION_ENUMERATION_SAFE", "false")),
            jwt_audience=get("JWT_AUDIENCE", "").strip() or None,
            jwt_leeway=parse_duration("JWT_LEEWAY", get("JWT_LEEWAY", "30")),
            cookie_prefix=prefix,
            cookie_partitioned=_bool("COOKIE_PARTITIONED", get("COOKIE_PARTITIONED", "false")),
            data_dir=data_dir,
            jwt_secrets=jwt_secrets,
            jwt_algorithm=jwt_algorithm,
            jwt_signing_key=signing_key,
            jwt_previous_keys=previous_keys,
            jwt_issuer=get("JWT_ISSUER", "hecate"),
            email_verification_required=_bool(
                "EMAIL_VERIFICATION_REQUIRED", get("EMAIL_VERIFICATION_REQUIRED", "true")),
            login_requires_verified_email=_bool(
                "LOGIN_REQUIRES_VERIFIED_EMAIL", get("LOGIN_REQUIRES_VERIFIED_EMAIL", "false")),
            mail_response_min_ms=_int(
                "MAIL_RESPONSE_MIN_MS", get("MAIL_RESPONSE_MIN_MS", "1000"), minimum=0),
            max_sessions=_int("MAX_SESSIONS", get("MAX_SESSIONS", "10"), minimum=1),
            legacy_refresh_tokens=_bool(
                "LEGACY_REFRESH_TOKENS", get("LEGACY_REFRESH_TOKENS", "true")
            ),
            mongodb_url=build_mongodb_url(
                get("MONGODB_URL", "").strip(), get("MONGODB_USER", ""),
                get("MONGODB_PASSWORD", ""),
            ) if get("MONGODB_URL", "").strip() else "",
            mongodb_name=get("MONGODB_NAME", "hecate"),
            mongodb_timeout_ms=_int(
                "MONGODB_TIMEOUT_MS", get("MONGODB_TIMEOUT_MS", "5000"), minimum=100
            ),
            cookie_samesite=samesite,
            cookie_domain=get("COOKIE_DOMAIN", "").strip() or None,
            public_base_path=base_path,
            cors_origins=cors_origins,
            app_name=get("APP_NAME", "Hecate"),
            app_email=get("APP_EMAIL", "no-reply@localhost"),
            app_url=app_url.rstrip("/"),
            host=get("HOST", "127.0.0.1"),
            port=_int("PORT", get("PORT", "8080"), minimum=0),
            log_level=log_level,
            error_format=error_format,
            max_body_bytes=_int("MAX_BODY_BYTES", get("MAX_BODY_BYTES", "65536"), minimum=1024),
            **_mail_settings(get, dev_mode),
            **parsed,
        )

    def require_mail(self) -> None:
        if not self.mail_transport:
            raise SettingsError(
                "MAIL_TRANSPORT is not set: smtp (SMTP_HOST...), mailjet (MJ_APIKEY_...), "
                "console (development only: prints links) or package.module:ClassName"
            )

    def require_database(self) -> None:
        if not self.mongodb_url and not self.dev_mode:
            raise SettingsError(
                "MONGODB_URL is not set: point it at your MongoDB "
                "(the embedded database is only started in development mode, --dev)"
            )


def _jwt_keys(get: Callable[[str, str], str]) \
        -> tuple[str, SigningKey | None, tuple[PublicKey, ...]]:
    """JWT_ALGORITHM, JWT_PRIVATE_KEY and JWT_PREVIOUS_KEYS, checked against each other."""
    raw_algorithm = get("JWT_ALGORITHM", "HS256").strip() or "HS256"
    names = {"HS256": "HS256", "RS256": "RS256", "ES256": "ES256", "EDDSA": "EdDSA"}
    algorithm = names.get(raw_algorithm.upper())
    if algorithm is None:
        raise SettingsError(f"JWT_ALGORITHM={raw_algorithm!r} must be HS256 (JWT_SECRET), "
                            "RS256, ES256 or EdDSA (JWT_PRIVATE_KEY)")
    private_raw = get("JWT_PRIVATE_KEY", "").strip()
    previous_raw = get("JWT_PREVIOUS_KEYS", "").strip()
    if algorithm == "HS256" and private_raw:
        # Fail closed: the operator meant to sign with the key, not with the shared secret.
        raise SettingsError("JWT_PRIVATE_KEY is set but JWT_ALGORITHM is HS256: set "
                            "JWT_ALGORITHM to RS256, ES256 or EdDSA to sign with it")
    if algorithm != "HS256" and not private_raw:
        raise SettingsError(f"JWT_PRIVATE_KEY is not set: JWT_ALGORITHM={algorithm} signs with "
                            "a private key (PEM text or the path of a PEM file; `hecate keys "
                            f"generate --algorithm {algorithm}` makes one)")
    if not private_raw and not previous_raw:
        return algorithm, None, ()
    from . import keys

    signing = keys.load_signing_key("JWT_PRIVATE_KEY", private_raw, algorithm) \
        if private_raw else None
    previous = keys.load_public_keys("JWT_PREVIOUS_KEYS", previous_raw) if previous_raw else ()
    return algorithm, signing, previous


def _mail_settings(get: Callable[[str, str], str], dev_mode: bool) -> dict[str, object]:
    transport = get("MAIL_TRANSPORT", "console" if dev_mode else "").strip()
    if not transport:
        # The original chose Mailjet when its keys were set, SMTP otherwise.
        # Outside dev mode nothing is assumed: `hecate serve` refuses to start without a transport
        # (the console transport prints links with live tokens).
        transport = "mailjet" if get("MJ_APIKEY_PUBLIC", "") else (
            "smtp" if get("SMTP_HOST", "") else ("console" if dev_mode else ""))
    security = get("SMTP_SECURITY", "starttls").strip().lower()
    if security not in {"starttls", "ssl", "none"}:
        raise SettingsError(f"SMTP_SECURITY={security!r} must be starttls, ssl or none")
    if transport == "smtp" and not get("SMTP_HOST", ""):
        raise SettingsError("SMTP_HOST is not set (MAIL_TRANSPORT=smtp)")
    if transport == "mailjet" and not (get("MJ_APIKEY_PUBLIC", "") and
                                       get("MJ_APIKEY_PRIVATE", "")):
        raise SettingsError("MJ_APIKEY_PUBLIC and MJ_APIKEY_PRIVATE are needed "
                            "(MAIL_TRANSPORT=mailjet)")
    if transport not in {"", "console", "smtp", "mailjet"} and ":" not in transport:
        raise SettingsError(f"MAIL_TRANSPORT={transport!r} must be console, smtp, mailjet or "
                            "package.module:ClassName")
    paths = {}
    for key, name, default in (("verify_path", "MAIL_VERIFY_PATH", "/verify"),
                               ("reset_path", "MAIL_RESET_PATH", "/password-reset"),
                               ("magic_path", "MAIL_MAGIC_LOGIN_PATH", "/token-login"),
                               ("email_change_cancel_path", "MAIL_EMAIL_CHANGE_CANCEL_PATH",
                                "/email-change/cancel")):
        value = get(name, default).strip()
        if not value.startswith("/"):
            raise SettingsError(f"{name}={value!r} must start with /")
        paths[key] = value
    templates = get("MAIL_TEMPLATES_DIR", "").strip()
    if templates and not Path(templates).is_dir():
        raise SettingsError(f"MAIL_TEMPLATES_DIR={templates!r} is not a directory")
    return {
        "mail_transport": transport,
        "mail_templates_dir": Path(templates) if templates else None,
        "smtp_host": get("SMTP_HOST", "").strip(),
        "smtp_port": _int("SMTP_PORT", get("SMTP_PORT", "465" if security == "ssl" else "587"),
                          minimum=1),
        "smtp_user": get("SMTP_USER", ""),
        "smtp_pass": get("SMTP_PASS", ""),
        "smtp_security": security,
        "smtp_timeout": _int("SMTP_TIMEOUT", get("SMTP_TIMEOUT", "10"), minimum=1),
        "smtp_ca_file": get("SMTP_CA_FILE", "").strip() or None,
        "mailjet_api_url": get("MAILJET_API_URL", "https://api.mailjet.com").rstrip("/"),
        "mj_apikey_public": get("MJ_APIKEY_PUBLIC", ""),
        "mj_apikey_private": get("MJ_APIKEY_PRIVATE", ""),
        **paths,
    }


def _dev_secret(data_dir: Path) -> str:
    """Development mode keeps a generated secret in the data dir, so restarts keep sessions."""
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
