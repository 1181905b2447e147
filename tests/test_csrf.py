"""Browser-facing defences: the CSRF check (JSON content type and allowed origin on every request
that changes something), cookie name prefixes and partitioned cookies, and the security headers,
including the Swagger UI page's content security policy."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, Client, Service, login, parse_set_cookie, register

APP_ORIGIN = "http://localhost:4200"  # CORS_ORIGINS defaults to the origin of APP_URL
EVIL = "https://evil.example"

# Every way a browser can say a request comes from another site.
FOREIGN = {
    "foreign Origin": {"Origin": EVIL},
    "foreign Origin, same-site fetch": {"Origin": EVIL, "Sec-Fetch-Site": "same-site"},
    "foreign Referer": {"Referer": f"{EVIL}/page?x=1"},
    "Origin null": {"Origin": "null"},
    "only Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": "cross-site"},
}

# Requests a browser might send as the app: with the allowed origin, or saying nothing.
ALLOWED = {
    "allowed Origin": {"Origin": APP_ORIGIN},
    "allowed Origin, cross-site fetch": {"Origin": APP_ORIGIN, "Sec-Fetch-Site": "cross-site"},
    "allowed Referer": {"Referer": f"{APP_ORIGIN}/account"},
    "only Sec-Fetch-Site same-origin": {"Sec-Fetch-Site": "same-origin"},
    "only Sec-Fetch-Site same-site": {"Sec-Fetch-Site": "same-site"},
    "only Sec-Fetch-Site none": {"Sec-Fetch-Site": "none"},
    "no such headers": {},
}


def operations() -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, JSON body or None for a bodiless request) of each state-changing flow."""
    return [
        ("POST", "/api/auth/login", {"email": "alice@example.com", "password": PASSWORD}),
        ("POST", "/api/user/register",
         {"username": "mallory1", "email": "mallory@example.com", "password": PASSWORD}),
        ("POST", "/api/auth/magic.login/request", {"email": "alice@example.com"}),
        ("POST", "/api/auth/refresh", None),
        ("POST", "/api/auth/logout", None),
        ("PUT", "/api/user/password/change",
         {"oldPassword": PASSWORD, "newPassword": "a brand new passphrase"}),
        ("PUT", "/api/user/delete", {"password": PASSWORD}),
    ]


def send(client: Client, method: str, path: str, body: dict[str, Any] | None,
         headers: dict[str, str]) -> httpx.Response:
    if body is None:
        return client.request(method, path, headers=headers)
    return client.request(method, path, json=body, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    assert body["detail"] and body["message"] == body["detail"]


def assert_still_signed_in(client: Client) -> None:
    """Nothing the refused requests asked for happened: the session, the password and the account
    are as they were, and no account was created."""
    assert client.get("/api/user").status_code == 200
    assert client.post("/api/auth/refresh").status_code == 200
    assert login(client).status_code == 200
    assert client.post("/api/auth/login", json={
        "email": "mallory@example.com", "password": PASSWORD}).status_code == 401


# --- the CSRF check -----------------------------------------------------------------------------


@pytest.mark.parametrize("attack", list(FOREIGN))
def test_requests_from_another_site_are_refused(registered: Client, attack: str) -> None:
    for method, path, body in operations():
        response = send(registered, method, path, body, FOREIGN[attack])
        assert_problem(response, 403, "origin_not_allowed")
        # CORS does not let the other site read the refusal either.
        assert "access-control-allow-origin" not in response.headers
        assert "set-cookie" not in response.headers, path
    assert_still_signed_in(registered)


@pytest.mark.parametrize("source", list(ALLOWED))
def test_requests_from_the_app_or_from_no_browser_are_accepted(
        client: Client, source: str) -> None:
    headers = ALLOWED[source]
    expected = {"/api/auth/login": 200, "/api/user/register": 201,
                "/api/auth/magic.login/request": 202, "/api/auth/refresh": 200,
                "/api/auth/logout": 200, "/api/user/password/change": 200,
                "/api/user/delete": 200}
    register(client)
    # In an order in which each succeeds: sign out, back in, change the password, then delete.
    order = ["/api/user/register", "/api/auth/refresh", "/api/auth/magic.login/request",
             "/api/auth/logout", "/api/auth/login", "/api/user/password/change",
             "/api/user/delete"]
    by_path = {path: (method, body) for method, path, body in operations()}
    by_path["/api/user/delete"] = ("PUT", {"password": "a brand new passphrase"})
    for path in order:
        method, body = by_path[path]
        response = send(client, method, path, body, headers)
        assert response.status_code == expected[path], (path, response.text)


def test_the_refusal_is_readable_by_the_app_origin_only_when_it_is_the_app(
        registered: Client) -> None:
    response = registered.post("/api/auth/logout", headers={
        "Origin": APP_ORIGIN, "Content-Type": "text/plain"}, content=b"{}")
    assert_problem(response, 415, "unsupported_media_type")
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


def test_the_services_own_origin_is_accepted(service: Service, registered: Client) -> None:
    """The Swagger UI page is served by the API itself; its "Try it out" requests carry the API's
    own origin."""
    response = registered.post("/api/auth/refresh", headers={"Origin": service.base_url})
    assert response.status_code == 200, response.text
    other_port = service.base_url.rsplit(":", 1)[0] + ":1"
    response = registered.post("/api/auth/refresh", headers={"Origin": other_port})
    assert_problem(response, 403, "origin_not_allowed")


@pytest.mark.parametrize("content_type, body", [
    ("text/plain", b'{"email": "alice@example.com", "password": "x"}'),
    ("application/x-www-form-urlencoded", b"email=alice%40example.com&password=x"),
    ("multipart/form-data; boundary=x", b"--x--\r\n"),
    ("text/plain; charset=application/json", b"{}"),
])
def test_form_posts_are_refused_with_415(registered: Client, content_type: str,
                                         body: bytes) -> None:
    """What an HTML form (or a no-preflight fetch) can send: refused even to bodiless logout and
    even without any origin header."""
    for method, path, _ in operations():
        for headers in ({}, {"Origin": EVIL}):
            response = registered.request(method, path, content=body,
                                          headers={"Content-Type": content_type, **headers})
            assert_problem(response, 415, "unsupported_media_type")
    response = registered.post("/api/auth/logout", headers={"Content-Type": "text/plain"})
    assert_problem(response, 415, "unsupported_media_type")
    response = registered.post("/api/auth/logout", content=b"", headers={"Content-Type": ""})
    assert_problem(response, 415, "unsupported_media_type")
    assert_still_signed_in(registered)


def test_json_with_parameters_is_accepted(registered: Client) -> None:
    response = registered.post("/api/auth/refresh",
                               headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 200, response.text


def test_reading_is_not_checked(registered: Client) -> None:
    """GET is not state-changing: CORS keeps other sites from reading the answer."""
    response = registered.get("/api/user", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert registered.get("/api/health", headers={"Origin": "null"}).status_code == 200


def test_methods_and_paths_outside_the_spec_keep_their_405_and_404(client: Client) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": EVIL}
    assert client.post("/api/user", content=b"a=b", headers=form).status_code == 405
    assert client.request("DELETE", "/api/auth/login", headers=form).status_code == 405
    assert client.post("/api/nowhere", content=b"a=b", headers=form).status_code == 404


def test_preflight_is_answered_by_cors_before_the_check(client: Client) -> None:
    response = client.request("OPTIONS", "/api/auth/logout", headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


def test_configured_origins_and_the_text_error_format(
        start_service: Callable[..., Service]) -> None:
    service = start_service(CORS_ORIGINS="https://app.example https://admin.example",
                            ERROR_FORMAT="text")
    client = service.client()
    register(client)
    assert client.post("/api/auth/refresh",
                       headers={"Origin": "https://admin.example"}).status_code == 200
    refused = client.post("/api/auth/refresh", headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.text


# --- cookie prefixes and partitioned cookies ------------------------------------------------------


def cookies_of(response: httpx.Response) -> dict[str, dict[str, str]]:
    return {attrs["name"]: attrs for attrs in map(parse_set_cookie,
                                                  response.headers.get_list("set-cookie"))}


def test_host_prefix_names_both_cookies_with_path_root_and_no_domain(
        start_service: Callable[..., Service]) -> None:
    client = start_service(COOKIE_PREFIX="__Host-").client(APP_ORIGIN)
    cookies = cookies_of(register(client))
    assert {"__Host-access", "__Host-refresh"} <= set(cookies), cookies
    assert all(name.startswith("__Host-") for name in cookies), cookies
    for name, attrs in cookies.items():
        assert attrs["path"] == "/", (name, attrs)
        assert "domain" not in attrs, (name, attrs)
        assert "secure" in attrs and "httponly" in attrs, (name, attrs)

    assert client.get("/api/user").json()["user"]["username"] == "alice1"
    old_refresh = client.cookie("__Host-refresh")
    refreshed = client.post("/api/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert {"__Host-access", "__Host-refresh"} <= set(cookies_of(refreshed))
    assert client.cookie("__Host-refresh") != old_refresh
    access = client.cookie("__Host-access")
    refresh = client.cookie("__Host-refresh")

    # The unprefixed names are not ours: a cookie planted under them is ignored.
    assert client.get("/api/user", headers={"Cookie": f"access={access}"}).status_code == 401
    assert client.post("/api/auth/refresh",
                       headers={"Cookie": f"refresh={refresh}"}).status_code == 401

    logout = client.post("/api/auth/logout")
    assert logout.status_code == 200
    cleared = cookies_of(logout)
    for name in ("__Host-access", "__Host-refresh"):
        assert cleared[name]["max-age"] == "0" and cleared[name]["path"] == "/", cleared
    assert client.get("/api/user").status_code == 401
    # The logout read the prefixed cookie and ended the session on the server.
    replay = client.post("/api/auth/refresh", headers={"Cookie": f"__Host-refresh={refresh}"})
    assert replay.status_code == 401
    assert replay.json()["code"] == "session_ended"


def test_secure_prefix_keeps_the_refresh_cookie_on_the_auth_path(
        start_service: Callable[..., Service]) -> None:
    client = start_service(COOKIE_PREFIX="__Secure-").client()
    cookies = cookies_of(register(client))
    assert cookies["__Secure-access"]["path"] == "/"
    assert cookies["__Secure-refresh"]["path"] == "/api/auth"
    assert "access" not in cookies and "refresh" not in cookies
    assert client.get("/api/user").status_code == 200
    assert client.post("/api/auth/refresh").status_code == 200


def test_partitioned_cookies(start_service: Callable[..., Service]) -> None:
    client = start_service(COOKIE_PARTITIONED="true").client()
    for response in (register(client), client.post("/api/auth/logout")):
        cookies = cookies_of(response)
        for name in ("access", "refresh"):
            assert "partitioned" in cookies[name], cookies[name]
            assert "secure" in cookies[name], cookies[name]


def test_cookies_are_not_partitioned_by_default(client: Client) -> None:
    cookies = cookies_of(register(client))
    assert not any("partitioned" in attrs for attrs in cookies.values()), cookies


# --- security headers -----------------------------------------------------------------------------


def test_every_answer_forbids_framing_and_referrers(registered: Client) -> None:
    answers = [registered.get("/api/user"), registered.get("/api/health"),
               registered.get("/api/nowhere"),
               registered.post("/api/auth/logout", headers={"Origin": EVIL}),
               registered.request("OPTIONS", "/api/auth/login", headers={
                   "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"})]
    for response in answers:
        assert response.headers["referrer-policy"] == "no-referrer", response.url
        assert response.headers["x-frame-options"] == "DENY", response.url
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"), response.url


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_swagger_ui_has_a_strict_policy_and_still_loads(client: Client) -> None:
    page = client.get("/api/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = dict(
        (directive.split(" ", 1) + [""])[:2]
        for directive in (d.strip() for d in page.headers["content-security-policy"].split(";"))
    )
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "unsafe-eval" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"

    # Each inline script and style block is allowed by its hash, and nothing else inline is.
    inline_scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page.text, re.DOTALL)
    inline_styles = re.findall(r"<style[^>]*>(.*?)</style>", page.text, re.DOTALL)
    assert inline_scripts, "the page bootstraps Swagger UI inline"
    assert policy["script-src"].split() == ["'self'"] + [_sha256(s) for s in inline_scripts]
    assert policy["style-src"].split() == ["'self'"] + [_sha256(s) for s in inline_styles]

    # What the page loads is on this origin and is there.
    assets = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.text) + re.findall(
        r'<link[^>]*\bhref="([^"]+)"', page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    for asset in assets:
        assert "://" not in asset, asset
        response = client.get(str(httpx.URL(str(page.url)).join(asset).raw_path.decode()))
        assert response.status_code == 200, asset
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Hecate"
