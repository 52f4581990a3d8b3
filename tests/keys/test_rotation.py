"""The signing-key lifecycle of issue 4 ("Signing keys: JWKS publication and automatic rotation
that never breaks a relying party"): staged → active → retired → removed, emergency revoke, the
automatic schedule, exactly-once under races, keys parsed once per process, keys at rest, the
repository's keys/ folder, and the `idp keys` commands.

The lifecycle's clock is moved by hand (tests.key_helpers.Clock); tokens keep the real clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import text

from idp.app import create_app
from idp.db.engine import make_engine
from idp.db.migrate import upgrade
from idp.keys import ring as keystore_module, rotation as key_rotation
from idp.keys.kek import KeyMaterialError, new_key_encryption_key
from idp.keys.ring import KeyRing
from idp.runtime import Runtime
from idp.security.secrets import DecryptionError, Sealer, b64url_decode, b64url_encode
from idp.settings import Settings
from idp.store.keys import KeyState
from tests.cli_runner import run_cli
from tests.conftest import TEST_KEK, make_settings, migrate
from tests.helpers import Harness
from tests.key_helpers import (
    SERVICE_SCOPES,
    Apps,
    Clock,
    all_rows,
    audit,
    fetch_jwks,
    header,
    in_state,
    jwks_kids,
    maintain,
    published_kids,
    revoke,
    rotate,
    row,
    sealer_for,
    service_token,
    the_active,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def apps() -> Iterator[Apps]:
    built = Apps()
    yield built
    built.close()


@pytest.fixture
def service(idp: Harness) -> Any:
    return idp.client(grant_types=["client_credentials"], scopes=SERVICE_SCOPES, redirect_uris=[])


def userinfo(idp: Harness, access_token: str) -> Any:
    return idp.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def activate_staged(idp: Harness, clock: Clock, kid: str) -> list[str]:
    """Move the clock to the staged key's activation time and let the key ring's tick do it."""
    clock.set(row(idp.runtime, kid).activates_at or 0)
    return idp.runtime.keys.tick()


def verifies(token: str, jwks: Any) -> bool:
    try:
        jwt.decode(token, jwks, algorithms=["RS256"])
    except (JoseError, ValueError):
        return False
    return True


# --- lifecycle ----------------------------------------------------------------------------------


def test_fresh_app_has_exactly_one_active_rs256_key(idp: Harness, service: Any) -> None:
    """Issue 4, Lifecycle ("active: signs new tokens, exactly one per algorithm"; RS256 always):
    a fresh app has one key, ACTIVE, RS256; it is the one published and the one signing."""
    rows = all_rows(idp.runtime)
    assert [(r.alg, r.state) for r in rows] == [("RS256", KeyState.ACTIVE)]
    assert rows[0].activated_at is not None
    assert jwks_kids(idp.http) == {rows[0].kid}
    assert header(service_token(idp, service))["kid"] == rows[0].kid


def test_rotate_stages_a_published_key_that_does_not_sign_yet(
    idp: Harness, clock: Clock, service: Any
) -> None:
    """Issue 4, Lifecycle ("staged: published in the JWKS, not yet signing") and `idp keys
    rotate` ("stage now, activate after the window"): the new key is in /jwks.json at once, new
    tokens still carry the old kid, and it activates one pre-publication window from now."""
    services = idp.runtime
    old = the_active(services).kid
    new = rotate(services)
    services.keys.load()
    assert new != old
    staged = row(services, new)
    assert staged.state == KeyState.STAGED
    assert staged.activates_at == clock.t + services.settings.key_prepublication_seconds
    assert staged.activated_at is None
    assert jwks_kids(idp.http) == {old, new}
    assert header(service_token(idp, service))["kid"] == old
    # A second rotate while one is staged returns it instead of staging another.
    assert rotate(services) == new
    assert len(in_state(services, KeyState.STAGED)) == 1


def test_staged_key_activates_on_time_and_the_old_key_retires(
    idp: Harness, clock: Clock, service: Any
) -> None:
    """Issue 4, Lifecycle ("the old key retires when the new one activates"; "retired: still
    published, verifies only"): one second before activates_at nothing changes; at activates_at
    the key ring's tick activates the staged key, new tokens carry its kid, and the old key is
    RETIRED but still in /jwks.json."""
    services = idp.runtime
    old = the_active(services).kid
    new = rotate(services)
    services.keys.load()
    clock.set((row(services, new).activates_at or 0) - 1)
    assert not any("activated" in action for action in services.keys.tick())
    assert header(service_token(idp, service))["kid"] == old
    assert row(services, new).state == KeyState.STAGED

    done = activate_staged(idp, clock, new)
    assert any(new in action and "activated" in action for action in done), done
    assert header(service_token(idp, service))["kid"] == new
    assert the_active(services).kid == new
    retired = row(services, old)
    assert retired.state == KeyState.RETIRED
    assert retired.retired_at == clock.t
    assert jwks_kids(idp.http) == {old, new}
    assert {d["kid"] for d in audit(services, "key.retired")} == {old}
    assert new in {d["kid"] for d in audit(services, "key.activated")}


def test_retired_key_is_removed_after_its_tokens_expire(
    idp: Harness, clock: Clock, service: Any
) -> None:
    """Issue 4, Lifecycle ("retired ... until every token it signed has expired; then
    removed"): maintain keeps the retired key until remove_after, then removes it from the JWKS
    and from the table, with a key.removed audit row."""
    services = idp.runtime
    old = the_active(services).kid
    new = rotate(services, immediately=True)
    services.keys.load()
    remove_after = row(services, old).remove_after
    assert remove_after is not None
    clock.set(remove_after - 1)
    assert maintain(services) == []
    services.keys.load()
    assert jwks_kids(idp.http) == {old, new}

    clock.set(remove_after)
    done = maintain(services)
    assert any(old in action and "removed" in action for action in done), done
    services.keys.load()
    assert jwks_kids(idp.http) == {new}
    assert old not in {r.kid for r in all_rows(services)}
    assert {d["kid"] for d in audit(services, "key.removed")} == {old}
    assert header(service_token(idp, service))["kid"] == new


def test_retirement_outlasts_the_longest_token_lifetime(idp: Harness, clock: Clock) -> None:
    """Issue 4, Lifecycle ("retired ... until every token it signed has expired"): the retired
    key stays at least as long as the longest lifetime of a token it could have signed: the
    access-token TTL, the ID-token TTL, and a client's own longer access-token TTL."""
    idp.client(
        grant_types=["client_credentials"],
        scopes=SERVICE_SCOPES,
        redirect_uris=[],
        access_token_ttl=7200,
    )
    services = idp.runtime
    old = the_active(services).kid
    rotate(services, immediately=True)
    retired = row(services, old)
    settings = services.settings
    longest = max(settings.access_token_ttl_seconds, settings.id_token_ttl_seconds, 7200)
    assert (retired.remove_after or 0) - (retired.retired_at or 0) >= longest


def test_retirement_covers_workers_that_have_not_reloaded_yet(
    apps: Apps, database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Issue 4, Lifecycle ("retired: still published ... until every token it signed has
    expired"): another worker picks up the activation only on its next refresh, up to
    key_refresh_seconds later, and until then still signs with the retired key. Its last such
    token expires key_refresh_seconds + the longest token lifetime after retirement, so the key
    must stay published at least that long (here refresh 900 s, a valid setting)."""
    settings = make_settings(database_url, tmp_path, key_refresh_seconds=900)
    worker_a = apps.harness(settings)
    worker_b = apps.harness(settings, migrate=False)
    old = the_active(worker_a.runtime).kid
    rp = worker_b.client(
        grant_types=["client_credentials"], scopes=SERVICE_SCOPES, redirect_uris=[]
    )
    new = rotate(worker_a.runtime, immediately=True)
    worker_a.runtime.keys.load()
    # Worker B has not reached its next refresh: it still signs with the retired key.
    assert header(service_token(worker_b, rp))["kid"] == old
    retired = row(worker_a.runtime, old)
    longest = max(settings.access_token_ttl_seconds, settings.id_token_ttl_seconds)
    assert (retired.remove_after or 0) - (retired.retired_at or 0) >= (
        settings.key_refresh_seconds + longest
    ), "the retired key leaves the JWKS while tokens a lagging worker signed are still valid"
    assert new != old


# --- the two relying-party guarantees -----------------------------------------------------------


@pytest.mark.parametrize("how", ["scheduled", "immediate"])
def test_token_signed_before_rotation_verifies_with_jwks_fetched_after(
    idp: Harness, clock: Clock, how: str
) -> None:
    """Issue 4, Tests ("a token signed before a rotation verifies against the JWKS after it")
    and RFC 7517 §5: the retired key stays in the set, so an ID token and an access token signed
    before a rotation (scheduled, or `--now`) verify with a JWKS fetched after it, and /userinfo
    still accepts the access token."""
    idp.user()
    rp = idp.client()
    before = idp.tokens(rp)
    services = idp.runtime
    old = the_active(services).kid
    if how == "scheduled":
        new = rotate(services)
        services.keys.load()
        activate_staged(idp, clock, new)
    else:
        new = rotate(services, immediately=True)
        services.keys.load()
    after_jwks = fetch_jwks(idp.http)
    fresh = idp.tokens(idp.client())
    assert header(fresh["id_token"])["kid"] == new
    for token in (before["id_token"], before["access_token"]):
        assert header(token)["kid"] == old
        jwt.decode(token, after_jwks, algorithms=["RS256"])
    assert userinfo(idp, before["access_token"]).status_code == 200


def test_rp_with_jwks_fetched_after_staging_verifies_tokens_signed_after_activation(
    idp: Harness, clock: Clock
) -> None:
    """Issue 4, Tests ("a relying party holding a JWKS fetched before activation can verify
    tokens signed after it (the key was staged first)"): the RP fetched the set while the key
    was staged and never refetches; tokens signed after activation verify with that copy. (A
    copy fetched before staging does not: the staging is what makes it work.)"""
    idp.user()
    rp = idp.client()
    services = idp.runtime
    before_staging = fetch_jwks(idp.http)
    new = rotate(services)
    services.keys.load()
    cached = fetch_jwks(idp.http)  # the RP's cache, refreshed during the window
    activate_staged(idp, clock, new)
    signed_after = idp.tokens(rp)
    for token in (signed_after["id_token"], signed_after["access_token"]):
        assert header(token)["kid"] == new
        jwt.decode(token, cached, algorithms=["RS256"])
        assert not verifies(token, before_staging)


# --- the automatic schedule ---------------------------------------------------------------------


def schedule_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        key_rotation_days=1,
        key_prepublication_seconds=3600,
        jwks_max_age_seconds=300,
        key_refresh_seconds=30,
    )


def test_schedule_stages_one_key_a_window_before_rotation_then_activates_it(
    apps: Apps, database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Issue 4, Lifecycle ("Automatic rotation on a configurable schedule: a new key is staged at
    least a pre-publication window before it activates"): one second before activated_at +
    rotation - window nothing happens; at that moment maintain stages exactly one key, with
    activates_at at least a window away; running it again does nothing; once activates_at passes
    the key activates and the old one retires."""
    h = apps.harness(schedule_settings(database_url, tmp_path))
    services = h.runtime
    first = the_active(services)
    window = 3600
    due = (first.activated_at or 0) + 86400 - window
    clock.set(due - 1)
    assert maintain(services) == []
    assert in_state(services, KeyState.STAGED) == []

    clock.set(due)
    done = maintain(services)
    staged = in_state(services, KeyState.STAGED)
    assert len(staged) == 1, done
    assert len(done) == 1 and "staged" in done[0]
    assert (staged[0].activates_at or 0) >= clock.t + window
    assert maintain(services) == []
    clock.advance(window // 2)
    assert maintain(services) == []
    assert [r.kid for r in in_state(services, KeyState.STAGED)] == [staged[0].kid]

    clock.set((staged[0].activates_at or 0) - 1)
    assert maintain(services) == []
    clock.set(staged[0].activates_at or 0)
    maintain(services)
    assert the_active(services).kid == staged[0].kid
    assert row(services, first.kid).state == KeyState.RETIRED
    assert in_state(services, KeyState.STAGED) == []


def test_key_ring_tick_runs_the_schedule_end_to_end(
    apps: Apps, database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Issue 4, Lifecycle (automatic rotation, "whichever worker notices first does the work"):
    the key ring's tick alone stages the next key when it is due (it appears in /jwks.json at
    once, tokens keep the old kid), then activates it when its time comes (tokens carry the new
    kid), and the pre-publication it gave relying parties is at least the window."""
    h = apps.harness(schedule_settings(database_url, tmp_path))
    services = h.runtime
    rp = h.client(grant_types=["client_credentials"], scopes=SERVICE_SCOPES, redirect_uris=[])
    first = the_active(services)
    clock.set((first.activated_at or 0) + 86400 - 3600)
    services.keys.tick()
    staged = in_state(services, KeyState.STAGED)
    assert len(staged) == 1
    assert jwks_kids(h.http) == {first.kid, staged[0].kid}
    assert header(service_token(h, rp))["kid"] == first.kid
    clock.set(staged[0].activates_at or 0)
    services.keys.tick()
    assert header(service_token(h, rp))["kid"] == staged[0].kid
    activated = row(services, staged[0].kid)
    assert (activated.activated_at or 0) - activated.created_at >= 3600


# --- exactly once under races -------------------------------------------------------------------


def race(workers: int, work: Callable[[int], object]) -> list[object]:
    """Run work(i) in `workers` threads released together; re-raise the first error."""
    barrier = threading.Barrier(workers)
    results: list[object] = [None] * workers
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


@pytest.mark.parametrize("how", ["maintain", "rotate"])
def test_racing_workers_stage_exactly_one_key(idp: Harness, clock: Clock, how: str) -> None:
    """Issue 4, Lifecycle ("Whichever worker notices first does the work, exactly once even when
    several race (a database lock, tested on PostgreSQL)") and Tests ("two workers racing to
    rotate produce exactly one new key"): four workers, each in its own transaction, run the
    schedule (or `rotate`) at the moment a rotation is due; one key is staged, three rounds."""
    services = idp.runtime
    settings = services.settings
    sealer = sealer_for(settings)

    def work(_: int) -> object:
        with services.sessions.begin() as db:
            if how == "maintain":
                return key_rotation.maintain(db, sealer, settings)
            return key_rotation.rotate(db, sealer, settings, "RS256").kid

    for round_ in range(3):
        current = the_active(services)
        before = {r.kid for r in all_rows(services)}
        clock.set(
            (current.activated_at or 0)
            + settings.rotation_seconds
            - settings.key_prepublication_seconds
        )
        results = race(4, work)
        staged = in_state(services, KeyState.STAGED)
        assert len(staged) == 1, f"round {round_}: {[r.kid for r in staged]}"
        assert {r.kid for r in all_rows(services)} - before == {staged[0].kid}
        if how == "maintain":
            actions = [a for result in results for a in result]  # type: ignore[attr-defined]
            assert len([a for a in actions if "staged" in a]) == 1, actions
        else:
            assert set(results) == {staged[0].kid}
        clock.set(staged[0].activates_at or 0)
        maintain(services)
        assert the_active(services).kid == staged[0].kid


def test_two_app_instances_ticking_together_rotate_once(
    apps: Apps, settings: Settings, clock: Clock
) -> None:
    """Issue 4, Lifecycle ("in the database, shared by every worker and node"; exactly once):
    two app instances on one database tick at the same moment when a rotation is due: one key is
    staged, both publish it; when it is due they tick together again: it is activated once and
    both sign with it."""
    a = apps.harness(settings)
    b = apps.harness(settings, migrate=False)
    first = the_active(a.runtime)
    assert len(all_rows(a.runtime)) == 1  # the second start made no key
    nodes = [a, b]
    clock.set(
        (first.activated_at or 0) + settings.rotation_seconds - settings.key_prepublication_seconds
    )
    race(2, lambda i: nodes[i].runtime.keys.tick())
    staged = in_state(a.runtime, KeyState.STAGED)
    assert len(staged) == 1
    assert jwks_kids(a.http) == jwks_kids(b.http) == {first.kid, staged[0].kid}
    # Both nodes serve the same bytes, so one ETag: a relying party revalidates against either.
    assert a.http.get("/jwks.json").headers["etag"] == b.http.get("/jwks.json").headers["etag"]

    activations = len(audit(a.runtime, "key.activated"))
    clock.set(staged[0].activates_at or 0)
    race(2, lambda i: nodes[i].runtime.keys.tick())
    assert len(audit(a.runtime, "key.activated")) == activations + 1
    assert the_active(a.runtime).kid == staged[0].kid
    for node in nodes:
        rp = node.client(
            grant_types=["client_credentials"], scopes=SERVICE_SCOPES, redirect_uris=[]
        )
        assert header(service_token(node, rp))["kid"] == staged[0].kid


def test_workers_starting_together_make_one_key_per_algorithm(
    database_url: str, tmp_path: Path
) -> None:
    """Issue 4, Lifecycle ("exactly one per algorithm"; exactly once when several race): four
    workers starting at once on a fresh database with every algorithm enabled end with one
    active key per algorithm, and all sign with the same ones."""
    settings = make_settings(database_url, tmp_path, signing_algs="RS256,ES256,EdDSA,PS256")
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()

    def start(_: int) -> object:
        services = create_app(settings).state.runtime
        try:
            return {alg: services.keys.signing_key(alg)[0] for alg in settings.enabled_algs}
        finally:
            services.engine.dispose()

    signing = race(4, start)
    assert all(kids == signing[0] for kids in signing)
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT kid, alg, state FROM signing_keys")).all()
    finally:
        engine.dispose()
    assert sorted((alg, state) for _, alg, state in rows) == sorted(
        (alg, "active") for alg in settings.enabled_algs
    )
    assert {kid for kid, _, _ in rows} == set(signing[0].values())  # type: ignore[attr-defined]


# --- emergency revoke ---------------------------------------------------------------------------


def test_revoking_the_active_key_withdraws_it_and_activates_a_new_one(
    idp: Harness, clock: Clock
) -> None:
    """Issue 4, Lifecycle ("An emergency revoke removes a key from the JWKS at once and, if it
    was active, activates a replacement") and Tests ("a revoked key is gone and its tokens
    fail"): with nothing staged, a new key takes over at once; /jwks.json no longer has the
    revoked kid, new tokens carry the replacement's, and /userinfo refuses a token signed with
    the revoked key (401 invalid_token); key.revoked and key.activated are audited."""
    idp.user()
    before = idp.tokens(idp.client())
    assert userinfo(idp, before["access_token"]).status_code == 200
    services = idp.runtime
    old = the_active(services).kid
    replacement = revoke(services, old)
    services.keys.load()
    assert replacement is not None and replacement != old
    assert jwks_kids(idp.http) == {replacement}
    assert the_active(services).kid == replacement
    revoked = row(services, old)
    assert revoked.state == KeyState.REVOKED
    assert revoked.revoked_at == clock.t
    after = idp.tokens(idp.client())
    assert header(after["id_token"])["kid"] == replacement
    assert header(after["access_token"])["kid"] == replacement

    refused = userinfo(idp, before["access_token"])
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert not verifies(before["id_token"], fetch_jwks(idp.http))
    assert {d["kid"] for d in audit(services, "key.revoked")} == {old}
    assert replacement in {d["kid"] for d in audit(services, "key.activated")}


def test_revoking_the_active_key_promotes_the_staged_one(idp: Harness, clock: Clock) -> None:
    """Issue 4, Lifecycle (emergency revoke activates a replacement): when a key is staged, it is
    the replacement (relying parties have had it since staging); no further key is made."""
    services = idp.runtime
    old = the_active(services).kid
    staged = rotate(services)
    assert revoke(services, old) == staged
    services.keys.load()
    assert the_active(services).kid == staged
    assert {r.kid for r in all_rows(services)} == {old, staged}
    assert jwks_kids(idp.http) == {staged}
    assert in_state(services, KeyState.STAGED) == []


def test_revoking_a_staged_key_only_withdraws_it(idp: Harness, clock: Clock, service: Any) -> None:
    """Issue 4, Lifecycle (emergency revoke; a replacement only "if it was active"): a staged
    key leaves /jwks.json; the active key keeps signing; no key is created or activated."""
    services = idp.runtime
    active = the_active(services).kid
    staged = rotate(services)
    services.keys.load()
    activations = len(audit(services, "key.activated"))
    assert revoke(services, staged) is None
    services.keys.load()
    assert jwks_kids(idp.http) == {active}
    assert the_active(services).kid == active
    assert header(service_token(idp, service))["kid"] == active
    assert len(all_rows(services)) == 2
    assert len(audit(services, "key.activated")) == activations


def test_revoking_a_retired_key_withdraws_it_and_its_tokens_fail(
    idp: Harness, clock: Clock
) -> None:
    """Issue 4, Lifecycle (emergency revoke) and Tests ("a revoked key is gone and its tokens
    fail"): a retired key leaves /jwks.json before its time; tokens it signed are refused by
    /userinfo; the active key is untouched."""
    idp.user()
    before = idp.tokens(idp.client())
    services = idp.runtime
    old = the_active(services).kid
    new = rotate(services, immediately=True)
    services.keys.load()
    assert userinfo(idp, before["access_token"]).status_code == 200
    assert revoke(services, old) is None
    services.keys.load()
    assert jwks_kids(idp.http) == {new}
    assert the_active(services).kid == new
    refused = userinfo(idp, before["access_token"])
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


def test_revoked_key_is_not_brought_back(idp: Harness, clock: Clock) -> None:
    """Issue 4, Lifecycle (a revoked key is "neither published nor trusted"): the schedule, run
    after a revoke, leaves it revoked and unpublished."""
    services = idp.runtime
    old = the_active(services).kid
    revoke(services, old)
    clock.advance(services.settings.rotation_seconds * 2)
    maintain(services)
    maintain(services)
    assert row(services, old).state == KeyState.REVOKED
    assert old not in published_kids(services)
    services.keys.load()
    assert old not in jwks_kids(idp.http)


def test_revoking_an_unknown_or_already_revoked_kid_raises_lookup_error(idp: Harness) -> None:
    """Issue 4, `idp keys revoke KID`: a kid that names no published key is an error
    (LookupError), and nothing changes."""
    services = idp.runtime
    with pytest.raises(LookupError):
        revoke(services, "no-such-kid")
    old = the_active(services).kid
    replacement = revoke(services, old)
    rows = {(r.kid, r.state) for r in all_rows(services)}
    with pytest.raises(LookupError):
        revoke(services, old)
    assert {(r.kid, r.state) for r in all_rows(services)} == rows
    assert the_active(services).kid == replacement


# --- parsed once per process --------------------------------------------------------------------


def test_issuing_tokens_never_opens_or_parses_a_key(
    idp: Harness, service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 4, Algorithms ("Keys are loaded and parsed once per process and refreshed cheaply
    when the set changes; signing never parses PEM on the hot path"): after warm-up, with the
    decrypt and import paths made to fail, tokens are still issued, and a refresh that finds the
    set unchanged parses nothing."""
    idp.user()
    service_token(idp, service)

    def forbidden(*_: object, **__: object) -> Any:
        raise AssertionError("a key was decrypted or parsed after warm-up")

    monkeypatch.setattr(KeyRing, "_open", forbidden)
    monkeypatch.setattr(Sealer, "open", forbidden)
    monkeypatch.setattr(keystore_module, "_import", forbidden)
    for _ in range(20):
        service_token(idp, service)
    assert idp.tokens(idp.client())["id_token"]
    idp.runtime.keys.tick()  # a refresh of an unchanged set
    assert idp.http.get("/jwks.json").status_code == 200
    service_token(idp, service)


def test_a_changed_key_set_decrypts_only_the_new_key(
    idp: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 4, Algorithms ("refreshed cheaply when the set changes"): after a key is staged, the
    reload decrypts that key alone; the keys already parsed are kept."""
    services = idp.runtime
    opened: list[str] = []
    real = KeyRing._open

    def counting(self: KeyRing, key_row: Any) -> Any:
        opened.append(key_row.kid)
        return real(self, key_row)

    monkeypatch.setattr(KeyRing, "_open", counting)
    new = rotate(services)
    services.keys.load()
    assert opened == [new]


# --- keys at rest -------------------------------------------------------------------------------


def sealed_blobs(services: Runtime) -> dict[str, bytes]:
    return {r.kid: bytes(r.private_jwk_sealed) for r in all_rows(services)}


def test_rewrap_moves_every_key_to_the_new_kek(
    apps: Apps, database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Issue 4, Keys at rest ("`idp keys rewrap` re-encrypts every key under a new
    key-encryption key") and Tests ("a wrong key-encryption key fails loudly at start"): after
    rewrap every stored key (active, staged, retired, revoked, of each algorithm) opens with the
    new KEK and not the old; an app with the new KEK starts and signs with the same key, an app
    with the old one refuses to start with KeyMaterialError."""
    settings = make_settings(database_url, tmp_path, signing_algs="RS256,ES256")
    h = apps.harness(settings)
    services = h.runtime
    rotate(services, immediately=True)  # one retired RS256 key
    revoke(services, rotate(services, "ES256"))  # one revoked ES256 key
    rotate(services)  # one staged RS256 key
    rp = h.client(grant_types=["client_credentials"], scopes=SERVICE_SCOPES, redirect_uris=[])
    services.keys.load()
    kid = header(service_token(h, rp))["kid"]
    jwks_before = h.http.get("/jwks.json").json()

    old_kek, new_kek = b64url_decode(TEST_KEK), b64url_decode(new_key_encryption_key())
    with services.sessions.begin() as db:
        count = key_rotation.rewrap(db, Sealer(old_kek), Sealer(new_kek))
    blobs = sealed_blobs(services)
    assert count == len(blobs) == 5
    for key_kid, blob in blobs.items():
        Sealer(new_kek).open(blob, key_kid.encode())
        with pytest.raises(DecryptionError):
            Sealer(old_kek).open(blob, key_kid.encode())

    rewrapped = make_settings(
        database_url,
        tmp_path,
        signing_algs="RS256,ES256",
        key_encryption_key=b64url_encode(new_kek),
    )
    restarted = apps.harness(rewrapped, migrate=False)
    assert header(service_token(restarted, rp))["kid"] == kid
    assert restarted.http.get("/jwks.json").json() == jwks_before
    with pytest.raises(KeyMaterialError, match="key-encryption key is wrong"):
        create_app(settings)


def test_a_sealed_key_cannot_be_moved_onto_another_kid(
    idp: Harness, settings: Settings, clock: Clock
) -> None:
    """Issue 4, Keys at rest (AES-GCM with the kid as associated data): one key's sealed blob
    copied onto another row does not open; the app refuses to start with KeyMaterialError
    rather than serve with a key under the wrong kid."""
    services = idp.runtime
    active = the_active(services).kid
    staged = rotate(services)
    blob = sealed_blobs(services)[active]
    with services.sessions.begin() as db:
        db.execute(
            text("UPDATE signing_keys SET private_jwk_sealed = :b WHERE kid = :k"),
            {"b": blob, "k": staged},
        )
    with pytest.raises(KeyMaterialError, match=staged):
        create_app(settings)


def test_a_worker_left_on_the_old_kek_does_not_lock_out_the_next_start(
    apps: Apps, database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Issue 4, Keys at rest (`idp keys rewrap`, then every server starts with the new KEK) and
    Tests ("a wrong key-encryption key fails loudly at start, never by serving broken tokens"):
    a worker not yet restarted after the rewrap still holds the old KEK. When a rotation falls
    due it must not seal a new key under that old KEK (as `idp keys rotate` refuses to): a key
    the new KEK cannot open would stop every restarted server from starting."""
    settings = make_settings(database_url, tmp_path)
    stale = apps.harness(settings)
    services = stale.runtime
    new_kek = b64url_decode(new_key_encryption_key())
    with services.sessions.begin() as db:
        key_rotation.rewrap(db, Sealer(b64url_decode(TEST_KEK)), Sealer(new_kek))
    current = the_active(services)
    clock.set(
        (current.activated_at or 0)
        + settings.rotation_seconds
        - settings.key_prepublication_seconds
    )
    with contextlib.suppress(Exception):  # refusing (and logging) is a fine answer
        services.keys.tick()
    for kid, blob in sealed_blobs(services).items():
        try:
            Sealer(new_kek).open(blob, kid.encode())
        except DecryptionError:
            pytest.fail(f"key {kid} was sealed under the old KEK after the rewrap")
    rewrapped = make_settings(database_url, tmp_path, key_encryption_key=b64url_encode(new_kek))
    apps.harness(rewrapped, migrate=False)


# --- the repository's keys/ folder --------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def repository() -> None:
    if shutil.which("git") is None or git("rev-parse", "--is-inside-work-tree").returncode != 0:
        pytest.skip("not a git checkout")


@pytest.mark.usefixtures("repository")
def test_keys_folder_tracks_no_key_material() -> None:
    """Issue 4, Keys at rest ("keys/ in the repository holds no key material"): git tracks only
    keys/.gitkeep and keys/README.md there."""
    tracked = git("ls-files", "keys").stdout.split()
    assert sorted(tracked) == ["keys/.gitkeep", "keys/README.md"]


@pytest.mark.usefixtures("repository")
@pytest.mark.parametrize("name", ["key-encryption-key", "anything", "prod.kek", "sub/dir/key.pem"])
def test_gitignore_keeps_key_files_out(name: str) -> None:
    """Issue 4, Keys at rest (".gitignore keeps it that way"): any other file under keys/ is
    ignored; the README and .gitkeep are not."""
    assert git("check-ignore", "-q", f"keys/{name}").returncode == 0
    for kept in ("keys/README.md", "keys/.gitkeep"):
        assert git("check-ignore", "-q", "--no-index", kept).returncode == 1


# --- idp keys (command line) --------------------------------------------------------------------


class KeysCli:
    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        self.kek_file = tmp_path / "kek"
        self.kek_file.write_text(TEST_KEK + "\n")
        self.env.update(
            IDP_ISSUER="https://idp.example",
            IDP_DATABASE_URL=database_url,
            IDP_KEY_ENCRYPTION_KEY_FILE=str(self.kek_file),
        )

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(args, {**self.env, **env}, self.cwd)

    def ok(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, **env)
        assert result.returncode == 0, result.stderr
        return result

    def keys(self, **env: str) -> list[dict[str, Any]]:
        return json.loads(self.ok("keys", "list", "--json", **env).stdout)  # type: ignore[no-any-return]


@pytest.fixture
def keys_cli(database_url: str, tmp_path: Path) -> KeysCli:
    cli = KeysCli(database_url, tmp_path)
    settings = make_settings(
        database_url, tmp_path, key_encryption_key=None, key_encryption_key_file=cli.kek_file
    )
    migrate(settings)
    create_app(settings).state.runtime.engine.dispose()  # the first start makes the first key
    return cli


def by_state(keys: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    return [k for k in keys if k["state"] == state]


def test_cli_keys_list_shows_each_key(keys_cli: KeysCli) -> None:
    """Issue 4, `idp keys list` ("kid, algorithm, state, created, activates, retires"): one
    entry for the first key, with every field."""
    keys = keys_cli.keys()
    assert len(keys) == 1
    fields = {"kid", "alg", "state", "created_at", "activates_at", "retired_at"}
    assert fields <= set(keys[0])
    assert keys[0]["alg"] == "RS256"
    assert keys[0]["state"] == "active"
    assert isinstance(keys[0]["created_at"], int)


def test_cli_keys_rotate_stages_a_key(keys_cli: KeysCli) -> None:
    """Issue 4, `idp keys rotate` ("stage now, activate after the window"): the list then shows
    the old key active and a staged key that activates one pre-publication window later."""
    before = keys_cli.keys()
    keys_cli.ok("keys", "rotate")
    keys = keys_cli.keys()
    assert [k["kid"] for k in by_state(keys, "active")] == [before[0]["kid"]]
    staged = by_state(keys, "staged")
    assert len(staged) == 1
    assert staged[0]["activates_at"] >= staged[0]["created_at"] + 3600


def test_cli_keys_rotate_now_activates_at_once(keys_cli: KeysCli) -> None:
    """Issue 4, `idp keys rotate --now` ("for an emergency"): the new key is active and the old
    one retired (still listed, with retired_at)."""
    old = keys_cli.keys()[0]["kid"]
    keys_cli.ok("keys", "rotate", "--now")
    keys = keys_cli.keys()
    active = by_state(keys, "active")
    assert len(active) == 1 and active[0]["kid"] != old
    retired = by_state(keys, "retired")
    assert [k["kid"] for k in retired] == [old]
    assert retired[0]["retired_at"] is not None


def test_cli_keys_revoke_withdraws_the_key(keys_cli: KeysCli) -> None:
    """Issue 4, `idp keys revoke KID`: the key is no longer among the published (staged, active,
    retired) keys, and another key is active."""
    old = keys_cli.keys()[0]["kid"]
    keys_cli.ok("keys", "revoke", old)
    keys = keys_cli.keys()
    published = [k for k in keys if k["state"] in ("staged", "active", "retired")]
    assert old not in {k["kid"] for k in published}
    assert len(by_state(keys, "active")) == 1


def test_cli_keys_revoke_takes_a_kid_that_starts_with_a_dash(keys_cli: KeysCli) -> None:
    """A kid is base64url (RFC 7638 thumbprint) and may start with '-': `idp keys revoke -abc`
    treats it as the kid (here an unknown one: the kid's own error, not argparse's)."""
    result = keys_cli.run("keys", "revoke", "-no-such-kid")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["idp: error: no published key -no-such-kid"]


def test_cli_keys_revoke_unknown_kid_fails_with_one_line(keys_cli: KeysCli) -> None:
    """Issue 4, `idp keys revoke KID` and the command line's habit (bad input exits non-zero with
    one line on stderr, writes nothing): an unknown kid exits 1."""
    before = keys_cli.keys()
    result = keys_cli.run("keys", "revoke", "no-such-kid")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "no-such-kid" in result.stderr
    assert "Traceback" not in result.stderr
    assert keys_cli.keys() == before


def test_cli_keys_rewrap_then_list_with_the_new_kek(keys_cli: KeysCli, tmp_path: Path) -> None:
    """Issue 4, Keys at rest (`idp keys rewrap`): after rewrapping under the KEK in a new file,
    the commands work with that file, and the old KEK no longer opens the keys."""
    keys_cli.ok("keys", "rotate")
    before = keys_cli.keys()
    new_file = tmp_path / "new-kek"
    new_file.write_text(new_key_encryption_key() + "\n")
    keys_cli.ok("keys", "rewrap", "--new-kek-file", str(new_file))
    assert keys_cli.keys(IDP_KEY_ENCRYPTION_KEY_FILE=str(new_file)) == before
    # Commands that open the keys refuse the old KEK (one line) and work with the new one.
    refused = keys_cli.run("keys", "rotate", "--now")
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert keys_cli.keys() == before
    # --now promotes the key staged above: still two keys, all under the new KEK.
    keys_cli.ok("keys", "rotate", "--now", IDP_KEY_ENCRYPTION_KEY_FILE=str(new_file))
    keys_cli.ok("keys", "rotate", IDP_KEY_ENCRYPTION_KEY_FILE=str(new_file))
    new_kek = b64url_decode(new_file.read_text().strip())
    engine = make_engine(make_settings(keys_cli.env["IDP_DATABASE_URL"], tmp_path))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT kid, private_jwk_sealed FROM signing_keys")).all()
    finally:
        engine.dispose()
    assert len(rows) == 3
    for kid, blob in rows:
        Sealer(new_kek).open(bytes(blob), kid.encode())
        with pytest.raises(DecryptionError):
            Sealer(b64url_decode(TEST_KEK)).open(bytes(blob), kid.encode())


def test_cli_clients_create_with_an_id_token_alg(keys_cli: KeysCli) -> None:
    """Issue 4, Algorithms ("A client may ask for its ID token algorithm
    (id_token_signed_response_alg)"): `idp clients create --id-token-alg ES256` registers it
    when ES256 is enabled, and refuses it (exit 1, one line on stderr, no client) when not."""
    args = [
        "clients",
        "create",
        "--name",
        "RP",
        "--redirect-uri",
        "https://rp.example/callback",
        "--grant-type",
        "authorization_code",
        "--scope",
        "openid",
        "--id-token-alg",
        "ES256",
        "--json",
    ]
    refused = keys_cli.run(*args)
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "ES256" in refused.stderr
    assert refused.stdout == ""
    created = json.loads(keys_cli.ok(*args, IDP_SIGNING_ALGS="RS256,ES256").stdout)
    assert created["id_token_signed_response_alg"] == "ES256"


def test_each_worker_runs_the_schedule_in_the_background(database_url: str, tmp_path: Path) -> None:
    """Issue 4, "automatic rotation ... whichever worker notices first does the work": a running
    app's own background ticker activates a staged key that is due, with no request and no
    command, and the app then signs with it."""
    import time

    from starlette.testclient import TestClient

    from tests.conftest import ISSUER, migrated_app, ticking_settings

    settings = ticking_settings(database_url, tmp_path)
    app = migrated_app(settings)
    services: Runtime = app.state.runtime
    try:
        with services.sessions.begin() as db:
            staged = key_rotation.rotate(db, services.keys._sealer, settings, "RS256")
            staged_kid = staged.kid
        with TestClient(app, base_url=ISSUER):  # runs the lifespan: the ticker starts
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if services.keys.signing_key()[0] == staged_kid:
                    break
                time.sleep(0.2)
        assert services.keys.signing_key()[0] == staged_kid
    finally:
        services.engine.dispose()
