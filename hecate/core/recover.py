"""Password reset: a link by mail, then a new password; ends every session."""

from __future__ import annotations

from . import links, passwords
from .errors import Problem
from .models import User
from .outbox import Outbox
from .policy import check_password_policy
from .sessions import Sessions
from .users import find_by_email
from .verify import email_key


def request(outbox: Outbox, email: str) -> None:
    user = find_by_email(email)
    if user is None:
        return
    settings = outbox.settings
    token = links.issue(user.id, links.RESET, email_key(user), settings.password_reset_ttl)
    outbox.try_send("password_reset", user.email, username=user.username,
                    link=outbox.link(settings.reset_path, token),
                    ttl_minutes=settings.password_reset_ttl // 60)


def reset(outbox: Outbox, sessions: Sessions, token: str, new_password: str) -> User:
    pending = links.peek(token, (links.RESET,))
    owner = User.objects(id=pending.user_id).first()
    if owner is not None and email_key(owner) == pending.email:
        # Checked before the link is used up, so that a refused password can be replaced with
        # the same link.
        check_password_policy(new_password, email=owner.email, username=owner.username,
                              min_length=outbox.settings.password_min_length)
    record = links.consume(token, (links.RESET,))
    user = User.objects(id=record.user_id).first()
    if user is None or email_key(user) != record.email:
        raise Problem("link_invalid", "This link is no longer valid for this account.")
    User.objects(id=user.id).update_one(set__hash=passwords.hash_password(new_password))
    sessions.end_all(user.id)
    links.revoke(user.id, links.RESET, links.MAGIC)
    outbox.try_send("password_changed", user.email, username=user.username)
    return user
