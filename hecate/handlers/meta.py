"""meta tag: health."""

from __future__ import annotations

import flask

from ..core import models


def health() -> flask.Response:
    models.ping()  # a database error becomes 503 service_unavailable (app.py)
    return flask.jsonify({"status": "ok"})
