"""Which new passwords are accepted: long enough, not the account's own email or username, and not
among the passwords attackers try first. Applied wherever a new password comes in (registration,
password change, password reset), before anything is written."""

from __future__ import annotations

import functools
from importlib import resources

from .errors import Problem

MAX_LENGTH = 1024  # the spec's NewPassword.maxLength; argon2 cost grows with input length
COMMON_PASSWORDS = "data/common-passwords.txt"


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list (zxcvbn's 30,000 most common passwords, lowercased), read on first use:
    import time is cold-start time on FaaS."""
    text = resources.files(__package__).joinpath(COMMON_PASSWORDS).read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _same(a: str, b: str) -> bool:
    return bool(b.strip()) and a.strip().casefold() == b.strip().casefold()


def check_password_policy(password: str, *, email: str, username: str, min_length: int) -> None:
    """Raise 400 weak_password with a reason the user can act on."""
    if len(password) < min_length:
        raise Problem("weak_password",
                      f"The password is too short. Use at least {min_length} characters.")
    if len(password) > MAX_LENGTH:
        raise Problem("weak_password",
                      f"The password is too long. Use at most {MAX_LENGTH} characters.")
    local_part = email.rpartition("@")[0]
    if any(_same(password, personal) for personal in (email, local_part, username)):
        # The first thing anyone who knows the account tries.
        raise Problem("weak_password",
                      "The password must not be your email address or username.")
    if password.strip().lower() in common_passwords():
        raise Problem("weak_password", "This password is among the most common ones and is "
                      "guessed first; choose another.")
