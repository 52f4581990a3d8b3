"""argon2id password hashing and the NIST SP 800-63B password policy."""

from __future__ import annotations

import secrets
import threading
import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from idp.settings import Settings

# Longest password accepted. NIST asks for at least 64; past this only a denial of service gains.
MAX_LENGTH = 256

# 30,000 most common passwords, as shipped by zxcvbn (lower case).
_COMMON = frozenset(FREQUENCY_LISTS["passwords"])


class PasswordRejected(ValueError):
    """The password fails the policy; the message says why in words a person understands."""


def normalize(password: str) -> str:
    # NIST SP 800-63B §5.1.1.2: normalise Unicode (NFKC) before hashing, so a password typed on
    # another keyboard still matches.
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, min_length: int, email: str | None = None) -> None:
    """NIST SP 800-63B §3.1.1.2: a length floor, no composition rules, no known-bad passwords."""
    pw = normalize(password)
    if len(pw) < min_length:
        raise PasswordRejected(f"password must be at least {min_length} characters")
    if len(pw) > MAX_LENGTH:
        raise PasswordRejected(f"password must be at most {MAX_LENGTH} characters")
    if pw.lower() in _COMMON:
        raise PasswordRejected("password is too common; choose another")
    if email and pw.lower() in {email.lower(), email.split("@")[0].lower()}:
        raise PasswordRejected("password must not be your email address")


class Passwords:
    """Hash and verify with bounded concurrency (each hash takes tens of MiB of memory)."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
            type=Type.ID,
        )
        self._slots = threading.BoundedSemaphore(settings.password_hash_concurrency)
        # Verified against when the email is unknown, so both answers take the same time.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        with self._slots:
            return self._hasher.hash(normalize(password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if the password matches; an unknown user (None) costs the same and is False."""
        with self._slots:
            try:
                return self._hasher.verify(password_hash or self._dummy, normalize(password)) and (
                    password_hash is not None
                )
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
