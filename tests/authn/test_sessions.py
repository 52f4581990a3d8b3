"""Every way a session ends queues its back-channel logout tokens (OIDC Back-Channel Logout 1.0
§2.5; idp/authn/sessions.py): a sign-in that replaces the session, ending every session of a
user (`idp users revoke-sessions`), and a session that timed out, when it is pruned.
RP-initiated logout (RP-Initiated Logout 1.0 §2) is tested end to end in
tests/protocol/test_backchannel.py (test_logout_token_reaches_the_relying_party).

The worker is stopped first, so what is queued stays in the logout_deliveries table to be read.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from idp.authn.sessions import end_all
from idp.store.logout_deliveries import LogoutDelivery
from idp.worker import prune
from tests.conftest import ISSUER
from tests.helpers import RP, Harness, query_of
from tests.token_helpers import sql

ALICE, BOB = "alice@example.com", "bob@example.com"


@dataclass(frozen=True)
class Queued:
    """One logout token waiting in the outbox."""

    client_id: str
    sid: str
    sub: str
    attempts: int


def queued(idp: Harness) -> set[Queued]:
    with idp.runtime.sessions() as db:
        return {
            Queued(row.client_id, str(row.claims["sid"]), str(row.claims["sub"]), row.attempts)
            for row in db.scalars(select(LogoutDelivery))
        }


def signs_in(browser: Harness, rp: RP, email: str = ALICE) -> str:
    """Sign in to `rp` from `browser` as `email`; the sid of the ID token it gets."""
    answer = browser.follow_to_code(browser.authorize(rp), rp, email=email)
    code = query_of(answer.headers["location"])["code"]
    exchanged = browser.exchange(rp, code)
    assert exchanged.status_code == 200, exchanged.text
    return str(browser.decode(exchanged.json()["id_token"]).claims["sid"])


def live_sids(idp: Harness, user_id: str) -> set[str]:
    return {row.sid for row in sql(idp, "SELECT sid FROM sessions WHERE user_id = :u", u=user_id)}


@pytest.fixture
def dead_uri() -> str:
    """A back-channel logout URI on 127.0.0.1 where nobody listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/backchannel-logout"


@dataclass
class SignedIn:
    """A browser whose one session signed in to two clients that registered a
    backchannel_logout_uri and to one that did not."""

    user_id: str
    sid: str
    notified: RP
    also_notified: RP
    silent: RP


@pytest.fixture
def signed_in(idp: Harness, dead_uri: str) -> SignedIn:
    idp.app.state.worker.stop()  # nothing is sent: the queue is what these tests read
    user_id = idp.user(ALICE)
    idp.user(BOB)
    notified = idp.client(name="Notified", backchannel_logout_uri=dead_uri)
    also_notified = idp.client(name="Also notified", backchannel_logout_uri=dead_uri + "/2")
    silent = idp.client(name="Silent")
    sids = {signs_in(idp, rp) for rp in (notified, also_notified, silent)}
    (sid,) = sids  # one session signed in to all three
    assert queued(idp) == set()
    return SignedIn(user_id, sid, notified, also_notified, silent)


def replace_session(idp: Harness, s: SignedIn, how: str) -> None:
    """Sign in again from the browser that holds the live session cookie."""
    if how == "prompt=login":
        idp.code_for(s.notified, prompt="login")
    elif how == "max_age=0":
        idp.code_for(s.notified, max_age="0")
    elif how == "second sign-in":
        assert idp.login(ALICE).status_code == 303
    else:  # another account
        assert idp.login(BOB).status_code == 303


@pytest.mark.parametrize("how", ["prompt=login", "max_age=0", "second sign-in", "another account"])
def test_a_sign_in_that_replaces_a_session_queues_its_logout_tokens(
    idp: Harness, signed_in: SignedIn, how: str
) -> None:
    """Back-Channel Logout §2.5 (a logout request to each RP the session signed in to, §2.3,
    that registered a backchannel_logout_uri, §2.2) and OIDC Core §3.1.2.1 (prompt=login,
    max_age): a sign-in from a browser whose session is still live ends that session, so a
    logout token is queued for its sid for every such client, and only for those; the new
    session has a new sid (no session fixation)."""
    replace_session(idp, signed_in, how)
    s = signed_in
    assert queued(idp) == {
        Queued(s.notified.client_id, s.sid, s.user_id, 0),
        Queued(s.also_notified.client_id, s.sid, s.user_id, 0),
    }
    (new_sid,) = {row.sid for row in sql(idp, "SELECT sid FROM sessions")}
    assert new_sid != s.sid


def test_the_replacing_session_signs_in_with_its_own_sid(idp: Harness, signed_in: SignedIn) -> None:
    """OIDC Core §2 (sid, Front/Back-Channel Logout): after prompt=login, ID tokens carry the
    new session's sid, which is not the one the logout tokens name."""
    code = idp.code_for(signed_in.notified, prompt="login")
    exchanged = idp.exchange(signed_in.notified, code)
    assert exchanged.status_code == 200, exchanged.text
    new_sid = idp.decode(exchanged.json()["id_token"]).claims["sid"]
    assert new_sid != signed_in.sid
    assert live_sids(idp, signed_in.user_id) == {new_sid}
    assert {q.sid for q in queued(idp)} == {signed_in.sid}


@pytest.fixture
def browser(idp: Harness) -> Iterator[Callable[[], Harness]]:
    """Other browsers (each with its own cookie jar) on the same IdP."""
    opened: list[TestClient] = []

    def open_one() -> Harness:
        # Not entered as a context manager: the app's lifespan (its worker) is idp.http's.
        opened.append(TestClient(idp.app, base_url=ISSUER, follow_redirects=False))
        return Harness(idp.app, opened[-1])

    yield open_one
    for http in opened:
        http.close()


def test_ending_every_session_queues_one_per_session(
    idp: Harness, signed_in: SignedIn, browser: Callable[[], Harness]
) -> None:
    """Back-Channel Logout §2.3 and §2.5, and issue 3 (`idp users revoke-sessions`, which runs
    idp.authn.sessions.end_all): every session of the user ends, and each queues its own
    logout token, with its own sid, for every notified client it signed in to; another user's
    session is left alone."""
    s = signed_in
    other_sid = signs_in(browser(), s.notified)
    bob_sid = signs_in(browser(), s.notified, email=BOB)
    assert bob_sid not in (s.sid, other_sid)
    with idp.runtime.sessions.begin() as db:
        ended, _families = end_all(db, s.user_id)
    assert ended == 2
    assert queued(idp) == {
        Queued(s.notified.client_id, s.sid, s.user_id, 0),
        Queued(s.also_notified.client_id, s.sid, s.user_id, 0),
        Queued(s.notified.client_id, other_sid, s.user_id, 0),
    }
    assert live_sids(idp, s.user_id) == set()
    assert len(sql(idp, "SELECT sid FROM sessions WHERE sid = :s", s=bob_sid)) == 1


@pytest.mark.parametrize("how", ["absolute", "idle"])
def test_a_session_that_times_out_queues_its_logout_tokens_when_pruned(
    idp: Harness, signed_in: SignedIn, how: str
) -> None:
    """Back-Channel Logout §2.5 (the OP tells each RP when the session ends): a session that
    ran out (IDP_SESSION_ABSOLUTE_TIMEOUT_SECONDS, or IDP_SESSION_IDLE_TIMEOUT_SECONDS without
    use) has ended too; pruning it queues the same logout tokens as a sign-out."""
    column = "expires_at" if how == "absolute" else "last_seen_at"
    sql(idp, f"UPDATE sessions SET {column} = 1")  # noqa: S608 (a column name of ours)
    idle = idp.runtime.settings.session_idle_timeout_seconds
    counts = prune(idp.runtime.sessions, idle_timeout=idle)
    assert counts["sessions"] == 1
    s = signed_in
    assert queued(idp) == {
        Queued(s.notified.client_id, s.sid, s.user_id, 0),
        Queued(s.also_notified.client_id, s.sid, s.user_id, 0),
    }
    assert live_sids(idp, s.user_id) == set()
