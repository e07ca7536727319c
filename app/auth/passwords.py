"""Password hashing (argon2id) and the password policy.

Parameters default to OWASP's Password Storage Cheat Sheet (m=19 MiB, t=2, p=1); a
stored hash made with other parameters is transparently rehashed at the next login.
"""

from __future__ import annotations

import secrets
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP ASVS 5.0 (6.2): at least 8 characters, 15 recommended, allow at least 64;
# no composition rules, but refuse the obvious ones.
MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 128
COMMON: Final = frozenset(
    {
        "123456789012",
        "1234567890123",
        "password1234",
        "passwordpassword",
        "qwertyuiop12",
        "qwertyuiopasdf",
        "iloveyou1234",
        "letmeinletmein",
        "administrator",
        "changemechangeme",
        "welcome12345",
        "aaaaaaaaaaaa",
        "abcdefghijkl",
        "correcthorsebatterystaple",
    }
)


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """Why `password` is refused by the policy (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters long")
    lowered = password.lower()
    if lowered in COMMON or len(set(password)) < 4:
        problems.append("is too common or too repetitive")
    if email:
        local = email.split("@", 1)[0].lower()
        if len(local) >= 4 and local in lowered:
            problems.append("must not contain the email address")
    return problems


class Passwords:
    """argon2id hashing with the configured cost and a constant-time dummy check."""

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        """A new salted argon2id hash of `password`."""
        return self._hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        """True when `password` matches `stored_hash`; never raises on a mismatch."""
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when `stored_hash` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def burn(self, password: str) -> None:
        """Spend the time of one verification, for accounts that do not exist.

        Without it a login for an unknown email answers measurably faster than one
        for a real account with a wrong password (user enumeration by timing).
        """
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy_hash, password)
