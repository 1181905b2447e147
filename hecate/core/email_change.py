"""Email change: nothing changes until the new address is confirmed (verify.confirm); the old
address is told and can cancel. (The original switched at once and unverified the account, so a
typo could lock a user out.)"""

from __future__ import annotations

from . import links
from .errors import Problem
from .models import User, normalize_email
from .outbox import Outbox
from .users import check_password, find_by_email
from .verify import email_key


def request(outbox: Outbox, user: User, new_email: str, password: str) -> None:
    check_password(user, password)
    new_key = normalize_email(new_email)
    if new_key == email_key(user):
        raise Problem("email_unchanged", "This is already the account's email address.")
    if find_by_email(new_email) is not None:
        raise Problem("email_taken", "An account with this email address already exists.")
    settings = outbox.settings
    ttl = settings.email_change_ttl
    confirm = links.issue(user.id, links.EMAIL_CHANGE, new_key, ttl, new_email=new_email.strip())
    cancel = links.issue(user.id, links.EMAIL_CHANGE_CANCEL, email_key(user), ttl)
    try:
        outbox.send("email_change_confirm", new_email.strip(), username=user.username,
                    new_email=new_email.strip(), link=outbox.link(settings.verify_path, confirm))
        outbox.send("email_change_notice", user.email, username=user.username,
                    new_email=new_email.strip(),
                    cancel_link=outbox.link(settings.email_change_cancel_path, cancel))
    except Problem:
        links.revoke(user.id, links.EMAIL_CHANGE, links.EMAIL_CHANGE_CANCEL)
        raise


def cancel(token: str) -> None:
    record = links.consume(token, (links.EMAIL_CHANGE_CANCEL,))
    if User.objects(id=record.user_id).first() is None:
        raise Problem("link_invalid", "This link belongs to an account that no longer exists.")
    links.revoke(record.user_id, links.EMAIL_CHANGE)
