"""WebAuthn as a factor: register a credential, and verify an assertion made with it.

py_webauthn does the ceremony checks of W3C WebAuthn L3 §7.1 (registration) and §7.2
(authentication); this module chooses the options, finds the credential, judges the signature
counter atomically, and turns every failure into one `WebAuthnRefused` with a reason that is
safe to show. Nothing here speaks HTTP or commits.

Transactions: a refusal is raised, so the caller must catch `WebAuthnRefused` and answer with a
response (a page, a JSON error) rather than let it propagate, or the request's transaction
rolls back and takes with it the challenge that was taken (it could be replayed) and, for
`SignCountRegressed`, the audit event that was recorded before the raise.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from idp.audit.events import AuditEvent, record
from idp.ops.logs import loggable
from idp.security.secrets import b64url_decode, b64url_encode
from idp.settings import Settings
from idp.store import webauthn as store
from idp.store.users import User
from idp.store.webauthn import CHALLENGE_TTL, WebAuthnCredential

__all__ = [
    "Authenticated",
    "Registered",
    "SignCountRegressed",
    "WebAuthnRefused",
    "amr_for",
    "authentication_options",
    "origin",
    "register",
    "registration_options",
    "remove",
    "rename",
    "rp_id",
    "verify_authentication",
    "verify_registration",
]

if TYPE_CHECKING:
    from webauthn.helpers.structs import AuthenticationCredential, PublicKeyCredentialDescriptor

log = logging.getLogger("idp.authn.webauthn")

# py_webauthn is imported by the ceremonies, not with this module: most processes never run
# one, and the library with its dependencies is 5 MiB resident (measured).

# COSE algorithm identifiers (RFC 9053): ES256 first, as every FIDO2 authenticator supports it;
# then EdDSA and RS256.
ALGORITHMS = (-7, -8, -257)
CHALLENGE_BYTES = 32  # WebAuthn L3 §13.4.3: at least 16 random bytes
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn L3 §7.1: longer ids are refused
MAX_NAME = 100
DEFAULT_NAMES = ("Passkey", "Security key")
ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"


class WebAuthnRefused(Exception):
    """A ceremony failed. `reason` is one line that is safe to show; `kind` is a short slug
    for the audit trail and for tests."""

    def __init__(self, reason: str, kind: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class SignCountRegressed(WebAuthnRefused):
    """The assertion was genuine but its counter did not advance (WebAuthn L3 §6.1.1)."""


@dataclass(frozen=True)
class Registered:
    """A verified new credential, ready to store."""

    credential_id: str  # base64url
    public_key: bytes  # COSE_Key
    sign_count: int
    transports: list[str]
    aaguid: str | None
    backup_eligible: bool
    backed_up: bool
    discoverable: bool
    user_verified: bool


@dataclass(frozen=True)
class Authenticated:
    credential: WebAuthnCredential
    user_verified: bool


# English, one line each; a page shows its own (translated) words for a `kind` it knows.
_STALE = "This request has expired or was already used. Please try again."
_REGRESSED = "This security key's counter went backwards."
# Library messages, matched by their wording, mapped to what a person can be told.
_REASONS: list[tuple[str, str, str]] = [
    ("challenge", "challenge", _STALE),
    ("origin", "origin", "This security key answered for another site."),
    ("rp id", "rp_id", "This security key answered for another site."),
    (
        "verification",
        "user_verification",
        "Your security key did not verify you (PIN or biometric). Please try again.",
    ),
    ("signature", "signature", "The security key's signature is not valid."),
]
_MALFORMED = ("malformed", "The security key's answer could not be read.")


def rp_id(settings: Settings) -> str:
    """The RP ID (WebAuthn L3 §4, "RP ID"): the issuer's host. An issuer with a path shares the
    host's credentials; WebAuthn scopes them to hosts, not paths."""
    return (urlsplit(settings.issuer).hostname or "").lower()


def origin(settings: Settings) -> str:
    """The origin the browser reports in clientDataJSON: scheme://host[:port], default port
    left out as browsers do (HTML's serialisation of an origin)."""
    parts = urlsplit(settings.issuer)
    port = parts.port
    default = {"https": 443, "http": 80}.get(parts.scheme)
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{rp_id(settings)}{suffix}"


def _refused(exc: Exception, ceremony: str) -> WebAuthnRefused:
    message = str(exc).lower()
    log.info("webauthn %s refused: %s: %s", ceremony, type(exc).__name__, loggable(message))
    for needle, kind, reason in _REASONS:
        if needle in message:
            return WebAuthnRefused(reason, kind)
    return WebAuthnRefused(_MALFORMED[1], _MALFORMED[0])


def _challenge_bytes(challenge: str | None) -> bytes:
    if not challenge:
        raise WebAuthnRefused(_STALE, "challenge")
    return b64url_decode(challenge)


def _algorithms() -> list[Any]:
    from webauthn.helpers.cose import COSEAlgorithmIdentifier

    return [COSEAlgorithmIdentifier(alg) for alg in ALGORITHMS]


def _descriptors(credentials: list[WebAuthnCredential]) -> list[PublicKeyCredentialDescriptor]:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=b64url_decode(c.credential_id),
            transports=[AuthenticatorTransport(t) for t in c.transports if t in known],
        )
        for c in credentials
    ]


def user_handle(user_id: str) -> bytes:
    """The user handle (WebAuthn L3 §14.6.1: no personal data): the 16 bytes of the UUID."""
    return uuid.UUID(user_id).bytes


def registration_options(
    settings: Settings, user: User, existing: list[WebAuthnCredential]
) -> tuple[str, str]:
    """Options for navigator.credentials.create() as JSON, and the challenge (base64url) to
    store with the session or interaction that asked."""
    from webauthn import generate_registration_options
    from webauthn.helpers import options_to_json_dict
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    challenge = os.urandom(CHALLENGE_BYTES)
    options = generate_registration_options(
        rp_id=rp_id(settings),
        rp_name=settings.display_name or rp_id(settings),
        user_name=user.email,
        user_id=user_handle(user.id),
        user_display_name=user.name or user.email,
        challenge=challenge,
        timeout=CHALLENGE_TTL * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        # WebAuthn L3 §5.4: an authenticator that already holds one of these refuses to make
        # a second credential for the same account.
        exclude_credentials=_descriptors(existing),
        supported_pub_key_algs=_algorithms(),
    )
    body = options_to_json_dict(options)
    # credProps (WebAuthn L3 §10.1.3) tells whether the key was made discoverable, which the
    # resident-key preference leaves open.
    body["extensions"] = {"credProps": True}
    return json.dumps(body), b64url_encode(challenge)


def _client_said_resident(raw: dict[str, Any]) -> bool:
    results = raw.get("clientExtensionResults")
    props = results.get("credProps") if isinstance(results, dict) else None
    return isinstance(props, dict) and props.get("rk") is True


def verify_registration(
    settings: Settings, response_json: str, challenge: str | None
) -> Registered:
    """Check a navigator.credentials.create() answer (WebAuthn L3 §7.1) against the challenge
    taken for it; WebAuthnRefused on any failure."""
    from webauthn import verify_registration_response
    from webauthn.helpers.structs import CredentialDeviceType

    try:
        expected = _challenge_bytes(challenge)
        raw = json.loads(response_json)
        if not isinstance(raw, dict):
            raise ValueError("malformed: not a JSON object")
        verified = verify_registration_response(
            credential=raw,
            expected_challenge=expected,
            expected_rp_id=rp_id(settings),
            expected_origin=origin(settings),
            supported_pub_key_algs=_algorithms(),
        )
        transports = raw["response"].get("transports") or []
    except WebAuthnRefused:
        raise
    except Exception as exc:  # the library raises its own types and also bare parse errors
        raise _refused(exc, "registration") from exc
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise WebAuthnRefused(_MALFORMED[1], "credential_id")
    return Registered(
        credential_id=b64url_encode(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[t for t in transports if isinstance(t, str)][:8],
        aaguid=None if verified.aaguid == ZERO_AAGUID else verified.aaguid,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        discoverable=_client_said_resident(raw),
        user_verified=verified.user_verified,
    )


def authentication_options(
    settings: Settings,
    allow: list[WebAuthnCredential] | None,
    user_verification: Literal["required", "preferred"],
) -> tuple[str, str]:
    """Options for navigator.credentials.get() as JSON, and the challenge (base64url). `allow`
    None: any discoverable credential (passwordless, WebAuthn L3 §5.5 with empty
    allowCredentials)."""
    from webauthn import generate_authentication_options
    from webauthn.helpers import options_to_json_dict
    from webauthn.helpers.structs import UserVerificationRequirement

    challenge = os.urandom(CHALLENGE_BYTES)
    options = generate_authentication_options(
        rp_id=rp_id(settings),
        challenge=challenge,
        timeout=CHALLENGE_TTL * 1000,
        allow_credentials=_descriptors(allow or []),
        user_verification=UserVerificationRequirement(user_verification),
    )
    return json.dumps(options_to_json_dict(options)), b64url_encode(challenge)


def _parse_assertion(response_json: str) -> AuthenticationCredential:
    from webauthn.helpers import parse_authentication_credential_json

    try:
        return parse_authentication_credential_json(response_json)
    except Exception as exc:
        raise _refused(exc, "authentication") from exc


def _find_credential(
    db: Session, parsed: AuthenticationCredential, user_id: str | None
) -> WebAuthnCredential:
    """The stored credential the assertion names, if the person signing in may use it."""
    unknown = WebAuthnRefused("This security key is not registered for this account.", "unknown")
    credential = store.by_credential_id(db, b64url_encode(parsed.raw_id))
    if credential is None:
        raise unknown
    # WebAuthn L3 §7.2 step 6: the credential must be the identified user's; with nobody
    # identified (passwordless), the user handle must be present and name its owner.
    if user_id is not None and credential.user_id != user_id:
        raise unknown
    handle = parsed.response.user_handle
    if user_id is None and not handle:
        raise unknown
    if handle and handle != user_handle(credential.user_id):
        raise unknown
    return credential


def verify_authentication(
    db: Session,
    settings: Settings,
    response_json: str,
    challenge: str | None,
    require_user_verification: bool,
    user_id: str | None,
) -> Authenticated:
    """Check a navigator.credentials.get() answer (WebAuthn L3 §7.2) against the challenge taken
    for it, and advance the credential's counter. `user_id`: who is signing in (second factor),
    or None (passwordless). WebAuthnRefused on any failure; SignCountRegressed after recording
    the audit event in `db` (see the module docstring: the caller must commit it)."""
    from webauthn import verify_authentication_response
    from webauthn.helpers.structs import CredentialDeviceType

    parsed = _parse_assertion(response_json)
    credential = _find_credential(db, parsed, user_id)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=_challenge_bytes(challenge),
            expected_rp_id=rp_id(settings),
            expected_origin=origin(settings),
            credential_public_key=credential.public_key,
            # 0 switches the library's own counter check off: it would read the stored count
            # before the signature is verified and outside any lock; advance_sign_count below
            # judges it in one UPDATE, after the signature, so of two racing assertions one wins.
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except WebAuthnRefused:
        raise
    except Exception as exc:
        raise _refused(exc, "authentication") from exc
    # WebAuthn L3 §7.2: backup eligibility is fixed when the credential is made.
    if (verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE) != (
        credential.backup_eligible
    ):
        raise WebAuthnRefused(_MALFORMED[1], "backup_eligibility")
    stored = credential.sign_count
    if not store.advance_sign_count(db, credential.id, verified.new_sign_count):
        record(
            db,
            AuditEvent.WEBAUTHN_SIGN_COUNT_REGRESSED,
            user_id=credential.user_id,
            credential=credential.id,
            stored_count=stored,
            received_count=verified.new_sign_count,
        )
        raise SignCountRegressed(_REGRESSED, "sign_count")
    db.refresh(credential)  # advance_sign_count bypassed the ORM
    if credential.backed_up != verified.credential_backed_up:
        credential.backed_up = verified.credential_backed_up
    return Authenticated(credential=credential, user_verified=verified.user_verified)


def amr_for(credential: WebAuthnCredential, user_verified: bool) -> list[str]:
    """RFC 8176 values for a sign-in with this credential: `swk` for a key that may be synced
    (backup eligible), `hwk` for one bound to its device; user verification adds `user`, and
    `mfa` as well: the key (possession) unlocked by a PIN or biometric (knowledge, inherence)
    is two factors in one ceremony."""
    amr = ["swk" if credential.backup_eligible else "hwk"]
    if user_verified:
        amr += ["user", "mfa"]
    return amr


def _valid_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME or any(not c.isprintable() for c in name):
        raise WebAuthnRefused(f"A name has 1 to {MAX_NAME} printable characters.", "name")
    return name


def _default_name(db: Session, user_id: str, discoverable: bool) -> str:
    """'Passkey', or 'Passkey 2' and on when the user has one by that name already."""
    base = DEFAULT_NAMES[0] if discoverable else DEFAULT_NAMES[1]
    taken = {c.name for c in store.of_user(db, user_id)}
    number = 1
    name = base
    while name in taken:
        number += 1
        name = f"{base} {number}"
    return name


def register(
    db: Session,
    settings: Settings,
    user: User,
    name: str,
    response_json: str,
    challenge: str | None,
) -> WebAuthnCredential:
    """Verify a registration and store the credential for `user`, audited. `name` is stripped;
    empty means a default ('Passkey', 'Security key'). WebAuthnRefused if the answer fails, the
    name is too long, or the credential is registered already (to anyone)."""
    chosen = _valid_name(name)
    registered = verify_registration(settings, response_json, challenge)
    if store.by_credential_id(db, registered.credential_id) is not None:
        raise WebAuthnRefused("This security key is registered already.", "duplicate")
    row = store.add(
        db,
        user.id,
        registered.credential_id,
        registered.public_key,
        registered.sign_count,
        registered.transports,
        registered.aaguid,
        registered.backup_eligible,
        registered.backed_up,
        registered.discoverable,
        chosen or _default_name(db, user.id, registered.discoverable),
    )
    record(
        db,
        AuditEvent.WEBAUTHN_REGISTERED,
        user_id=user.id,
        credential=row.id,
        aaguid=row.aaguid,
        backup_eligible=row.backup_eligible,
        discoverable=row.discoverable,
    )
    return row


def rename(db: Session, user: User, id: str, name: str) -> bool:
    """Rename one of the user's credentials; False if it is not theirs. WebAuthnRefused for a
    name that is empty or too long."""
    chosen = _valid_name(name)
    if not chosen:
        raise WebAuthnRefused(f"A name has 1 to {MAX_NAME} printable characters.", "name")
    return store.rename(db, user.id, id, chosen)


def remove(db: Session, user: User, id: str) -> bool:
    """Remove one of the user's credentials, audited; False if it is not theirs. Whether the
    account may lose it (its last factor, MFA required) is the caller's policy: see
    store.webauthn.count_of."""
    if not store.remove(db, user.id, id):
        return False
    record(db, AuditEvent.WEBAUTHN_REMOVED, user_id=user.id, credential=id)
    return True
