"""A bounded soak of the hot paths leaves the process's Python heap as it found it (issue 16).

Every hot path runs ROUNDS times in-process through the ASGI app (Starlette's TestClient, as
every test does): client_credentials, a refresh-token rotation chain, the code flow (a fresh
sign-in every other round, a returning user's session the others), the JWKS, the discovery
document, userinfo and introspection. Before and after, the objects the garbage collector
tracks are counted, with the items their containers hold: what a leak keeps (a per-request list
append, a cache without a bound) stays reachable and is counted, whereas what a request merely
used is collected. Injecting a leak of one small tuple per refresh grant, or one dict of
strings per JWKS request, fails it (ROUNDS objects more).

The count is of objects, not bytes (a string that keeps growing is not seen): resident-memory
figures belong in bench/. It is bounded to a few seconds per database.
"""

from __future__ import annotations

import gc
import weakref
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

from tests.helpers import RP, Harness
from tests.refresh_helpers import (
    OFFLINE_SCOPE,
    harness,
    introspect,
    offline_client,
    refreshed,
    resource_server,
    userinfo,
)

# Each hot path this many times; the first WARM_UP rounds fill the caches that are meant to
# fill (SQLAlchemy's compiled statements, each connection's sqlite3 statement cache, ...).
ROUNDS = 100
WARM_UP = 20
# A leak of one object per request on any single path keeps ROUNDS objects: twice the bound.
# A clean soak measured between -27 and 0 (SQLite: 0; PostgreSQL: -27 to -19, several runs).
BOUND = ROUNDS // 2
CONTAINERS = (dict, set, deque)


class HotPaths:
    """A user, the clients of each path, and one round of requests over all of them."""

    def __init__(self, idp: Harness) -> None:
        self.idp = idp
        self.rounds = 0
        idp.user()
        self.service = idp.client(
            grant_types=["client_credentials"], scopes=["api.read"], redirect_uris=[]
        )
        self.rp: RP = offline_client(idp)
        self.api = resource_server(idp)
        self.refresh_token = idp.tokens(self.rp, scope=OFFLINE_SCOPE)["refresh_token"]

    def round(self) -> None:
        idp, rp = self.idp, self.rp
        self.rounds += 1
        assert idp.client_credentials(self.service).status_code == 200
        self.refresh_token = refreshed(idp, rp, self.refresh_token)["refresh_token"]
        if self.rounds % 2:
            idp.http.cookies.clear()  # a new browser: /authorize → /login → the code
        response = idp.exchange(rp, idp.code_for(rp, scope=OFFLINE_SCOPE))
        assert response.status_code == 200, response.text
        access_token = response.json()["access_token"]
        assert idp.http.get("/jwks.json").status_code == 200
        assert idp.http.get("/.well-known/openid-configuration").status_code == 200
        assert userinfo(idp, access_token).status_code == 200
        assert introspect(idp, self.api, access_token).json()["active"] is True


def warm_up(paths: HotPaths) -> None:
    """WARM_UP rounds, and more until urllib.parse.urlsplit's cache is full: it keeps the last
    128 URLs parsed (httpx and the app parse every redirect, each with a new interaction id or
    code), so it grows by design until then, and stays that size after."""
    for _ in range(WARM_UP):
        paths.round()
    for _ in range(ROUNDS):
        cache = urlsplit.cache_info()  # type: ignore[attr-defined]
        if cache.currsize >= (cache.maxsize or 0):
            return
        paths.round()
    raise AssertionError("urlsplit's cache did not fill")


def objects() -> int:
    """After a full collection: the objects the garbage collector tracks (every generation,
    the frozen one too), plus the items their lists, dicts, sets and deques hold.

    The items count because the collector does not track what refers to no container (a
    string, a tuple or dict of strings): a list that leaks those grows by one item per append
    all the same. Dead weak references are left out: sqlite3 keeps one per cursor a
    connection made, in a list it sweeps only every 200 cursors; they hold nothing."""
    gc.collect()
    count = 0
    for o in gc.get_objects():
        kind = type(o)
        if kind is weakref.ref and o() is None:
            continue
        count += 1
        if kind is list:
            count += sum(1 for item in o if not (type(item) is weakref.ref and item() is None))
        elif kind in CONTAINERS:
            count += len(o)
    return count


def test_a_soak_of_the_hot_paths_does_not_grow_the_heap(database_url: str, tmp_path: Path) -> None:
    """Issue 16: after a warm-up, ROUNDS requests of every hot path leave fewer than BOUND
    more objects behind. The sign-in throttle per address is off: every sign-in of the soak
    comes from the one test address."""
    with harness(database_url, tmp_path, interactions_per_ip_per_minute=0) as idp:
        # The worker's threads poll the database on their own clock, and their first
        # statements fill the compiled-statement cache whenever they come: not a request path.
        idp.app.state.worker.stop()
        gc.unfreeze()
        try:
            paths = HotPaths(idp)
            warm_up(paths)
            before = objects()
            for _ in range(ROUNDS):
                paths.round()
            grown = objects() - before
        finally:
            gc.freeze()  # as the lifespan left it (every app's start freezes all there is)
    assert grown < BOUND, f"{grown} more objects after {ROUNDS} rounds of the hot paths"
