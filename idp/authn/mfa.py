"""Second factors and what a sign-in must reach: TOTP (RFC 6238), recovery codes, the acr
ladder aal1 < aal2 < phr, and the amr values (RFC 8176) each path earns.

Who must use a second factor: a user who has one (they turned MFA on for themselves), every
holder of the `admin` role, every sign-in for a client registered with `require_mfa`, and a
relying party's `acr_values` asking for more. The seed is sealed under the KEK, bound to its
user; a time step is accepted once (one conditional UPDATE in store.factors).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.security.secrets import Sealer
from idp.store import factors as store, webauthn as credentials
from idp.store.clients import Client
from idp.store.users import User

if TYPE_CHECKING:
    import pyotp

# acr values (OpenID EAP ACR Values 1.0 for phr; NIST SP 800-63B levels for the others).
AAL1, AAL2, PHR = "aal1", "aal2", "phr"
ACR_VALUES = (AAL1, AAL2, PHR)
_RANK = {AAL1: 1, AAL2: 2, PHR: 3}
# amr values (RFC 8176 §2).
PWD, OTP, MFA = "pwd", "otp", "mfa"

TOTP_DIGITS = 6
TOTP_PERIOD = 30
# A code is accepted one time step early or late: clocks drift, people type slowly.
TOTP_WINDOW = 1
# 32 base32 characters: 160 bits (RFC 4226 §4 R6 recommends 160).
TOTP_SECRET_CHARS = 32
MAX_FACTOR_FAILURES = 5
RECOVERY_CODE_COUNT = 10
# 24 base32 characters, 120 bits: above NIST's 112, so a SHA-256 may store them.
RECOVERY_CODE_CHARS = 24
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_NOT_BASE32 = re.compile(r"[^a-z2-7]")


def rank(acr: str | None) -> int:
    return _RANK.get(acr or AAL1, 1)


def satisfies(achieved: str | None, required: str) -> bool:
    """`phr` satisfies a request for `aal2`, and both satisfy `aal1`."""
    return rank(achieved) >= rank(required)


def requested(acr_values: str | None) -> str | None:
    """The least of the known values a relying party listed (any of them satisfies it);
    unknown values are ignored, acr_values being voluntary (OIDC Core §3.1.2.1)."""
    known = [v for v in (acr_values or "").split() if v in _RANK]
    return min(known, key=rank) if known else None


@dataclass(frozen=True)
class Factors:
    """What second factors a user holds (and whether the admin role requires one)."""

    totp: bool
    passkeys: int
    recovery_codes: int
    admin: bool = False

    @property
    def any(self) -> bool:
        return self.totp or self.passkeys > 0

    def can_reach(self, acr: str) -> bool:
        if acr == PHR:
            return self.passkeys > 0
        if acr == AAL2:
            return self.any
        return True


def factors_of(db: Session, user_id: str) -> Factors:
    return Factors(*store.summary(db, user_id))


def must_use_mfa(db: Session, user: User, client: Client | None) -> bool:
    """The policy, apart from what a relying party asks for: admins and MFA-only clients."""
    return factors_of(db, user.id).admin or (client is not None and client.require_mfa)


@dataclass(frozen=True)
class Requirement:
    """What a sign-in must reach, and why (policy, or only the relying party's request), with
    the user's factors as they were read for it."""

    acr: str
    by_policy: bool  # the user or the IdP requires it: enrol if there is no factor
    factors: Factors


def requirement(
    db: Session, user: User, client: Client | None, acr_values: str | None
) -> Requirement:
    factors = factors_of(db, user.id)
    by_policy = factors.any or factors.admin or (client is not None and client.require_mfa)
    floor = AAL2 if by_policy else AAL1
    asked = requested(acr_values)
    acr = asked if asked is not None and rank(asked) > rank(floor) else floor
    return Requirement(acr, by_policy, factors)


# --- TOTP --------------------------------------------------------------------------------------


def _aad(user_id: str) -> bytes:
    return f"totp:{user_id}".encode()


# pyotp and segno (with xml.sax, ~1 MiB resident together) load with the first TOTP use:
# a worker serving tokens never needs them.
def _totp(secret: str) -> pyotp.TOTP:
    import pyotp

    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows once: the secret as QR code, URI and text."""

    secret: str
    uri: str

    @property
    def qr_svg(self) -> str:
        # An inline SVG element: no script, no style attribute, no data: URI, so the strict
        # CSP holds (segno writes presentation attributes, not style).
        import segno

        return str(
            segno.make(self.uri, error="m").svg_inline(dark="#000", light="#fff", omitsize=True)
        )

    @property
    def grouped_secret(self) -> str:
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


def start_totp(db: Session, sealer: Sealer, user: User, issuer_name: str) -> Enrolment:
    """A new, unconfirmed seed (replacing an unconfirmed one); it counts once confirmed."""
    import pyotp

    secret = pyotp.random_base32(length=TOTP_SECRET_CHARS)
    store.put_totp(db, user.id, sealer.seal(secret.encode(), _aad(user.id)))
    return _enrolment(secret, user, issuer_name)


def pending_totp(db: Session, sealer: Sealer, user: User, issuer_name: str) -> Enrolment | None:
    """The unconfirmed seed being set up, to show again (a reload of the page)."""
    row = store.totp_of(db, user.id)
    if row is None or row.confirmed_at is not None:
        return None
    return _enrolment(sealer.open(row.sealed_seed, _aad(user.id)).decode(), user, issuer_name)


def _enrolment(secret: str, user: User, issuer_name: str) -> Enrolment:
    uri = _totp(secret).provisioning_uri(name=user.email, issuer_name=issuer_name)
    return Enrolment(secret, uri)


def _matching_step(db: Session, sealer: Sealer, user_id: str, code: str) -> tuple[int, bool] | None:
    """The time step the code belongs to and whether the factor is confirmed, or None."""
    import pyotp

    row = store.totp_of(db, user_id)
    code = re.sub(r"\s", "", code)
    if row is None or not (code.isascii() and code.isdigit() and len(code) == TOTP_DIGITS):
        return None
    secret = sealer.open(row.sealed_seed, _aad(user_id)).decode()
    try:
        step = _totp(secret).verify_and_get_timecode(code, valid_window=TOTP_WINDOW)
    except pyotp.OTPVerificationError:
        return None
    return step, row.confirmed_at is not None


def confirm_totp(db: Session, sealer: Sealer, user: User, code: str, ip: str | None) -> bool:
    """The first code proves the authenticator holds the seed: the factor counts from now."""
    match = _matching_step(db, sealer, user.id, code)
    if match is None or match[1] or not store.accept_step(db, user.id, match[0], confirm=True):
        return False
    record(db, AuditEvent.MFA_ENROLLED, ip=ip, user_id=user.id, factor="totp")
    return True


def check_totp(db: Session, sealer: Sealer, user_id: str, code: str) -> bool:
    """A code of a confirmed factor, in the window, of a step newer than any accepted before
    (RFC 6238 §5.2: a code is accepted once, even by two parallel sign-ins)."""
    match = _matching_step(db, sealer, user_id, code)
    return match is not None and match[1] and store.accept_step(db, user_id, match[0])


def remove_totp(db: Session, user_id: str, ip: str | None) -> bool:
    if not store.delete_totp(db, user_id):
        return False
    record(db, AuditEvent.MFA_REMOVED, ip=ip, user_id=user_id, factor="totp")
    if not factors_of(db, user_id).any:
        forget_recovery_codes(db, user_id)
    return True


def forget_recovery_codes(db: Session, user_id: str) -> None:
    """The last factor went: no factor is left for the codes to stand in for."""
    store.delete_recovery_codes(db, user_id)


def reseal(db: Session, old: Sealer, new: Sealer) -> int:
    """Re-encrypt every TOTP seed under a new KEK (`idp keys rewrap`)."""
    rows = store.all_totp(db)
    for row in rows:
        aad = _aad(row.user_id)
        store.reseal_totp(db, row.user_id, new.seal(old.open(row.sealed_seed, aad), aad))
    return len(rows)


# --- recovery codes ----------------------------------------------------------------------------


def _code_hash(code: str) -> str:
    return hashlib.sha256(_NOT_BASE32.sub("", code.lower()).encode()).hexdigest()


def new_recovery_codes(db: Session, user_id: str, ip: str | None) -> list[str]:
    """Ten new codes, shown once (grouped for reading); the old set is void."""
    codes = [
        "".join(secrets.choice(_BASE32) for _ in range(RECOVERY_CODE_CHARS))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    store.replace_recovery_codes(db, user_id, [_code_hash(c) for c in codes])
    record(db, AuditEvent.RECOVERY_CODES_CREATED, ip=ip, user_id=user_id, count=len(codes))
    return ["-".join(c[i : i + 4] for i in range(0, len(c), 4)) for c in codes]


def use_recovery_code(db: Session, user_id: str, code: str, ip: str | None) -> bool:
    """Consume one code (case, spaces and dashes do not matter); audited with what is left."""
    cleaned = _NOT_BASE32.sub("", code.lower())
    if len(cleaned) != RECOVERY_CODE_CHARS or not store.consume_recovery_code(
        db, user_id, _code_hash(cleaned)
    ):
        return False
    left = store.recovery_codes_left(db, user_id)
    record(db, AuditEvent.RECOVERY_CODE_USED, ip=ip, user_id=user_id, remaining=left)
    return True


# --- administration ----------------------------------------------------------------------------


def reset(db: Session, user_id: str, actor: str | None = None) -> Factors:
    """Remove every second factor of a user (an administrator's doing: `actor`); returns what
    was there."""
    before = factors_of(db, user_id)
    store.delete_totp(db, user_id)
    store.delete_recovery_codes(db, user_id)
    for credential in credentials.of_user(db, user_id):
        credentials.remove(db, user_id, credential.id)
    record(
        db,
        AuditEvent.MFA_RESET,
        user_id=user_id,
        actor=actor,
        app=before.totp,
        passkeys=before.passkeys,
        recovery=before.recovery_codes,
    )
    return before
