"""The JWS algorithms this IdP signs and verifies with, on joserfc.

joserfc 1.8 warns on every use of "EdDSA", which RFC 9864 deprecates in favour of "Ed25519".
OpenID Connect relying parties and their libraries know "EdDSA" (OIDC Discovery lists it) and
not yet "Ed25519", so this IdP keeps the name, by choice, in a registry of its own: the warning
would otherwise fire on every token, and changing joserfc's global registry would change it for
every other user of the library in the process.
"""

from __future__ import annotations

from functools import cache

from joserfc.jwa import EdDSAAlgorithm
from joserfc.jws import JWSRegistry


class _EdDSA(EdDSAAlgorithm):
    security_warning = None  # type: ignore[assignment]


class _Registry(JWSRegistry):
    algorithms = {**JWSRegistry.algorithms, "EdDSA": _EdDSA()}
    recommended = list(JWSRegistry.recommended)


@cache
def registry(*algorithms: str) -> JWSRegistry:
    """A registry that allows exactly `algorithms` (built once per combination)."""
    return _Registry(algorithms=list(algorithms))
