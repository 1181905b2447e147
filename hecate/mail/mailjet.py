"""Mailjet's Send API v3.1 over HTTPS, with the standard library only (no SDK to import on a
cold start)."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from . import MailError, Message

if TYPE_CHECKING:
    from ..core.settings import Settings


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would repeat the request, Authorization header included, wherever a redirect
    # points; the Send API never redirects, so a redirect is an error.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class MailjetTransport:
    def __init__(self, settings: Settings) -> None:
        if not (settings.mj_apikey_public and settings.mj_apikey_private):
            raise MailError("MJ_APIKEY_PUBLIC and MJ_APIKEY_PRIVATE are needed "
                            "(MAIL_TRANSPORT=mailjet)")
        base = settings.mailjet_api_url.rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise MailError(f"MAILJET_API_URL={base!r} is not an http(s) URL")
        self.url = f"{base}/v3.1/send"
        self.timeout = settings.smtp_timeout
        keys = f"{settings.mj_apikey_public}:{settings.mj_apikey_private}".encode()
        self._authorization = "Basic " + base64.b64encode(keys).decode("ascii")
        self._opener = urllib.request.build_opener(_NoRedirect)

    def payload(self, message: Message) -> dict[str, Any]:
        name, email = parseaddr(message.sender)
        return {"Messages": [{
            "From": {"Email": email, "Name": name} if name else {"Email": email},
            "To": [{"Email": message.to}],
            "Subject": message.subject,
            "TextPart": message.text,
            "HTMLPart": message.html,
        }]}

    def send(self, message: Message) -> None:
        request = urllib.request.Request(
            self.url, method="POST", data=json.dumps(self.payload(message)).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     "Authorization": self._authorization},
        )
        where = f"Mailjet {self.url}"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            detail = _errors(_json(_read(error)))
            raise MailError(f"{where}: HTTP {error.code}"
                            + (f": {detail}" if detail else "")) from error
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError):
                raise MailError(f"{where}: no answer within {self.timeout}s "
                                "(SMTP_TIMEOUT)") from error
            raise MailError(f"{where}: {type(reason).__name__}: {reason}") from error
        if not 200 <= status < 300:
            raise MailError(f"{where}: HTTP {status}")
        answer = _json(body)
        messages = answer.get("Messages") if isinstance(answer, dict) else None
        if not isinstance(messages, list) or not messages:
            raise MailError(f"{where}: HTTP {status} without a Messages list")
        if any(not isinstance(m, dict) or m.get("Status") != "success" for m in messages):
            raise MailError(f"{where}: the message was refused: "
                            f"{_errors(answer) or 'no reason given'}")


def _read(error: urllib.error.HTTPError) -> bytes:
    try:
        with error:
            return error.read()
    except (OSError, ValueError, AttributeError):
        return b""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _errors(answer: Any) -> str:
    """Mailjet's ErrorMessage texts, from a top-level error or from each message's Errors."""
    if not isinstance(answer, dict):
        return ""
    found: list[str] = []
    if answer.get("ErrorMessage"):
        found.append(str(answer["ErrorMessage"]))
    for message in answer.get("Messages") or []:
        for error in (message.get("Errors") or []) if isinstance(message, dict) else []:
            if isinstance(error, dict) and error.get("ErrorMessage"):
                related = ", ".join(str(r) for r in error.get("ErrorRelatedTo") or [])
                text = str(error["ErrorMessage"])
                found.append(f"{text} ({related})" if related else text)
    return "; ".join(found)
