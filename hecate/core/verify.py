"""Email verification: the link mailed at registration (and on request), and its confirmation,
which also confirms a pending email change."""

from __future__ import annotations

from mongoengine.errors import NotUniqueError

from . import audit, links, models
from .errors import Problem
from .models import User, normalize_email
from .outbox import Outbox
from .users import find_by_email


def email_key(user: User) -> str:
    return user.email_normalized or normalize_email(user.email)


def send_link(outbox: Outbox, user: User, *, strict: bool) -> None:
    token = links.issue(user.id, links.VERIFY, email_key(user), outbox.settings.verification_ttl)
    context = {"username": user.username, "link": outbox.link(outbox.settings.verify_path, token)}
    if strict:
        try:
            outbox.send("verify_email", user.email, **context)
        except Problem:
            links.revoke(user.id, links.VERIFY)
            raise
    else:
        outbox.try_send("verify_email", user.email, **context)


def resend(outbox: Outbox, email: str) -> None:
    user = find_by_email(email)
    if user is not None and not user.verified:
        send_link(outbox, user, strict=False)


def confirm(token: str) -> User:
    """PUT /user/email/verification: a verification link, or the confirmation of an email
    change (mailed to the new address)."""
    record = links.consume(token, (links.VERIFY, links.EMAIL_CHANGE))
    user = User.objects(id=record.user_id).first()
    if user is None:
        raise Problem("link_invalid", "This link belongs to an account that no longer exists.")
    if record.purpose == links.VERIFY:
        if email_key(user) != record.email:
            raise Problem("link_invalid", "This link was sent to an address that is no longer "
                          "the account's.")
        User.objects(id=user.id).update_one(set__verified=True)
    else:
        models.require_indexes()
        try:
            # The unique index re-checks, atomically, that nobody took the address meanwhile.
            User.objects(id=user.id).update_one(
                set__email=record.new_email, set__email_normalized=record.email,
                set__verified=True)
        except NotUniqueError:
            raise Problem("email_taken", "Another account uses this address now.") from None
        links.revoke(user.id, links.EMAIL_CHANGE_CANCEL)
        audit.record(audit.EMAIL_CHANGE_CONFIRMED, user_id=user.id)
    user.reload()
    return user
