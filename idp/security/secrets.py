"""Random values, their hashes, and AES-GCM for secrets kept at rest.

Every bearer secret the server hands out (codes, client secrets, session ids) is 256 random bits,
so a SHA-256 of it is enough to store: it cannot be brute-forced, and it costs half a microsecond
instead of the tens of milliseconds a password KDF would add to the hot path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh 256-bit secret, URL-safe."""
    return secrets.token_urlsafe(SECRET_BYTES)


def new_id(nbytes: int = 16) -> str:
    """A random public identifier (client ids, session ids in tokens, jti).

    Never starts with "-": an id is typed as a command-line argument (`idp clients show ID`),
    where a leading dash reads as an option. Redrawing costs under 0.1 bit of the 128."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


class DecryptionError(Exception):
    """The ciphertext was not made with this key (or was altered)."""


class Sealer:
    """AES-256-GCM with a random 96-bit nonce; `aad` binds a ciphertext to what it belongs to."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the key-encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], aad)
        except InvalidTag as exc:
            raise DecryptionError("wrong key-encryption key or corrupted key material") from exc


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose, from the key-encryption key (HKDF-SHA256, RFC 5869)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master
    )


def successor_secret(key: bytes, secret: str) -> str:
    """The secret that replaces `secret` (HMAC-SHA256 under `key`): deterministic, so a retry
    can be answered with the same successor although only hashes are stored."""
    return b64url_encode(hmac.new(key, secret.encode(), hashlib.sha256).digest())
