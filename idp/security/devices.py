"""The device cookie (OWASP's "device cookies" against lockout by strangers).

A successful sign-in gives the browser a long-lived cookie naming a random device id and the
accounts that signed in on it (the latest few), signed with an HMAC under a key derived from
the key-encryption key. A sign-in attempt for one of those accounts, from this browser, draws on
the device's own budget instead of the budgets strangers share. Nothing is stored: any worker
verifies any cookie, and the signature is all an attacker cannot make.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from idp.security.secrets import b64url_decode, b64url_encode, new_id, same

# Accounts remembered per browser (a shared family computer); the oldest drop out.
MAX_ACCOUNTS = 5
# Browsers cap a cookie's lifetime at 400 days (RFC 6265bis §5.5).
MAX_AGE_SECONDS = 400 * 86400
_VERSION = "d1"


@dataclass(frozen=True)
class Device:
    id: str
    accounts: tuple[str, ...]  # user ids, latest first

    def knows(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self.accounts


def _mac(key: bytes, payload: str) -> str:
    return b64url_encode(hmac.new(key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest())


def read(key: bytes, value: str | None) -> Device | None:
    """The device a cookie names; None when absent, malformed or not signed by us."""
    if not value or len(value) > 2048:
        return None
    version, _, rest = value.partition(".")
    payload, _, mac = rest.partition(".")
    if version != _VERSION or not payload or not same(_mac(key, payload), mac):
        return None
    try:
        data = json.loads(b64url_decode(payload))
        device_id, accounts = data["d"], data["u"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(device_id, str) or not isinstance(accounts, list):
        return None
    return Device(device_id, tuple(a for a in accounts if isinstance(a, str))[:MAX_ACCOUNTS])


def signed_in(key: bytes, device: Device | None, user_id: str) -> str:
    """The cookie after `user_id` signed in on this browser (a new device if it had none)."""
    device_id = device.id if device else new_id()
    earlier = [a for a in (device.accounts if device else ()) if a != user_id]
    accounts = [user_id, *earlier][:MAX_ACCOUNTS]
    payload = b64url_encode(json.dumps({"d": device_id, "u": accounts}).encode())
    return f"{_VERSION}.{payload}.{_mac(key, payload)}"
