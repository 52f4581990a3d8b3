"""Revocation reaches every token, on every worker (the issue: "Disabling a user, ending a
user's sessions, deleting or disabling a client, and revoking a grant each revoke every
outstanding access token and refresh family that came from it ... at userinfo, introspection
and refresh, at once, on every worker").

Two apps share one database (tests/test_workers.py). Everything is issued on app A, the
revocation goes through A (the CLI, as an operator runs it, commits its own transaction), and
app B is asked at once: userinfo answers 401 invalid_token (RFC 6750 §3.1), introspection
`{"active": false}` (RFC 7662 §2.2), and the refresh grant invalid_grant, or invalid_client when
the client itself is gone or disabled (RFC 6749 §5.2). What the revocation did not name keeps
working on B.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from idp.admin import revocation
from idp.authn import sessions
from tests.admin.test_revocation import run
from tests.cli_runner import run_cli
from tests.conftest import TEST_KEK
from tests.helpers import RP, Harness, form_fields, query_of
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    REFRESH_GRANTS,
    introspected,
    refresh,
    refreshed,
    resource_server,
    revoke,
    userinfo,
)
from tests.test_workers import workers  # noqa: F401  (the fixture)
from tests.token_helpers import error_of

ALICE, BOB = "alice@example.com", "bob@example.com"
PLAIN_SCOPE = "openid profile"  # no offline_access: an access token and no refresh token


@dataclass
class Held:
    """What a client holds from one grant: its access tokens (the one from the code exchange,
    and one from a refresh) and, with offline_access, the refresh token now current; or a
    service's client_credentials token (no user)."""

    rp: RP
    access_tokens: list[str]
    refresh_token: str | None = None
    service: bool = False


@dataclass
class World:
    """Two workers on one database, and the tokens two users and two clients hold."""

    a: Harness
    b: Harness
    alice: str  # her user id
    database_url: str
    tmp_path: Path
    api: RP  # a resource server allowed to introspect (RFC 7662 §2.1)
    rp: RP  # the client the client paths revoke
    other: RP  # a client they leave alone
    held: dict[str, Held] = field(default_factory=dict)

    def cli(self, *args: str) -> None:
        """`idp ARGS` against the shared database, as an operator runs it."""
        env = {
            "IDP_DATABASE_URL": self.database_url,
            "IDP_KEY_ENCRYPTION_KEY": TEST_KEK,
            "IDP_KEY_ENCRYPTION_KEY_FILE": str(self.tmp_path / "kek"),
        }
        done = run_cli(args, env, self.tmp_path)
        assert done.returncode == 0, done.stderr


def _full_client(idp: Harness, name: str) -> RP:
    """A client that signs people in, refreshes, and acts on its own behalf."""
    return idp.client(
        name=name,
        grant_types=[*REFRESH_GRANTS, "client_credentials"],
        scopes=["openid", "profile", "email", "offline_access", "api"],
    )


def _signed_in_grant(idp: Harness, rp: RP, email: str, offline: bool) -> Held:
    """A code exchange as `email` (signing in if the browser is not), refreshed once when
    offline_access was asked for."""
    scope = OFFLINE_SCOPE if offline else PLAIN_SCOPE
    answer = idp.follow_to_code(idp.authorize(rp, scope=scope), rp, email=email)
    exchanged = idp.exchange(rp, query_of(answer.headers["location"])["code"])
    assert exchanged.status_code == 200, exchanged.text
    tokens = exchanged.json()
    if not offline:
        assert "refresh_token" not in tokens
        return Held(rp, [tokens["access_token"]])
    again = refreshed(idp, rp, tokens["refresh_token"])
    return Held(rp, [tokens["access_token"], again["access_token"]], again["refresh_token"])


def _service_grant(idp: Harness, rp: RP) -> Held:
    response = idp.client_credentials(rp)
    assert response.status_code == 200, response.text
    return Held(rp, [response.json()["access_token"]], service=True)


@pytest.fixture
def world(
    workers: tuple[Harness, Harness],  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> World:
    a, b = workers
    a.user(email=BOB, name="Bob")
    alice = a.user(email=ALICE, name="Alice")
    rp, other = _full_client(a, "Target"), _full_client(a, "Bystander")
    w = World(a, b, alice, database_url, tmp_path, resource_server(a), rp, other)
    # Bob signs in first, in a browser of his own; Alice's browser stays signed in after.
    w.held["bob offline"] = _signed_in_grant(a, rp, BOB, offline=True)
    a.http.cookies.clear()
    w.held["alice plain"] = _signed_in_grant(a, rp, ALICE, offline=False)
    w.held["alice offline"] = _signed_in_grant(a, rp, ALICE, offline=True)
    w.held["alice elsewhere"] = _signed_in_grant(a, other, ALICE, offline=True)
    w.held["rp service"] = _service_grant(a, rp)
    w.held["other service"] = _service_grant(a, other)
    return w


# --- the revocations, each through worker A ------------------------------------------------------


def disable_user(w: World) -> None:
    w.cli("users", "disable", ALICE, "--reason", "left the company")


def revoke_sessions(w: World) -> None:
    w.cli("users", "revoke-sessions", ALICE)


def delete_client(w: World) -> None:
    w.cli("clients", "delete", w.rp.client_id)


def disable_client(w: World) -> None:
    w.cli("clients", "disable", w.rp.client_id, "--reason", "compromised")


def withdraw_consent(w: World) -> None:
    """Alice removes the application's access on her home page (POST /apps/revoke)."""
    page = w.a.http.get("/")
    forms = re.findall(r'<form[^>]*action="/apps/revoke".*?</form>', page.text, re.S)
    (fields,) = [f for f in map(form_fields, forms) if f["client_id"] == w.rp.client_id]
    done = w.a.http.post("/apps/revoke", data=fields)
    assert (done.status_code, done.headers["location"]) == (303, "/?notice=revoked")


def revoke_refresh_token(w: World) -> None:
    """The client revokes Alice's refresh token (RFC 7009 §2.1)."""
    token = w.held["alice offline"].refresh_token
    assert revoke(w.a, w.rp, token).status_code == 200


Revocation = Callable[[World], None]
ALICES_AT_RP = {"alice plain", "alice offline"}
OF_RP = {"alice plain", "alice offline", "bob offline", "rp service"}

# What each revocation ends, and the refresh grant's answer for what it ended.
CASES: list[tuple[Revocation, set[str], str]] = [
    (disable_user, ALICES_AT_RP | {"alice elsewhere"}, "invalid_grant"),
    (revoke_sessions, ALICES_AT_RP | {"alice elsewhere"}, "invalid_grant"),
    (delete_client, OF_RP, "invalid_client"),
    (disable_client, OF_RP, "invalid_client"),
    (withdraw_consent, ALICES_AT_RP, "invalid_grant"),
    # RFC 7009 §2.1: revoking a refresh token SHOULD invalidate the access tokens "based on the
    # same authorization grant": that family's, the refreshed one too; the plain code exchange
    # was another grant and lives on.
    (revoke_refresh_token, {"alice offline"}, "invalid_grant"),
]


def is_invalid_token(w: World, access_token: str) -> bool:
    """RFC 6750 §3.1: a revoked token is answered 401 with error="invalid_token"."""
    response = userinfo(w.b, access_token)
    challenge = response.headers.get("www-authenticate", "")
    return response.status_code == 401 and 'error="invalid_token"' in challenge


def assert_dead_on_b(w: World, held: Held, refresh_error: str) -> None:
    for access_token in held.access_tokens:
        assert introspected(w.b, w.api, access_token) == {"active": False}
        assert held.service or is_invalid_token(w, access_token)
    if held.refresh_token is None:
        return
    if refresh_error == "invalid_grant":  # the client still authenticates: it may ask
        assert introspected(w.b, held.rp, held.refresh_token) == {"active": False}
    assert error_of(refresh(w.b, held.rp, held.refresh_token)) == refresh_error


def assert_alive_on_b(w: World, held: Held) -> None:
    for access_token in held.access_tokens:
        assert introspected(w.b, w.api, access_token)["active"] is True
        assert held.service or userinfo(w.b, access_token).status_code == 200
    if held.refresh_token is not None:
        assert introspected(w.b, held.rp, held.refresh_token)["active"] is True
        assert refresh(w.b, held.rp, held.refresh_token).status_code == 200


def assert_usable_before(w: World, held: Held) -> None:
    """Before the revocation, every token is active on B (introspected only: refreshing
    would rotate the refresh token)."""
    for access_token in held.access_tokens:
        assert introspected(w.b, w.api, access_token)["active"] is True
    if held.refresh_token is not None:
        assert introspected(w.b, held.rp, held.refresh_token)["active"] is True


@pytest.mark.parametrize(
    ("revocation", "ended", "refresh_error"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_revocation_reaches_every_token_on_the_other_worker(
    world: World, revocation: Revocation, ended: set[str], refresh_error: str
) -> None:
    """Revoked through worker A, dead on worker B at once: the access tokens at userinfo
    (RFC 6750 §3.1 invalid_token) and introspection (RFC 7662 §2.2 active false), the refresh
    token at the refresh grant (RFC 6749 §5.2); every token the revocation did not name still
    works on B."""
    for held in world.held.values():
        assert_usable_before(world, held)
    revocation(world)
    for name, held in world.held.items():
        if name in ended:
            assert_dead_on_b(world, held, refresh_error)
        else:
            assert_alive_on_b(world, held)


# --- a family the revocation could not see -------------------------------------------------------


@pytest.mark.parametrize("whose", ["user", "client"])
def test_a_family_committed_during_the_revocation_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, whose: str
) -> None:
    """RFC 6749 §5.2 invalid_grant: worker B may commit a code exchange's refresh-token family
    while worker A's revocation is reading the families to revoke, so the revocation misses it
    (here: finds none). The family began before the revocation's epoch, so the refresh grant
    and introspection (RFC 7662 §2.2) refuse it all the same."""
    held = world.held["alice offline"]
    if whose == "user":
        monkeypatch.setattr(sessions.refresh_tokens, "live_families_of_user", lambda *a: [])
        revoked = run(world.a, revocation.revoke_user, world.alice, reason="lost laptop")
    else:
        monkeypatch.setattr(revocation.refresh_tokens, "live_families_of_client", lambda *a: [])
        revoked = run(world.a, revocation.revoke_client, world.rp.client_id, reason="leak")
    assert revoked.families == 0
    assert introspected(world.b, held.rp, str(held.refresh_token)) == {"active": False}
    assert error_of(refresh(world.b, held.rp, str(held.refresh_token))) == "invalid_grant"
    bystander = world.held["alice elsewhere" if whose == "client" else "bob offline"]
    assert_alive_on_b(world, bystander)
