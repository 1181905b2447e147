"""meta tag: health, metrics and the public signing keys."""

from __future__ import annotations

import hmac

from ..core import metrics as counters
from ..core import models
from ..core.errors import Problem
from . import web
from .web import Response, services

# Downstream verifiers (hecate.verify) keep the set 300 s too, and fetch it again at once for a
# kid they do not know; a shared cache in front may hold it this long.
JWKS_MAX_AGE = 300


def health() -> Response:
    models.ping()  # a database error becomes 503 service_unavailable (app.py)
    return web.json({"status": "ok"})


def jwks() -> Response:
    """The public keys tokens are signed with (empty with HS256: the secret is never shown)."""
    return Response(services().tokens.jwks, media_type="application/json",
                    headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


def metrics() -> Response:
    settings = services().settings
    if not settings.metrics_enabled:
        # Off: the same answer as any path that does not exist.
        raise Problem("not_found", "There is nothing at this path.")
    if settings.metrics_token:
        scheme, _, offered = web.header("Authorization").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="metrics"'}
        if scheme.lower() != "bearer" or not offered.strip():
            raise Problem("authentication_required", "Send the metrics token as "
                          "Authorization: Bearer <METRICS_TOKEN>.", headers=challenge)
        # Constant time: the comparison must not tell how much of a guess was right.
        if not hmac.compare_digest(offered.strip().encode(), settings.metrics_token.encode()):
            raise Problem("invalid_token", "The metrics token is not valid.", headers=challenge)
    body, content_type = counters.exposition()
    return Response(body, status_code=200, headers={"Content-Type": content_type})
