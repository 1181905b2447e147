"""create_app(settings=None): the Connexion AsyncApp, its middleware and the error mapping.

Nothing happens at import time (on FaaS, import time is cold-start time): settings are read and
clients registered inside create_app, and the database is dialled on the first query.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

from . import deferred

deferred.import_connexion()  # without the modules it never uses here: see hecate/deferred.py

from connexion import AsyncApp
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import ProblemException
from connexion.json_schema import Draft4RequestValidator
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.validators import JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, FormatChecker, ValidationError
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from .core import audit, metrics, models, passwords
from .core.errors import CODES, Problem, render
from .core.limits import RateLimits, storage_config
from .core.settings import Settings
from .handlers.security import SECURITY_MAP
from .logs import configure_logging
from .middleware import BodyLimit, OriginCheck, ProxyHeaders, RequestLog, SwaggerUIPolicy
from .services import Services

log = logging.getLogger("hecate")

RETRY_AFTER_SECONDS = "5"


def spec_path() -> Path:
    """openapi.yaml ships inside the wheel; in a source checkout it is the one at the root."""
    packaged = Path(__file__).with_name("openapi.yaml")
    return packaged if packaged.exists() else Path(__file__).parent.parent / "openapi.yaml"


class HecateApp(AsyncApp):
    """Connexion's AsyncApp (an ASGI app) with the clients it serves with."""

    services: Services


def load_spec() -> dict[str, Any]:
    """openapi.yaml as a dict, read with libyaml when PyYAML has it: Connexion's own loader (pure
    Python, through a Jinja template) took ≈ 75 ms of every cold start."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path().open("rb") as stream:
        spec: dict[str, Any] = yaml.load(stream, Loader=loader)
    return spec


def add_shipped_api(app: AsyncApp, base_path: str) -> None:
    """Registers openapi.yaml. Connexion checks a spec against the OpenAPI schema each time it
    loads one (≈ 50 ms of every cold start here); the spec that ships is checked by the test suite
    instead (tests/test_spec.py), so the check is skipped for this one call only."""
    from connexion.spec import OpenAPISpecification

    shadowed = "_validate_spec" in vars(OpenAPISpecification)
    original = vars(OpenAPISpecification).get("_validate_spec")
    OpenAPISpecification._validate_spec = classmethod(lambda cls, spec: None)  # type: ignore
    try:
        app.add_api(load_spec(), base_path=base_path, strict_validation=True)
    finally:
        if shadowed:
            OpenAPISpecification._validate_spec = original  # type: ignore[method-assign]
        else:
            del OpenAPISpecification._validate_spec


def _field(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "body"


def describe(error: ValidationError) -> str:
    """A message a person can act on, that never echoes the submitted value (it may be a
    password): jsonschema's own messages quote the instance."""
    field = _field(error)
    custom = error.schema.get("x-error") if isinstance(error.schema, dict) else None
    if error.validator in {"required", "additionalProperties", "maxProperties"}:
        if error.validator == "maxProperties":
            return "The body must be an empty object."
        return str(error.message)
    if custom:
        return f"{field} {custom}"
    if error.validator == "type":
        return f"{field} must be of type {error.validator_value}"
    if error.validator in {"minLength", "maxLength"}:
        bound = "at least" if error.validator == "minLength" else "at most"
        return f"{field} must be {bound} {error.validator_value} characters long"
    return f"{field} is not valid ({error.validator})"


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_email(value: object) -> bool:
    """The `email` format as mail servers take it: an RFC 5321 dot-atom local part of at most 64
    characters and a host name (IDNs in their xn-- form). jsonschema's own check only looks for
    an '@', which let addresses through that no mail can reach."""
    if not isinstance(value, str):
        return True
    local, at, domain = value.rpartition("@")
    return (bool(at) and len(local) <= 64 and _LOCAL_PART.fullmatch(local) is not None
            and all(_DOMAIN_LABEL.fullmatch(label) for label in domain.split(".")))


@functools.lru_cache(maxsize=1)
def format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checkers.update(Draft4Validator.FORMAT_CHECKER.checkers)
    checker.checks("email")(is_email)
    return checker


class SafeJSONBodyValidator(JSONRequestBodyValidator):
    @functools.cached_property
    def _validator(self) -> Any:
        return Draft4RequestValidator(self._schema, format_checker=format_checker())

    async def _parse(self, stream: Any, scope: Any) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return None  # no body at all: fine where the body is optional
        try:
            body = json.loads(raw.decode(self._encoding))
        except UnicodeDecodeError:
            raise Problem("malformed_request", "The request body is not valid UTF-8.") from None
        except json.JSONDecodeError as error:
            raise Problem("malformed_request",
                          f"The request body is not valid JSON: {error}") from None
        if body is None:
            # A literal `null` is a body, and not an object: unlike a missing body, refuse it.
            raise Problem("validation_failed", "The request body must be a JSON object.")
        return body

    def _validate(self, body: Any) -> None:
        if body is None:
            if self._required:
                raise Problem("validation_failed", "The request body must not be empty.")
            return
        errors = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            raise Problem("validation_failed", describe(errors[0]))


VALIDATOR_MAP = {
    "parameter": ParameterValidator,
    "body": MediaTypeDict({"*/*json": SafeJSONBodyValidator}),
}

_STATUS_CODES = {
    400: "validation_failed",
    401: "authentication_required",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _limit_storage(settings: Settings) -> Any:
    """The shared counter storage (MongoDB or Redis) of the `limits` package. Login limits use it
    directly: they must charge an attempt before the password check and refund it on success,
    which a decorator's deduct_when cannot do without letting a parallel burst through. No
    flask-limiter extension around it: it added import time (cold start) and a per-request hook,
    and no route used its decorators."""
    from limits.storage import storage_from_string

    url, options = storage_config(settings)
    if not url:
        url = "memory://"  # no database configured at all: only possible in dev-mode tooling
    return storage_from_string(url, **options)


def create_app(settings: Settings | None = None) -> HecateApp:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    passwords.configure(passwords.slots_for(settings.hash_memory_budget_mb))
    services = Services(settings)
    audit.configure(settings.audit_retention)
    if settings.metrics_enabled:
        metrics.enable(settings.metrics_multiproc_dir)
    if settings.mongodb_url:
        models.connect(settings.mongodb_url, settings.mongodb_name, settings.mongodb_timeout_ms)

    app = HecateApp(
        __name__,
        security_map=SECURITY_MAP,
        validator_map=VALIDATOR_MAP,
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/ui"),
    )
    add_shipped_api(app, settings.api_path)
    app.services = services
    services.limits = RateLimits(settings, _limit_storage(settings))

    # Each lands just before Connexion's exception handling, so the first added is outermost:
    # the client address behind trusted proxies (only hops we were told about may set it; a
    # client's own X-Forwarded-For could dodge or reset the IP limits), the request log, the
    # audit trail's client and the headers (on every answer, preflights included), the Swagger
    # UI page's policy, then CORS (so error answers carry CORS headers and an SPA can read them;
    # preflights are answered here), then the body limit.
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeaders, position=MiddlewarePosition.BEFORE_EXCEPTION,
                           hops=settings.trusted_proxies)
    app.add_middleware(RequestLog, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       services=services)
    app.add_middleware(SwaggerUIPolicy, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       services=services)
    app.add_middleware(CORSMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       allow_origins=list(settings.cors_origins), allow_credentials=True,
                       allow_methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
                       allow_headers=["content-type"], max_age=600)
    app.add_middleware(BodyLimit, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       services=services)
    # The CSRF check: after routing (unknown methods and paths keep their 405/404), before the
    # cookie check; its Problem is rendered by the error handlers below.
    app.add_middleware(OriginCheck, position=MiddlewarePosition.BEFORE_SECURITY,
                       services=services)

    fmt = settings.error_format

    def respond(problem: Problem) -> ConnexionResponse:
        status, headers, body = render(problem, fmt)
        return ConnexionResponse(status_code=status, body=body, headers=headers,
                                 mimetype=headers["Content-Type"].split(";")[0])

    def on_problem(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        assert isinstance(error, Problem)
        if error.status >= 500:
            log.error("problem", extra={"code": error.code})
        return respond(error)

    def on_connexion_problem(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        assert isinstance(error, ProblemException)
        code = _STATUS_CODES.get(error.status, "internal_error" if error.status >= 500
                                 else "validation_failed")
        detail = str(error.detail or CODES[code][1])
        if error.status == 401:
            detail = "Sign in first: the request carries no session cookie."
        return respond(Problem(code, detail, status=error.status))

    def on_http_exception(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        assert isinstance(error, HTTPException)
        code = _STATUS_CODES.get(error.status_code, "validation_failed")
        if error.status_code >= 500:
            code = "internal_error"
        detail = {404: "There is nothing at this path.",
                  405: "This method is not allowed here."}.get(error.status_code,
                                                               str(error.detail))
        # Keep the exception's own headers (a 405's Allow, RFC 9110).
        return respond(Problem(code, detail, status=error.status_code,
                               headers=dict(error.headers or {})))

    def on_database_error(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        metrics.database_error()
        if isinstance(error, OperationFailure) and not isinstance(error, ConnectionFailure):
            log.error("database operation failed", extra={"error": type(error).__name__})
        else:
            log.warning("database unavailable", extra={"error": type(error).__name__})
        return respond(Problem("service_unavailable",
                               "The service is temporarily unavailable; please retry shortly.",
                               headers={"Retry-After": RETRY_AFTER_SECONDS}))

    def on_unexpected(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
        log.error("unhandled error", exc_info=error)
        return respond(Problem("internal_error", "An unexpected error occurred."))

    app.add_error_handler(Problem, on_problem)
    app.add_error_handler(ProblemException, on_connexion_problem)
    app.add_error_handler(HTTPException, on_http_exception)
    app.add_error_handler(PyMongoError, on_database_error)
    app.add_error_handler(UnicodeDecodeError, lambda r, e: respond(
        Problem("malformed_request", "The request is not valid UTF-8.")))
    app.add_error_handler(Exception, on_unexpected)
    return app
