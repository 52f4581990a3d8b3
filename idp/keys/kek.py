"""The key-encryption key (KEK): 32 random bytes that seal every signing key at rest.

From IDP_KEY_ENCRYPTION_KEY, else its file; a development (localhost) issuer may generate the
file, atomically, so workers starting together agree on one key.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from idp.security.secrets import b64url_decode, b64url_encode
from idp.settings import Settings, SettingsError


class KeyMaterialError(SettingsError):
    """The key-encryption key is missing or does not open the stored keys."""


def load_key_encryption_key(settings: Settings) -> bytes:
    """From IDP_KEY_ENCRYPTION_KEY, else its file; a localhost issuer may generate the file."""
    if settings.key_encryption_key is not None:
        return decode_kek(settings.key_encryption_key.get_secret_value(), "IDP_KEY_ENCRYPTION_KEY")
    path = settings.key_encryption_key_file
    if path.exists():
        return decode_kek(path.read_text().strip(), str(path))
    if not settings.is_development:
        raise KeyMaterialError(
            f"no key-encryption key: set IDP_KEY_ENCRYPTION_KEY or provide {path} "
            "(32 random bytes, base64url; `idp keys new-kek` prints one)"
        )
    return _create_kek_file(path)


def new_key_encryption_key() -> str:
    return b64url_encode(os.urandom(32))


def decode_kek(value: str, source: str) -> bytes:
    try:
        raw = b64url_decode(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyMaterialError(f"{source} must hold 32 bytes, base64url-encoded")
    return raw


def _create_kek_file(path: Path) -> bytes:
    """Write a new KEK with mode 0600, atomically: workers starting together agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = new_key_encryption_key()
    draft = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    try:
        os.link(draft, path)  # fails if another process linked its key first
    except FileExistsError:
        return decode_kek(path.read_text().strip(), str(path))
    finally:
        os.unlink(draft)
    return b64url_decode(value)
