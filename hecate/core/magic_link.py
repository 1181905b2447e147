"""One-time ("magic") login by mail. Only the newest link works, each once; following it proves
the address, so it marks the email verified."""

from __future__ import annotations

from . import links
from .errors import Problem
from .models import User
from .outbox import Outbox
from .users import find_by_email
from .verify import email_key


def request(outbox: Outbox, email: str) -> None:
    user = find_by_email(email)
    if user is None:
        return
    settings = outbox.settings
    token = links.issue(user.id, links.MAGIC, email_key(user), settings.magic_login_ttl)
    outbox.try_send("magic_login", user.email, username=user.username,
                    link=outbox.link(settings.magic_path, token),
                    ttl_minutes=max(settings.magic_login_ttl // 60, 1))


def login(token: str) -> User:
    record = links.consume(token, (links.MAGIC,))
    user = User.objects(id=record.user_id).first()
    if user is None or email_key(user) != record.email:
        raise Problem("link_invalid", "This link is no longer valid for this account.")
    if not user.verified:
        User.objects(id=user.id).update_one(set__verified=True)
        user.verified = True
    return user
