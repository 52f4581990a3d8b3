"""A software WebAuthn authenticator and client in one, for server-side tests.

It makes what a browser hands the page after navigator.credentials.create() and .get(), in the
JSON shape of WebAuthn L3 §5.1 (toJSON(): base64url fields): attestation "none" (§8.7),
authenticator data with attested credential data (§6.1, §6.5.1), and an ES256 key as a COSE
EC2 key (RFC 9053 §7.1). Every field a test may want wrong can be overridden per call.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from idp.security.secrets import b64url_decode, b64url_encode

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class SoftAuthenticator:
    """One credential on one authenticator. `counts`: the counter goes up by one per assertion
    (a security key); off, it stays 0 (a synced passkey)."""

    origin: str = "https://testserver"
    rp_id: str = "testserver"
    user_present: bool = True
    user_verified: bool = True
    backup_eligible: bool = False
    backed_up: bool = False
    resident: bool = True
    counts: bool = True
    sign_count: int = 0
    aaguid: bytes = bytes(16)
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)
    user_handle: bytes | None = None

    @property
    def id(self) -> str:
        return b64url_encode(self.credential_id)

    def _flags(self, extra: int = 0) -> int:
        flags = extra
        flags |= UP if self.user_present else 0
        flags |= UV if self.user_verified else 0
        flags |= BE if self.backup_eligible else 0
        flags |= BS if self.backed_up else 0
        return flags

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def create(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        kind: str = "webauthn.create",
    ) -> str:
        """The PublicKeyCredential (as JSON) that registering with these options returns."""
        options: dict[str, Any] = json.loads(options_json)
        self.user_handle = b64url_decode(options["user"]["id"])
        rp = rp_id or options["rp"].get("id") or self.rp_id
        attested = (
            self.aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(AT)])
            + struct.pack(">I", self.sign_count)
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data(kind, challenge or options["challenge"], origin)
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url_encode(client_data),
                    "attestationObject": b64url_encode(attestation),
                    "transports": ["internal"] if self.backup_eligible else ["usb"],
                },
                "clientExtensionResults": {"credProps": {"rk": self.resident}},
                "authenticatorAttachment": "platform" if self.backup_eligible else "cross-platform",
            }
        )

    def get(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        sign_count: int | None = None,
        user_handle: bytes | None = None,
        send_user_handle: bool = True,
    ) -> str:
        """The PublicKeyCredential (as JSON) that an assertion with these options returns.
        `sign_count` sends that counter once, whatever this authenticator's own is."""
        options: dict[str, Any] = json.loads(options_json)
        if sign_count is None:
            if self.counts:
                self.sign_count += 1
            sign_count = self.sign_count
        rp = rp_id or options.get("rpId") or self.rp_id
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags()])
            + struct.pack(">I", sign_count)
        )
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        handle = user_handle or self.user_handle
        response: dict[str, str] = {
            "clientDataJSON": b64url_encode(client_data),
            "authenticatorData": b64url_encode(auth_data),
            "signature": b64url_encode(signature),
        }
        # A discoverable credential always returns its user handle (WebAuthn L3 §6.3.3).
        if send_user_handle and self.resident and handle is not None:
            response["userHandle"] = b64url_encode(handle)
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": response,
                "clientExtensionResults": {},
            }
        )
