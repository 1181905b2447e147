"""The rules of the user lifecycle: register, authenticate, change password, delete."""

from __future__ import annotations

import logging

from bson import ObjectId
from mongoengine.errors import NotUniqueError
from mongoengine.queryset.visitor import Q

from . import metrics, models, passwords
from .errors import Problem
from .models import User, normalize_email, normalize_username, utcnow
from .outbox import Outbox
from .policy import check_password_policy
from .sessions import object_id

log = logging.getLogger("hecate.users")


def _taken(error: NotUniqueError) -> Problem:
    if "username" in str(error):
        return Problem("username_taken", "This username is already taken.")
    return Problem("email_taken", "An account with this email address already exists.")


def _legacy_email(email: str) -> Q:
    # Documents written by the Node original have no normalized key yet; their email is compared
    # case-insensitively (an anchored, escaped regex).
    return Q(email_normalized__exists=False, email__iexact=email.strip())


def find_by_email(email: str) -> User | None:
    return User.objects(Q(email_normalized=normalize_email(email)) | _legacy_email(email)).first()


def get(user_id: str) -> User:
    user = models.find_document(User, {"_id": object_id(user_id)})
    if user is None:
        raise Problem("session_ended", "This account no longer exists.")
    return user


def register(username: str, email: str, password: str, *, min_length: int) -> User:
    # The policy comes first: were it checked after the email, a weak password would tell a
    # taken address (409 or, enumeration-safe, 201) from a free one (400).
    check_password_policy(password, email=email, username=username, min_length=min_length)
    if User.objects(
        Q(username_normalized=normalize_username(username))
        | Q(username_normalized__exists=False, username__iexact=username)
    ).first():
        raise Problem("username_taken", "This username is already taken.")
    # Hashed before the email is looked up, so that a taken address costs the same time as a new
    # one (REGISTRATION_ENUMERATION_SAFE).
    password_hash = passwords.hash_password(password)
    if find_by_email(email):
        raise Problem("email_taken", "An account with this email address already exists.")
    models.require_indexes()  # the unique keys below are the guard against a racing twin
    user = User(
        username=username,
        email=email.strip(),
        email_normalized=normalize_email(email),
        username_normalized=normalize_username(username),
        hash=password_hash,
        verified=False,
        allow_magic_login=False,
        sessions=[],
        created_at=utcnow(),
    )
    try:
        # The unique indexes are the real guard: two racing registrations cannot both land.
        user.save(force_insert=True)
    except NotUniqueError as error:
        raise _taken(error) from None
    return user


def already_registered(outbox: Outbox, username: str, email: str) -> User:
    """REGISTRATION_ENUMERATION_SAFE: a registration with a taken address mails the address's
    owner and returns an unsaved look-alike of a new account (fresh id, unverified), so the answer
    is the same as for a new address. The mail is sent as strictly as a new account's
    verification mail would be, so that a failing transport answers alike too (503 or 201)."""
    owner = find_by_email(email)
    settings = outbox.settings
    if owner is not None:
        context = {"username": owner.username, "login_link": settings.app_url,
                   "reset_link": f"{settings.app_url}{settings.reset_path}"}
        if settings.email_verification_required:
            outbox.send("already_registered", owner.email, **context)
        else:
            outbox.try_send("already_registered", owner.email, **context)
    return User(id=ObjectId(), username=username, email=email.strip(), verified=False)


def authenticate(user: User | None, password: str) -> User:
    """``user`` (looked up by email) if the password is right; else 401 invalid_credentials for an
    unknown email and a wrong password alike (same answer, same time: an unknown email is checked
    against a dummy hash)."""
    ok, new_hash = passwords.verify_password(password, user.hash if user else None)
    if user is None or not ok:
        metrics.login_failed()
        raise Problem("invalid_credentials", "Invalid email or password.")
    if new_hash or user.email_normalized is None:
        _upgrade(user, new_hash)
    return user


def _upgrade(user: User, new_hash: str | None) -> None:
    """Rehash old hashes (bcrypt from the Node era) and give Node-era documents their
    normalized keys, guarded on the hash we verified so a concurrent change is not overwritten."""
    updates: dict[str, object] = {}
    if new_hash:
        updates["set__hash"] = new_hash
    if user.email_normalized is None:
        updates["set__email_normalized"] = normalize_email(user.email)
        updates["set__username_normalized"] = normalize_username(user.username)
    try:
        User.objects(id=user.id, hash=user.hash).update_one(**updates)
    except NotUniqueError:
        # Another account differs only in case (possible in Node-era data); `hecate check`
        # reports it. Keep the rehash, skip the keys.
        log.warning("normalized key collision for a Node-era user", extra={"user_id": str(user.id)})
        if new_hash:
            User.objects(id=user.id, hash=user.hash).update_one(set__hash=new_hash)


def ensure_enabled(user: User) -> None:
    """403 account_disabled for an account an operator disabled. Asked only after the password
    (or link) proved who is asking, so it tells them nothing they could not know."""
    if user.disabled:
        raise Problem("account_disabled", "This account is disabled; please contact support.")


def check_password(user: User, password: str) -> None:
    ok, _ = passwords.verify_password(password, user.hash)
    if not ok:
        # 403, not 401: SPAs answer a 401 by refreshing and retrying the call.
        raise Problem("wrong_password", "The password is not correct.")


def change_password(user: User, old_password: str, new_password: str, *,
                    min_length: int) -> None:
    check_password(user, old_password)
    check_password_policy(new_password, email=user.email, username=user.username,
                          min_length=min_length)
    changed = User.objects(id=user.id, hash=user.hash).update_one(
        set__hash=passwords.hash_password(new_password)
    )
    if not changed:
        raise Problem("wrong_password", "The password was changed meanwhile; please try again.")


def delete(user_id: ObjectId) -> None:
    User.objects(id=user_id).delete()
