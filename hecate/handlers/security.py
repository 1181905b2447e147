"""Connexion security functions for the two cookies (x-apikeyInfoFunc in openapi.yaml), and a
cookie handler that parses the Cookie header leniently."""

from __future__ import annotations

from typing import Any

from connexion.security import ApiKeySecurityHandler

from ..core.tokens import parse_cookie_header
from ..services import Services


def _services(request: Any) -> Services:
    services: Services = request.scope["hecate"]
    return services


def access_cookie(token: str, request: Any) -> dict[str, Any]:
    claims = _services(request).tokens.verify_access(token)
    return {"sub": claims.user_id, "access": claims}


def refresh_cookie(token: str, request: Any) -> dict[str, Any]:
    claims = _services(request).tokens.verify_refresh(token)
    return {"sub": claims.user_id, "refresh": claims}


class LenientApiKeySecurityHandler(ApiKeySecurityHandler):
    """Connexion's own handler parses cookies with http.cookies.SimpleCookie, which raises (500)
    on an unrelated cookie with an illegal name and hides ours behind a JSON-valued one."""

    @staticmethod
    def get_cookie_value(cookies: str | None, name: str) -> str | None:
        return parse_cookie_header(cookies).get(name)


SECURITY_MAP = {"apiKey": LenientApiKeySecurityHandler}
