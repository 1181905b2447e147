"""openapi.yaml, the contract, is a valid OpenAPI 3 document: Connexion's own check, which the
service skips at start (a cold-start cost, hecate.app.add_shipped_api) and this test runs
instead."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Service
from connexion.exceptions import InvalidSpecification
from connexion.spec import OpenAPISpecification, Specification

from hecate.app import load_spec

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_spec_passes_connexions_check() -> None:
    spec = load_spec()
    assert spec["openapi"].startswith("3.")
    OpenAPISpecification._validate_spec(spec)  # raises InvalidSpecification when broken


def test_a_started_service_leaves_the_check_in_place(service: Service) -> None:
    """The skip covered the service's own spec only: after its start, a broken spec is still
    refused, by the check and by loading it."""
    assert service.client().get("/api/health").status_code == 200
    broken = copy.deepcopy(load_spec())
    broken["paths"]["/health"]["get"]["responses"] = "none"
    assert "_validate_spec" not in vars(OpenAPISpecification)
    with pytest.raises(InvalidSpecification):
        OpenAPISpecification._validate_spec(broken)
    with pytest.raises(InvalidSpecification):
        Specification.from_dict(broken)


def test_the_app_starts_without_connexions_unused_clients_and_they_still_work() -> None:
    """Cold start: building the app loads neither requests, httpx nor starlette's test client
    (hecate/deferred.py); each still works when something asks for it, and is the real module."""
    code = """
import os, sys
os.environ.update(JWT_SECRET="s" * 40, MONGODB_URL="mongodb://127.0.0.1:9/x", LOG_LEVEL="error",
                  APP_URL="http://localhost:4200", MAIL_TRANSPORT="console")
from hecate.app import create_app
app = create_app()
# type(), not an attribute: any attribute of a lazy module (importlib's _LazyModule) loads it
print(sorted(m for m in ("requests", "httpx", "starlette.testclient", "urllib3")
             if m in sys.modules and type(sys.modules[m]).__name__ == "module"))
client = app.test_client()
print(type(client).__module__, client.get("/api/.well-known/jwks.json").json())
import requests, httpx, starlette.testclient
print(requests.Session.__module__, httpx.Client.__module__.split(".")[0],
      starlette.testclient.TestClient.__name__)
"""
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                            text=True, check=True, cwd=ROOT)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "[]", lines
    assert lines[1] == "starlette.testclient {'keys': []}", lines
    assert lines[2] == "requests.sessions httpx TestClient", lines
