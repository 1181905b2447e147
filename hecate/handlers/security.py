"""Connexion security functions for the two cookies (x-apikeyInfoFunc in openapi.yaml), and a
cookie handler that parses the Cookie header leniently."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from connexion.lifecycle import ConnexionRequest
from connexion.security import NO_VALUE, ApiKeySecurityHandler

from ..services import Services
from ..verify import parse_cookie_header


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
    @functools.cache
    def _accepts_kwarg(func: Callable[..., Any], keyword: str) -> bool:
        """Connexion asks this of the cookie function twice per request, each time through
        inspect.signature (≈ 5 % of who-am-I's event-loop time); the answer never changes."""
        return ApiKeySecurityHandler._accepts_kwarg(func, keyword)

    @staticmethod
    def get_cookie_value(cookies: str | None, name: str) -> str | None:
        return parse_cookie_header(cookies).get(name)

    def _get_verify_func(self, api_key_info_func: Any, loc: str, name: str,
                         required_scopes: Any) -> Any:
        """openapi.yaml names the cookies `access` and `refresh`; they travel under COOKIE_PREFIX,
        which is a setting, so the name is completed per request."""
        if loc != "cookie":
            return super()._get_verify_func(api_key_info_func, loc, name, required_scopes)
        check_api_key = self.check_api_key(api_key_info_func)

        def wrapper(request: ConnexionRequest) -> Any:
            prefix = _services(request).settings.cookie_prefix
            api_key = self.get_cookie_value(request.headers.get("Cookie"), prefix + name)
            if api_key is None:
                return NO_VALUE
            return check_api_key(request, api_key, required_scopes=required_scopes)

        return wrapper


SECURITY_MAP = {"apiKey": LenientApiKeySecurityHandler}
