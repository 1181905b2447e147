"""openapi.yaml, the contract, is a valid OpenAPI 3 document: Connexion's own check, which the
service skips at start (a cold-start cost, hecate.app.add_shipped_api) and this test runs
instead."""

from __future__ import annotations

import copy

import pytest
from conftest import Service
from connexion.exceptions import InvalidSpecification
from connexion.spec import OpenAPISpecification, Specification

from hecate.app import load_spec


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
