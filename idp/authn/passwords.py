"""argon2id password hashing and the NIST SP 800-63B password policy.

Hashing runs on a small executor of its own, behind an admission limit: a request awaits its
hash on the event loop and holds no thread of the shared pool, so a flood of sign-ins cannot
stall the endpoints that need those threads (/authorize, /userinfo, /logout, ...). When every
slot and the queue before them are taken, the caller is told at once (PasswordsBusy), before
any hash is computed.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import sys
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.settings import Settings

# Longest password accepted. NIST asks for at least 64; past this only a denial of service gains.
MAX_LENGTH = 256


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords, as shipped by zxcvbn (lower case). Loaded at the first
    password set, not at startup: importing zxcvbn brings every one of its frequency lists
    (14 MiB resident, measured), of which only this one is kept; its modules are let go after."""
    loaded = {name for name in sys.modules if name.partition(".")[0] == "zxcvbn"}
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    common = frozenset(FREQUENCY_LISTS["passwords"])
    for name in [n for n in sys.modules if n.partition(".")[0] == "zxcvbn" and n not in loaded]:
        del sys.modules[name]
    return common


T = TypeVar("T")


class PasswordsBusy(Exception):
    """Every hashing slot is busy and the queue before them is full: try again shortly."""

    retry_after_seconds = 1


class PasswordRejected(ValueError):
    """The password fails the policy; the message says why in words a person understands."""


def normalize(password: str) -> str:
    # NIST SP 800-63B §5.1.1.2: normalise Unicode (NFKC) before hashing, so a password typed on
    # another keyboard still matches.
    return unicodedata.normalize("NFKC", password)


def min_password_length(settings: Settings, has_second_factor: bool) -> int:
    """NIST SP 800-63B-4 §3.1.1.2: the shortest password allowed for an account: 15 characters
    (IDP_PASSWORD_MIN_LENGTH) while the password is its only factor, 8
    (IDP_PASSWORD_MIN_LENGTH_WITH_MFA) once it has a second factor."""
    if has_second_factor:
        return settings.password_min_length_with_mfa
    return settings.password_min_length


def check_policy(password: str, min_length: int, email: str | None = None) -> None:
    """NIST SP 800-63B §3.1.1.2: a length floor, no composition rules, no known-bad passwords."""
    pw = normalize(password)
    if len(pw) < min_length:
        raise PasswordRejected(f"password must be at least {min_length} characters")
    if len(pw) > MAX_LENGTH:
        raise PasswordRejected(f"password must be at most {MAX_LENGTH} characters")
    if pw.lower() in common_passwords():
        raise PasswordRejected("password is too common; choose another")
    if email and pw.lower() in {email.lower(), email.split("@")[0].lower()}:
        raise PasswordRejected("password must not be your email address")


class Passwords:
    """Hash and verify on a bounded executor (each hash takes tens of MiB of memory).

    `averify` and `ahash` are for request handlers; `verify` and `hash` block the calling
    thread (the command line, admin services) but go through the same slots and queue."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
            type=Type.ID,
        )
        # argon2-cffi releases the GIL while it hashes: the slots hash in parallel.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.password_hash_concurrency, thread_name_prefix="argon2"
        )
        self._capacity = settings.password_hash_concurrency + settings.password_hash_queue
        self._admitted = 0
        self._lock = threading.Lock()
        # Verified against when the email is unknown, so both answers take the same time.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def _admit(self, work: Callable[..., T], *args: object) -> Future[T]:
        with self._lock:
            if self._admitted >= self._capacity:
                raise PasswordsBusy
            self._admitted += 1
        try:
            future = self._pool.submit(work, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _: object = None) -> None:
        with self._lock:
            self._admitted -= 1

    def _hash(self, password: str) -> str:
        return self._hasher.hash(normalize(password))

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, normalize(password)) and (
                password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def averify(self, password_hash: str | None, password: str) -> bool:
        """True if the password matches; an unknown user (None) costs the same and is False.
        Raises PasswordsBusy, without hashing, when no slot or queue place is free."""
        return await asyncio.wrap_future(self._admit(self._verify, password_hash, password))

    async def ahash(self, password: str) -> str:
        return await asyncio.wrap_future(self._admit(self._hash, password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        return self._admit(self._verify, password_hash, password).result()

    def hash(self, password: str) -> str:
        return self._admit(self._hash, password).result()

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
