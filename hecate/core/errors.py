"""One way to fail: raise ``Problem(status, code, detail)``; one place renders it.

Codes are stable and listed once here; openapi.yaml documents the same registry (a test keeps
the two in step). Clients branch on ``code``, never on message text.
"""

from __future__ import annotations

import json
from typing import Any

# code -> (status, title)
CODES: dict[str, tuple[int, str]] = {
    "validation_failed": (400, "Bad Request"),
    "malformed_request": (400, "Bad Request"),
    "email_unchanged": (400, "Bad Request"),
    "weak_password": (400, "Bad Request"),
    "authentication_required": (401, "Unauthorized"),
    "invalid_token": (401, "Unauthorized"),
    "invalid_credentials": (401, "Unauthorized"),
    "session_ended": (401, "Unauthorized"),
    "token_reused": (401, "Unauthorized"),
    "wrong_password": (403, "Forbidden"),
    "email_not_verified": (403, "Forbidden"),
    "account_disabled": (403, "Forbidden"),
    "origin_not_allowed": (403, "Forbidden"),
    "not_found": (404, "Not Found"),
    "method_not_allowed": (405, "Method Not Allowed"),
    "email_taken": (409, "Conflict"),
    "username_taken": (409, "Conflict"),
    "link_invalid": (410, "Gone"),
    "payload_too_large": (413, "Payload Too Large"),
    "unsupported_media_type": (415, "Unsupported Media Type"),
    "too_many_requests": (429, "Too Many Requests"),
    "internal_error": (500, "Internal Server Error"),
    "service_unavailable": (503, "Service Unavailable"),
    "mail_unavailable": (503, "Service Unavailable"),
}


class Problem(Exception):
    """An error a client sees, as RFC 9457 problem JSON with a stable ``code``."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unregistered problem code {code!r}")
        super().__init__(detail)
        self.code = code
        self.status = status or CODES[code][0]
        self.title = CODES[code][1]
        self.detail = detail
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"Problem({self.status}, {self.code!r}, {self.detail!r})"


def problem_body(status: int, code: str, detail: str, title: str | None = None) -> dict[str, Any]:
    return {
        "type": f"https://hecate.dev/problems/{code.replace('_', '-')}",
        "title": title or CODES.get(code, (status, "Error"))[1],
        "status": status,
        "detail": detail,
        "code": code,
        "message": detail,
    }


def render(
    problem: Problem, error_format: str = "json"
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body). ``error_format='text'`` answers with the bare message, as the
    Node original did, for SPAs that display the body as is."""
    headers = dict(problem.headers)
    headers["Cache-Control"] = "no-store"
    if error_format == "text":
        headers["Content-Type"] = "text/plain; charset=utf-8"
        return problem.status, headers, problem.detail.encode()
    headers["Content-Type"] = "application/problem+json"
    body = problem_body(problem.status, problem.code, problem.detail, problem.title)
    return problem.status, headers, json.dumps(body).encode()
