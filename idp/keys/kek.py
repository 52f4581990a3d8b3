"""The key-encryption key (KEK): 32 random bytes that seal every signing key at rest.

From IDP_KEY_ENCRYPTION_KEY, else its file; a development (localhost) issuer may generate the
file, atomically, so workers starting together agree on one key. A generated file says so in its
first line, so `idp serve` can refuse it on a non-loopback address.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from idp.security.secrets import b64url_decode, b64url_encode
from idp.settings import Settings, SettingsError

# The first line of a generated KEK file; any other file is the operator's key.
DEVELOPMENT_MARKER = "# idp development key-encryption key, generated for a localhost issuer"
_DEVELOPMENT_HEADER = (
    DEVELOPMENT_MARKER + "\n# Not for production: `idp keys new-kek` prints a key to deploy.\n"
)


class KeyMaterialError(SettingsError):
    """The key-encryption key is missing or does not open the stored keys."""


def load_key_encryption_key(settings: Settings) -> bytes:
    """From IDP_KEY_ENCRYPTION_KEY, else its file; a localhost issuer may generate the file."""
    if settings.key_encryption_key is not None:
        return decode_kek(settings.key_encryption_key.get_secret_value(), "IDP_KEY_ENCRYPTION_KEY")
    path = settings.key_encryption_key_file
    if path.exists():
        return read_kek_file(path)
    if not settings.is_development:
        raise KeyMaterialError(
            f"no key-encryption key: set IDP_KEY_ENCRYPTION_KEY or provide {path} "
            "(32 random bytes, base64url; `idp keys new-kek` prints one)"
        )
    return _create_kek_file(path)


def is_development_kek(settings: Settings) -> bool:
    """True if the KEK is (or on first start would be) one this server generated for development."""
    if settings.key_encryption_key is not None:
        return False
    path = settings.key_encryption_key_file
    if not path.exists():
        return settings.is_development  # load_key_encryption_key would generate it
    try:
        with path.open() as handle:
            return handle.readline().rstrip("\r\n") == DEVELOPMENT_MARKER
    except OSError:
        return False  # unreadable: loading it fails next, with its own message


def read_kek_file(path: Path) -> bytes:
    """The KEK a file holds: one base64url line; blank lines and `#` comment lines are skipped."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    values = [line for line in lines if line and not line.startswith("#")]
    return decode_kek(values[0] if len(values) == 1 else "", str(path))


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
        handle.write(_DEVELOPMENT_HEADER + value + "\n")
    try:
        os.link(draft, path)  # fails if another process linked its key first
    except FileExistsError:
        return read_kek_file(path)
    finally:
        os.unlink(draft)
    return b64url_decode(value)
