"""Which of a client's keys may verify its client assertions (private_key_jwt, RFC 7523 §2.2).

Only public keys of the algorithms in client_auth.ASSERTION_ALGS, at a strength that still
holds: RSA of at least 2048 bits (RS256, PS256; NIST SP 800-131A), EC on P-256 (ES256) and OKP
Ed25519 (EdDSA). Never a symmetric (`oct`) key, which anyone who holds it could sign with, and
never a private key: a client must never hand us its private key, and a registration that does
is refused (the key is compromised by being sent). Registration refuses a set holding any other
key; a fetched jwks_uri document is used without them (an assertion signed with one is then
invalid_client).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("idp.client_auth")

MIN_RSA_BITS = 2048
# The algorithms each key type may be declared for ("alg" in the JWK, RFC 7517 §4.4).
ALGS = {"RSA": ("RS256", "PS256"), "EC": ("ES256",), "OKP": ("EdDSA", "Ed25519")}
CURVES = {"EC": "P-256", "OKP": "Ed25519"}
# RFC 7518 §6.2.2, §6.3.2 and RFC 8037 §2: the members only a private key has; "k" is oct's.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def key_problem(key: object) -> str | None:
    """Why this JWK may not verify client assertions (a phrase to follow "key N"), or None."""
    if not isinstance(key, Mapping):
        return "is not a JSON object"
    kty = key.get("kty")
    if kty == "oct":
        return "is a symmetric (oct) key; register public keys only"
    if any(member in key for member in PRIVATE_MEMBERS):
        return "holds private key material ('d'); register only the public key"
    if kty == "RSA":
        bits = _modulus_bits(key.get("n"))
        if bits is None:
            return "has no valid RSA modulus ('n')"
        if bits < MIN_RSA_BITS:
            return f"is an RSA key of {bits} bits; at least {MIN_RSA_BITS} are needed"
    elif kty in CURVES:
        if key.get("crv") != CURVES[str(kty)]:
            return f"is on curve {key.get('crv')!r}; only {CURVES[str(kty)]} is accepted for {kty}"
    else:
        return f"has key type {kty!r}; use RSA (2048 bits or more), EC P-256 or OKP Ed25519"
    alg = key.get("alg")
    if alg is not None and alg not in ALGS[str(kty)]:
        return f"is declared for {alg!r}; a {kty} key may sign {', '.join(ALGS[str(kty)])}"
    if key.get("use") not in (None, "sig"):
        return f"is for use {key.get('use')!r}, not for signatures ('sig')"
    return None


def _modulus_bits(n: object) -> int | None:
    if not isinstance(n, str) or not n:
        return None
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw, "big").bit_length()


def usable(document: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    """The JWK Set without the keys key_problem() refuses; each one left out is logged."""
    keys = document.get("keys")
    kept = []
    for key in keys if isinstance(keys, list) else []:
        problem = key_problem(key)
        if problem is None:
            kept.append(key)
        else:
            kid = key.get("kid") if isinstance(key, Mapping) else None
            log.warning("client %s: key %r ignored: it %s", client_id, kid, problem)
    return {"keys": kept}
