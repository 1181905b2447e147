"""The production entry point: ``uvicorn --factory hecate.asgi:create`` (see the Dockerfile), and
the app the serverless adapters serve (hecate/serverless.py).

A factory, not a module-level ``app``: nothing happens at import time, and each uvicorn worker
builds its own app (and its own MongoDB client) after the fork.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from .app import HecateApp

log = logging.getLogger("hecate")


def deployment_settings() -> Settings:
    """The environment's settings, checked as ``hecate serve`` checks them. The embedded
    development database is only ever started by ``hecate serve --dev``."""
    settings = Settings.from_env()
    settings.require_mail()
    if not settings.mongodb_url:
        raise SettingsError("MONGODB_URL is not set: point it at your MongoDB (the embedded "
                            "database is only started by `hecate serve --dev`)")
    return settings


def build_indexes() -> None:
    """Once per process. A database that does not answer yet must not keep the service from
    starting: requests answer 503 until it does, and `hecate check` builds the indexes too."""
    from .core import models

    try:
        models.ensure_indexes()
    except Exception as error:  # noqa: BLE001 - logged; the service still starts
        log.warning("could not build the indexes; run `hecate check`",
                    extra={"error": type(error).__name__})


def create(settings: Settings | None = None) -> HecateApp:
    """The Connexion app (an ASGI app) for a deployment, indexes built."""
    import warnings

    # Connexion imports starlette's test client at runtime; its deprecation notice is noise here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from .app import create_app

    app = create_app(settings or deployment_settings())
    build_indexes()
    return app
