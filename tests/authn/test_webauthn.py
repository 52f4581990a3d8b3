"""W3C Web Authentication Level 3 as the relying party checks it (idp/authn/webauthn.py,
idp/store/webauthn.py): registration (§7.1), authentication (§7.2), the signature counter
(§6.1.1), single-use challenges (§13.4.3), and the amr values a credential earns (RFC 8176).

A software authenticator (tests/webauthn_authenticator.py) plays the browser and the key.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.authn import webauthn
from idp.authn.webauthn import SignCountRegressed, WebAuthnRefused
from idp.security.secrets import b64url_encode, sha256_hex
from idp.settings import Settings
from idp.store import interactions, sessions, webauthn as store
from idp.store.audit import AuditRecord
from idp.store.base import now
from idp.store.interactions import Interaction
from idp.store.users import User
from idp.store.webauthn import WebAuthnCredential
from tests.helpers import Harness
from tests.webauthn_authenticator import SoftAuthenticator


@pytest.fixture
def user_ids(idp: Harness) -> tuple[str, str]:
    """Alice and Bob, made before the test's transaction opens (on SQLite it holds the lock)."""
    return idp.user(), idp.user("bob@example.com")


@pytest.fixture
def db(idp: Harness, user_ids: tuple[str, str]) -> Iterator[Session]:
    """One transaction, committed at the end of the test (as a request's would be)."""
    with idp.runtime.sessions.begin() as session:
        yield session


@pytest.fixture
def alice(db: Session, user_ids: tuple[str, str]) -> User:
    user = db.get(User, user_ids[0])
    assert user is not None
    return user


@pytest.fixture
def bob(db: Session, user_ids: tuple[str, str]) -> User:
    user = db.get(User, user_ids[1])
    assert user is not None
    return user


def enrol(
    db: Session, settings: Settings, user: User, key: SoftAuthenticator, name: str = ""
) -> WebAuthnCredential:
    options, challenge = webauthn.registration_options(settings, user, store.of_user(db, user.id))
    return webauthn.register(db, settings, user, name, key.create(options), challenge)


def sign_in(
    db: Session,
    settings: Settings,
    key: SoftAuthenticator,
    user_id: str | None,
    require_uv: bool = False,
    **overrides: object,
) -> webauthn.Authenticated:
    allow = None if user_id is None else store.of_user(db, user_id)
    options, challenge = webauthn.authentication_options(
        settings, allow, "required" if require_uv else "preferred"
    )
    answer = key.get(options, **overrides)  # type: ignore[arg-type]
    return webauthn.verify_authentication(db, settings, answer, challenge, require_uv, user_id)


def events(idp: Harness, event: str) -> list[AuditRecord]:
    with idp.runtime.sessions() as fresh:
        return list(fresh.scalars(select(AuditRecord).where(AuditRecord.event == event)))


# --- registration -----------------------------------------------------------------------------


def test_registration_stores_the_credential(
    idp: Harness, db: Session, settings: Settings, alice: User
) -> None:
    """§7.1: a create() answer with the expected type, challenge, origin and rpIdHash, UP set,
    and attested credential data registers the credential with its key, counter and flags."""
    key = SoftAuthenticator(backup_eligible=True, backed_up=True)
    row = enrol(db, settings, alice, key)
    assert row.credential_id == key.id
    assert row.user_id == alice.id
    assert (row.backup_eligible, row.backed_up, row.discoverable) == (True, True, True)
    assert row.name == "Passkey"
    assert row.aaguid is None  # attestation "none": the all-zero AAGUID says nothing
    assert store.by_credential_id(db, key.id) is row
    assert store.count_of(db, alice.id) == 1
    db.commit()
    assert [e.user_id for e in events(idp, "webauthn.registered")] == [alice.id]


def test_options_name_the_rp_and_the_user_handle(settings: Settings, alice: User) -> None:
    """§5.4: rp.id is the issuer's host, user.id an opaque handle (§14.6.1: not the email);
    §5.4.4: a resident key and user verification are preferred; attestation "none"."""
    options, challenge = webauthn.registration_options(settings, alice, [])
    body = json.loads(options)
    assert body["rp"]["id"] == "testserver" == webauthn.rp_id(settings)
    assert webauthn.origin(settings) == "https://testserver"
    assert body["challenge"] == challenge
    assert body["user"]["id"] == b64url_encode(uuid.UUID(alice.id).bytes)
    assert body["extensions"] == {"credProps": True}
    assert body["authenticatorSelection"]["residentKey"] == "preferred"
    assert body["authenticatorSelection"]["userVerification"] == "preferred"
    assert body["attestation"] == "none"
    assert [p["alg"] for p in body["pubKeyCredParams"]] == [-7, -8, -257]


def test_options_exclude_and_allow_the_users_credentials(
    db: Session, settings: Settings, alice: User
) -> None:
    """§5.4 excludeCredentials: a second registration on the same authenticator is prevented;
    §5.5 allowCredentials: the user's credentials for a second factor, none (any discoverable
    credential) for passwordless, with the user verification asked."""
    key = SoftAuthenticator()
    enrol(db, settings, alice, key)
    mine = store.of_user(db, alice.id)
    options, _ = webauthn.registration_options(settings, alice, mine)
    assert [c["id"] for c in json.loads(options)["excludeCredentials"]] == [key.id]
    options, _ = webauthn.authentication_options(settings, mine, "preferred")
    body = json.loads(options)
    assert [c["id"] for c in body["allowCredentials"]] == [key.id]
    assert (body["rpId"], body["userVerification"]) == ("testserver", "preferred")
    options, _ = webauthn.authentication_options(settings, None, "required")
    body = json.loads(options)
    assert (body["allowCredentials"], body["userVerification"]) == ([], "required")


def test_origin_leaves_out_the_default_port_and_the_path(settings: Settings) -> None:
    """§4 (RP ID) and HTML's origin: scheme://host[:port], no path; the RP ID is the host."""
    for issuer, origin, rp in [
        ("https://localhost:8443", "https://localhost:8443", "localhost"),
        ("https://id.example.com:443/tenant", "https://id.example.com", "id.example.com"),
        ("http://localhost:8000", "http://localhost:8000", "localhost"),
    ]:
        other = settings.model_copy(update={"issuer": issuer})
        assert (webauthn.origin(other), webauthn.rp_id(other)) == (origin, rp)


def test_registration_from_another_origin_is_refused(
    db: Session, settings: Settings, alice: User
) -> None:
    """§7.1: verify that C.origin is an origin the relying party expects."""
    options, challenge = webauthn.registration_options(settings, alice, [])
    answer = SoftAuthenticator().create(options, origin="https://evil.example")
    with pytest.raises(WebAuthnRefused) as refused:
        webauthn.register(db, settings, alice, "", answer, challenge)
    assert refused.value.kind == "origin"
    assert store.count_of(db, alice.id) == 0


def test_registration_for_another_rp_id_is_refused(
    db: Session, settings: Settings, alice: User
) -> None:
    """§7.1: verify that rpIdHash in authData is the SHA-256 of the RP ID expected."""
    options, challenge = webauthn.registration_options(settings, alice, [])
    answer = SoftAuthenticator().create(options, rp_id="evil.example")
    with pytest.raises(WebAuthnRefused) as refused:
        webauthn.verify_registration(settings, answer, challenge)
    assert refused.value.kind == "rp_id"


def test_registration_with_another_challenge_is_refused(
    db: Session, settings: Settings, alice: User
) -> None:
    """§7.1: verify that C.challenge equals the challenge sent in the options; a missing
    (already taken, expired) challenge refuses too."""
    options, _ = webauthn.registration_options(settings, alice, [])
    _, other = webauthn.registration_options(settings, alice, [])
    answer = SoftAuthenticator().create(options)
    for challenge in (other, None):
        with pytest.raises(WebAuthnRefused) as refused:
            webauthn.verify_registration(settings, answer, challenge)
        assert refused.value.kind == "challenge"


def test_an_assertion_is_no_registration(db: Session, settings: Settings, alice: User) -> None:
    """§7.1: verify that C.type is webauthn.create."""
    options, challenge = webauthn.registration_options(settings, alice, [])
    answer = SoftAuthenticator().create(options, kind="webauthn.get")
    with pytest.raises(WebAuthnRefused):
        webauthn.verify_registration(settings, answer, challenge)


def test_a_credential_registers_once(
    db: Session, settings: Settings, alice: User, bob: User
) -> None:
    """§7.1: if the credential id is already registered, the relying party SHOULD fail the
    ceremony (to anyone: a credential belongs to one account)."""
    key = SoftAuthenticator()
    enrol(db, settings, alice, key)
    for user in (alice, bob):
        with pytest.raises(WebAuthnRefused) as refused:
            enrol(db, settings, user, key)
        assert refused.value.kind == "duplicate"


def test_names_are_stripped_bounded_and_defaulted(
    db: Session, settings: Settings, alice: User
) -> None:
    """A credential's name is 1 to 100 printable characters; none given, a numbered default."""
    assert enrol(db, settings, alice, SoftAuthenticator(), "  Laptop ").name == "Laptop"
    assert enrol(db, settings, alice, SoftAuthenticator()).name == "Passkey"
    assert enrol(db, settings, alice, SoftAuthenticator()).name == "Passkey 2"
    assert enrol(db, settings, alice, SoftAuthenticator(resident=False)).name == "Security key"
    with pytest.raises(WebAuthnRefused):
        enrol(db, settings, alice, SoftAuthenticator(), "x" * 101)
    row = store.of_user(db, alice.id)[0]
    assert webauthn.rename(db, alice, row.id, " Work ")
    with pytest.raises(WebAuthnRefused):
        webauthn.rename(db, alice, row.id, "   ")


def test_removal_is_the_owners_and_audited(
    idp: Harness, db: Session, settings: Settings, alice: User, bob: User
) -> None:
    """Only the owner removes a credential; each removal is an audit event."""
    row = enrol(db, settings, alice, SoftAuthenticator())
    assert not webauthn.remove(db, bob, row.id)
    assert webauthn.remove(db, alice, row.id)
    assert not webauthn.remove(db, alice, row.id)
    assert store.count_of(db, alice.id) == 0
    db.commit()
    assert [e.detail["credential"] for e in events(idp, "webauthn.removed")] == [row.id]


# --- authentication ---------------------------------------------------------------------------


def test_second_factor_assertion_advances_the_counter(
    db: Session, settings: Settings, alice: User
) -> None:
    """§7.2: a get() answer with the expected challenge, origin and rpIdHash, signed by the
    credential's key, authenticates; §6.1.1: the stored counter becomes the new one."""
    key = SoftAuthenticator()
    row = enrol(db, settings, alice, key)
    done = sign_in(db, settings, key, alice.id)
    assert done.credential.id == row.id and done.user_verified
    assert done.credential.sign_count == 1 and done.credential.last_used_at is not None
    assert sign_in(db, settings, key, alice.id).credential.sign_count == 2


def test_assertion_from_another_origin_or_rp_id_is_refused(
    db: Session, settings: Settings, alice: User
) -> None:
    """§7.2: verify C.origin, and that rpIdHash is the SHA-256 of the RP ID expected."""
    key = SoftAuthenticator()
    enrol(db, settings, alice, key)
    with pytest.raises(WebAuthnRefused) as refused:
        sign_in(db, settings, key, alice.id, origin="https://evil.example")
    assert refused.value.kind == "origin"
    with pytest.raises(WebAuthnRefused) as refused:
        sign_in(db, settings, key, alice.id, rp_id="evil.example")
    assert refused.value.kind == "rp_id"


def test_assertion_with_another_challenge_is_refused(
    db: Session, settings: Settings, alice: User
) -> None:
    """§7.2: verify that C.challenge equals the challenge of the options."""
    key = SoftAuthenticator()
    enrol(db, settings, alice, key)
    options, _ = webauthn.authentication_options(settings, None, "preferred")
    _, other = webauthn.authentication_options(settings, None, "preferred")
    with pytest.raises(WebAuthnRefused) as refused:
        webauthn.verify_authentication(db, settings, key.get(options), other, False, alice.id)
    assert refused.value.kind == "challenge"


def test_a_forged_signature_is_refused(db: Session, settings: Settings, alice: User) -> None:
    """§7.2: verify sig over authData ‖ hash(clientDataJSON) with the credential's public key."""
    key = SoftAuthenticator()
    enrol(db, settings, alice, key)
    impostor = SoftAuthenticator(credential_id=key.credential_id, user_handle=key.user_handle)
    with pytest.raises(WebAuthnRefused) as refused:
        sign_in(db, settings, impostor, alice.id)
    assert refused.value.kind == "signature"


def test_credential_of_another_user_is_refused(
    db: Session, settings: Settings, alice: User, bob: User
) -> None:
    """§7.2: the credential must be one of the identified user's (step: credential.id in
    allowCredentials / owned by the user); an unknown credential is refused alike."""
    key = SoftAuthenticator()
    enrol(db, settings, alice, key)
    with pytest.raises(WebAuthnRefused) as refused:
        sign_in(db, settings, key, bob.id)
    assert refused.value.kind == "unknown"
    with pytest.raises(WebAuthnRefused):
        sign_in(db, settings, SoftAuthenticator(), alice.id)


def test_passwordless_needs_a_user_handle_of_the_owner(
    db: Session, settings: Settings, alice: User, bob: User
) -> None:
    """§7.2: with no user identified before the ceremony, response.userHandle must be present
    and name the account that holds the credential."""
    key = SoftAuthenticator(backup_eligible=True, counts=False)
    enrol(db, settings, alice, key)
    assert sign_in(db, settings, key, None, require_uv=True).credential.user_id == alice.id
    for wrong in ({"send_user_handle": False}, {"user_handle": webauthn.user_handle(bob.id)}):
        with pytest.raises(WebAuthnRefused) as refused:
            sign_in(db, settings, key, None, require_uv=True, **wrong)
        assert refused.value.kind == "unknown"


def test_passwordless_without_user_verification_is_refused(
    db: Session, settings: Settings, alice: User
) -> None:
    """§7.2: if user verification is required, verify that the UV flag is set."""
    key = SoftAuthenticator(backup_eligible=True, counts=False)
    enrol(db, settings, alice, key)
    key.user_verified = False
    with pytest.raises(WebAuthnRefused) as refused:
        sign_in(db, settings, key, None, require_uv=True)
    assert refused.value.kind == "user_verification"
    # As a second factor (UV preferred), presence alone is enough.
    assert not sign_in(db, settings, key, alice.id).user_verified


def test_backup_eligibility_cannot_change(db: Session, settings: Settings, alice: User) -> None:
    """§7.2: if the credential record is backup eligible, verify that BE is set, and if not,
    that it is not; the backup state (BS) may change and is kept."""
    key = SoftAuthenticator()
    enrol(db, settings, alice, key)
    key.backup_eligible = True
    with pytest.raises(WebAuthnRefused) as refused:
        sign_in(db, settings, key, alice.id)
    assert refused.value.kind == "backup_eligibility"
    synced = SoftAuthenticator(backup_eligible=True, counts=False)
    enrol(db, settings, alice, synced)
    synced.backed_up = True
    assert sign_in(db, settings, synced, alice.id).credential.backed_up


def test_sign_count_regression_is_refused_and_audited(
    idp: Harness, settings: Settings, alice: User, db: Session
) -> None:
    """§6.1.1, §7.2: a counter not greater than the stored one signals a cloned authenticator:
    the ceremony fails and the event is audited; the audit survives when the caller catches the
    refusal and commits (as it must: see idp/authn/webauthn.py)."""
    key = SoftAuthenticator(sign_count=5)
    row = enrol(db, settings, alice, key)
    db.commit()
    with idp.runtime.sessions.begin() as request:
        with pytest.raises(SignCountRegressed) as refused:
            sign_in(request, settings, key, alice.id, sign_count=5)
        assert refused.value.kind == "sign_count"
    audited = events(idp, "webauthn.sign_count_regressed")
    assert [(e.user_id, e.detail["credential"]) for e in audited] == [(alice.id, row.id)]
    assert audited[0].detail["stored_count"] == 5
    with idp.runtime.sessions() as fresh:
        assert fresh.get(WebAuthnCredential, row.id).sign_count == 5  # type: ignore[union-attr]


def test_a_counter_that_stays_zero_is_accepted(
    db: Session, settings: Settings, alice: User
) -> None:
    """§6.1.1: an authenticator that implements no counter sends 0 every time (synced passkeys
    do); 0 after 0 is no regression, but 0 after a counted use is."""
    key = SoftAuthenticator(backup_eligible=True, counts=False)
    enrol(db, settings, alice, key)
    for _ in range(3):
        assert sign_in(db, settings, key, alice.id).credential.sign_count == 0
    assert sign_in(db, settings, key, alice.id, sign_count=7).credential.sign_count == 7
    with pytest.raises(SignCountRegressed):
        sign_in(db, settings, key, alice.id, sign_count=0)


def test_parallel_assertions_with_one_counter_cannot_both_pass(
    idp: Harness, settings: Settings, alice: User, db: Session
) -> None:
    """§6.1.1: the counter advances in one conditional UPDATE, so of two transactions that
    present the same counter at once exactly one wins."""
    row = enrol(db, settings, alice, SoftAuthenticator())
    db.commit()
    barrier = threading.Barrier(2)

    def advance() -> bool:
        with idp.runtime.sessions.begin() as own:
            barrier.wait(timeout=10)
            return store.advance_sign_count(own, row.id, 3)

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(lambda _: advance(), range(2)))
    assert results == [False, True]
    with idp.runtime.sessions.begin() as own:
        assert not store.advance_sign_count(own, row.id, 3)
        assert not store.advance_sign_count(own, row.id, 2)
        assert store.advance_sign_count(own, row.id, 4)


# --- challenges -------------------------------------------------------------------------------


def test_interaction_challenge_is_taken_once(idp: Harness, db: Session) -> None:
    """§13.4.3: a challenge is used once; a second take finds nothing, nor does an expired one."""
    interaction_id = interactions.start(db, "browser", None, [], 600, None)
    id_hash = sha256_hex(interaction_id)
    row = db.get(Interaction, id_hash)
    assert row is not None
    store.put_interaction_challenge(db, row, "first")
    store.put_interaction_challenge(db, id_hash, "second")  # the latest options win
    assert row.challenge == "second"
    assert store.take_interaction_challenge(db, id_hash) == "second"
    assert store.take_interaction_challenge(db, id_hash) is None
    store.put_interaction_challenge(db, id_hash, "stale")
    db.execute(
        update(Interaction)
        .where(Interaction.id_hash == id_hash)
        .values(challenge_expires_at=now() - 1)
    )
    assert store.take_interaction_challenge(db, id_hash) is None
    assert store.take_interaction_challenge(db, sha256_hex("unknown")) is None


def test_parallel_takes_of_one_challenge_yield_it_once(idp: Harness, db: Session) -> None:
    """§13.4.3: two requests answering one challenge at once: only one of them gets it."""
    id_hash = sha256_hex(interactions.start(db, "browser", None, [], 600, None))
    store.put_interaction_challenge(db, id_hash, "only-once")
    db.commit()
    barrier = threading.Barrier(2)

    def take() -> str | None:
        with idp.runtime.sessions.begin() as own:
            barrier.wait(timeout=10)
            return store.take_interaction_challenge(own, id_hash)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: take(), range(2)))
    assert sorted(results, key=str) == [None, "only-once"]


def test_session_challenge_is_taken_once(db: Session, alice: User) -> None:
    """§13.4.3: the same for a registration challenge kept on the browser session."""
    _, row = sessions.start(db, alice.id, ["pwd"], "1", 3600)
    store.put_session_challenge(db, row, "c1")
    assert store.take_session_challenge(db, row.id_hash) == "c1"
    assert store.take_session_challenge(db, row.id_hash) is None
    store.put_session_challenge(db, row.id_hash, "c2")
    db.execute(
        update(sessions.BrowserSession)
        .where(sessions.BrowserSession.id_hash == row.id_hash)
        .values(challenge_expires_at=now())
    )
    assert store.take_session_challenge(db, row.id_hash) is None


def test_a_replayed_registration_finds_no_challenge(
    db: Session, settings: Settings, alice: User
) -> None:
    """§13.4.3: the answer to a taken challenge cannot be submitted again."""
    _, session = sessions.start(db, alice.id, ["pwd"], "1", 3600)
    options, challenge = webauthn.registration_options(settings, alice, [])
    store.put_session_challenge(db, session, challenge)
    answer = SoftAuthenticator().create(options)
    taken = store.take_session_challenge(db, session.id_hash)
    webauthn.register(db, settings, alice, "", answer, taken)
    with pytest.raises(WebAuthnRefused) as refused:
        webauthn.register(
            db, settings, alice, "", answer, store.take_session_challenge(db, session.id_hash)
        )
    assert refused.value.kind == "challenge"


# --- amr and hostile input --------------------------------------------------------------------


def test_amr_for_a_credential() -> None:
    """RFC 8176 §2: `swk` for a key that may leave its device (backup eligible, WebAuthn L3
    §6.1.3), `hwk` for a device-bound one; user verification adds `user` and `mfa`."""

    def cred(backup_eligible: bool) -> WebAuthnCredential:
        return WebAuthnCredential(backup_eligible=backup_eligible)

    assert webauthn.amr_for(cred(True), True) == ["swk", "user", "mfa"]
    assert webauthn.amr_for(cred(True), False) == ["swk"]
    assert webauthn.amr_for(cred(False), True) == ["hwk", "user", "mfa"]
    assert webauthn.amr_for(cred(False), False) == ["hwk"]


GARBAGE = [
    "",
    "null",
    "[]",
    "{}",
    "not json",
    '{"id": 1}',
    '{"id": "AA", "rawId": "AA", "type": "public-key", "response": {}}',
    '{"id": "AA", "rawId": "AA", "type": "public-key", "response": {"clientDataJSON": "!!",'
    ' "attestationObject": "@@", "authenticatorData": "##", "signature": "$$"}}',
    '{"id": "AA", "rawId": "AA", "type": "public-key", "response": {"clientDataJSON": "e30",'
    ' "attestationObject": "oA", "authenticatorData": "AA", "signature": "AA",'
    ' "userHandle": 5}}',
    '{"id": "AA", "rawId": "AA", "type": "other", "response": {"clientDataJSON": "e30",'
    ' "attestationObject": "oA", "authenticatorData": "AA", "signature": "AA"}}',
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_is_refused_not_an_error(
    db: Session, settings: Settings, alice: User, garbage: str
) -> None:
    """Any answer that is not a well-formed credential fails the ceremony as WebAuthnRefused,
    never as another exception (which would be a 500)."""
    _, challenge = webauthn.registration_options(settings, alice, [])
    with pytest.raises(WebAuthnRefused):
        webauthn.verify_registration(settings, garbage, challenge)
    with pytest.raises(WebAuthnRefused):
        webauthn.verify_authentication(db, settings, garbage, challenge, False, None)


def test_mangled_fields_of_a_real_answer_are_refused(
    db: Session, settings: Settings, alice: User
) -> None:
    """The same for an answer that parses but whose binary parts are cut short."""
    key = SoftAuthenticator()
    options, challenge = webauthn.registration_options(settings, alice, [])
    good = json.loads(key.create(options))
    for field in ("clientDataJSON", "attestationObject"):
        broken = json.loads(json.dumps(good))
        broken["response"][field] = broken["response"][field][:10]
        with pytest.raises(WebAuthnRefused):
            webauthn.verify_registration(settings, json.dumps(broken), challenge)
    enrol(db, settings, alice, key)
    options, challenge = webauthn.authentication_options(settings, None, "preferred")
    good = json.loads(key.get(options))
    for field in ("clientDataJSON", "authenticatorData", "signature"):
        broken = json.loads(json.dumps(good))
        broken["response"][field] = broken["response"][field][:10]
        with pytest.raises(WebAuthnRefused):
            webauthn.verify_authentication(
                db, settings, json.dumps(broken), challenge, False, alice.id
            )
