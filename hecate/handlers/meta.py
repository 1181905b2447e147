"""meta tag: health, and the public signing keys."""

from __future__ import annotations

import flask

from ..core import models
from .cookies import services

# Downstream verifiers (hecate.verify) keep the set 300 s too, and fetch it again at once for a
# kid they do not know; a shared cache in front may hold it this long.
JWKS_MAX_AGE = 300


def health() -> flask.Response:
    models.ping()  # a database error becomes 503 service_unavailable (app.py)
    return flask.jsonify({"status": "ok"})


def jwks() -> flask.Response:
    """The public keys tokens are signed with (empty with HS256: the secret is never shown)."""
    return flask.Response(services().tokens.jwks, mimetype="application/json",
                          headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})
