"""The password policy: a minimum length and no password from a list of the most common ones."""

from __future__ import annotations

import functools
from importlib.resources import files

from pydantic_core import PydanticCustomError

from adstack.core.errors import ValidationFailed

MIN_PASSWORD_LENGTH = 10

# The 10,000 most common passwords of SecLists, "Passwords/Common-Credentials/10k-most-common.txt"
# (https://github.com/danielmiessler/SecLists, MIT licence), one a line, most common first.
COMMON_PASSWORDS_FILE = "common-passwords.txt"


@functools.cache
def common_passwords() -> frozenset[str]:
    text = files("adstack.accounts").joinpath("data", COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def is_common(password: str) -> bool:
    # Case and surrounding spaces do not make a listed password any harder to guess.
    return password.strip().lower() in common_passwords()


def refuse_common_password(password: str) -> str:
    """A pydantic validator: the error names the rule and, as its limit, the size of the list."""
    if is_common(password):
        raise PydanticCustomError("common_password", "this password is one of the {limit} most common passwords",
                                  {"limit": len(common_passwords())})
    return password


def check_new_password(password: str, *, field: str = "password") -> None:
    """The same policy for passwords that do not come through a pydantic schema (e.g. the admin CLI)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed.single(field, "string_too_short",
                                      f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
                                      limit=MIN_PASSWORD_LENGTH, actual=len(password))
    if is_common(password):
        raise ValidationFailed.single(field, "common_password", "this password is one of the most common passwords",
                                      limit=len(common_passwords()))
