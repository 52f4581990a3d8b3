"""Two `idp serve` nodes behind one issuer, on one PostgreSQL database (issue 15, Multi-node
deployment).

A load balancer without sticky sessions may send any request of a browser or a relying party to
either node, so whatever one node does (a sign-in, a code, a refresh token, a logout, a key
rotation, a failed password) must hold at the other. Both nodes are real processes on their own
loopback ports, with the same issuer, key-encryption key and database; the clients below speak to
the issuer's address, and their transport delivers each request to the node the test names, as
the balancer would: one browser keeps one cookie jar and one origin whichever node answers.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from idp.db.engine import normalize_url
from idp.keys.kek import new_key_encryption_key
from tests.conftest import PG_URL
from tests.e2e.conftest import (
    REDIRECT_URI,
    SERVER_LOGS,
    Cli,
    free_port,
    output_of,
    running,
    server_env,
)
from tests.e2e.test_server import follow, only_form, submit
from tests.helpers import RP, query_of, redeem, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not PG_URL,
        reason="two nodes share one PostgreSQL database: set IDP_TEST_DATABASE_URL "
        "(e.g. postgresql://root@127.0.0.1:5432/test) to run them",
    ),
]

SERVE = [sys.executable, "-m", "idp", "serve"]
POST_LOGOUT_URI = "http://127.0.0.1:9/signed-out"  # never contacted, like REDIRECT_URI
SIGN_IN_SCOPE = "openid email offline_access"
WAIT_SECONDS = 15.0  # the bound of every wait for a node's background work
WRONG = "not the password at all"
ACCOUNT_ADDRESS_LIMIT = 3
# Both nodes: keys re-read every second and published a moment before they sign (the shortest
# windows the settings allow); a small per-account-and-address sign-in budget.
NODE_SETTINGS = {
    "IDP_KEY_REFRESH_SECONDS": "1",
    "IDP_JWKS_MAX_AGE_SECONDS": "0",
    "IDP_KEY_PREPUBLICATION_SECONDS": "2",
    "IDP_THROTTLE_ACCOUNT_ADDRESS_LIMIT": str(ACCOUNT_ADDRESS_LIMIT),
    "IDP_DATABASE_POOL_SIZE": "5",
}


# --- the load balancer ---------------------------------------------------------------------------


class ToNode(httpx.BaseTransport):
    """The balancer's choice for one client: a request for the issuer's address goes to one
    node, with the client's address in X-Forwarded-For (the nodes trust it from loopback, as
    they trust their balancer). Another host is never contacted: a relying party's
    redirect_uri is read from Location, not fetched."""

    def __init__(self, issuer: str, port: int, client_address: str) -> None:
        self._issuer = httpx.URL(issuer)
        self._port = port
        self._address = client_address
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        assert (url.scheme, url.host, url.port) == (
            self._issuer.scheme,
            self._issuer.host,
            self._issuer.port,
        ), f"{url} is not at the issuer's address"
        headers = request.headers.copy()
        headers["X-Forwarded-For"] = self._address
        routed = httpx.Request(
            request.method,
            url.copy_with(port=self._port),
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._inner.handle_request(routed)

    def close(self) -> None:
        self._inner.close()


@dataclass
class Node:
    name: str
    port: int
    log_path: Path

    def log(self) -> str:
        return output_of(self.log_path)


@dataclass
class Pair:
    """One client per node, each speaking to the issuer's address; a browser's two share one
    cookie jar."""

    a: httpx.Client
    b: httpx.Client

    def at(self, name: str) -> httpx.Client:
        return {"a": self.a, "b": self.b}[name]

    def cookie(self, name: str) -> str | None:
        return self.a.cookies.get(name)


@dataclass
class Account:
    id: str
    email: str
    password: str


@dataclass
class Cluster:
    issuer: str
    nodes: list[Node]
    cli: Cli
    user: Account
    client_id: str
    client_secret: str

    def rp(self) -> RP:
        """The relying party, with a fresh state, nonce and PKCE pair."""
        return RP(self.client_id, self.client_secret, redirect_uri=REDIRECT_URI)

    @contextlib.contextmanager
    def clients(self, shared_cookies: bool, address: str | None = None) -> Iterator[Pair]:
        """A browser (one cookie jar for both nodes) or a relying party's back channel (no
        cookies shared), from `address` or one of its own (TEST-NET-3)."""
        jar = CookieJar() if shared_cookies else None
        address = address or f"203.0.113.{secrets.randbelow(254) + 1}"
        with contextlib.ExitStack() as stack:
            a, b = (
                stack.enter_context(
                    httpx.Client(
                        base_url=self.issuer,
                        transport=ToNode(self.issuer, node.port, address),
                        cookies=jar if jar is not None else CookieJar(),
                        follow_redirects=False,
                        timeout=10.0,
                    )
                )
                for node in self.nodes
            )
            yield Pair(a, b)


def create_account(cli: Cli, email: str) -> Account:
    """`idp users create`, against the database both nodes use."""
    password = "two nodes " + secrets.token_urlsafe(18)
    user = cli.json("users", "create", email, "--password-stdin", "--json", stdin=password)
    return Account(user["id"], email, password)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A PostgreSQL database of this module's own on IDP_TEST_DATABASE_URL's server, dropped
    afterwards (the suite's per-worker databases are reset per test)."""
    assert PG_URL
    server = make_url(normalize_url(PG_URL))
    name = f"{server.database}_nodes_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def distinct_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Cluster]:
    """Two nodes, started together on an empty database once for the module and stopped
    (SIGTERM, then SIGKILL) however it ends: the same issuer (the balancer's address, where
    nothing listens), the same key-encryption key (an operator's, not a generated development
    file), one database. The user and the client are made once both answer."""
    tmp = tmp_path_factory.mktemp("idp-two-nodes")
    balancer, *ports = distinct_ports(3)
    issuer = f"http://127.0.0.1:{balancer}"
    env = {
        **server_env(tmp, issuer),
        **NODE_SETTINGS,
        "IDP_DATABASE_URL": database,
        "IDP_KEY_ENCRYPTION_KEY": new_key_encryption_key(),
    }
    cli = Cli(env, tmp)
    nodes = [
        Node(name, port, tmp / f"node-{name}.log") for name, port in zip("ab", ports, strict=True)
    ]
    with contextlib.ExitStack() as stack:
        # Both at once, as replicas of one deployment start: each migrates and makes the
        # signing keys it lacks, under the database's locks (README, Several nodes).
        with ThreadPoolExecutor(len(nodes)) as pool:
            starts = [pool.submit(stack.enter_context, started(node, env, tmp)) for node in nodes]
        for start in starts:
            start.result()  # a node that did not start fails here; the stack stops the others
        user, client = register(cli)
        yield Cluster(issuer, nodes, cli, user, client["client_id"], client["client_secret"])


def started(node: Node, env: dict[str, str], tmp: Path) -> contextlib.AbstractContextManager[Any]:
    return running(
        f"idp serve (node {node.name})",
        [*SERVE, "--host", "127.0.0.1", "--port", str(node.port)],
        env,
        tmp,
        f"http://127.0.0.1:{node.port}/health/ready",
        node.log_path,
        split_stderr=True,
    )


def register(cli: Cli) -> tuple[Account, dict[str, Any]]:
    """The user and the relying party of these tests, made with the CLI (as an operator would)
    while both nodes run."""
    client = cli.json(
        "clients", "create", "--name", "Two nodes",
        "--redirect-uri", REDIRECT_URI,
        "--post-logout-redirect-uri", POST_LOGOUT_URI,
        "--grant-type", "authorization_code", "--grant-type", "refresh_token",
        "--scope", "openid", "--scope", "email", "--scope", "offline_access",
        "--json",
    )  # fmt: skip
    return create_account(cli, "nodes@example.com"), client


@pytest.fixture(autouse=True)
def _nodes_output_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    request.node.stash[SERVER_LOGS] = {f"node {n.name}": n.log for n in cluster.nodes}


@pytest.fixture
def browser(cluster: Cluster) -> Iterator[Pair]:
    with cluster.clients(shared_cookies=True) as pair:
        yield pair


@pytest.fixture
def backchannel(cluster: Cluster) -> Iterator[Pair]:
    with cluster.clients(shared_cookies=False) as pair:
        yield pair


# --- a browser and a relying party ---------------------------------------------------------------


def answer_to(rp: RP, response: httpx.Response, issuer: str) -> dict[str, str]:
    """The parameters of the authorization response (RFC 6749 §4.1.2, RFC 9207 iss)."""
    assert response.status_code in (302, 303), f"{response.status_code}: {response.text[:2000]}"
    location = response.headers["location"]
    assert location.startswith(rp.redirect_uri + "?"), location
    params = query_of(location)
    assert params["state"] == rp.state and params["iss"] == issuer, params
    return params


def sign_in(
    browser: Pair, rp: RP, user: Account, issuer: str, route: str = "aaaaa", **params: str
) -> str:
    """The code a sign-in ends with. Each of its five steps (GET /authorize, the login page,
    POST login, the redirects to the consent page, POST consent) goes to the node `route`
    names in its place, reading and submitting the forms the nodes render."""
    steps = iter(browser.at(name) for name in route)
    response = next(steps).get("/authorize", params=rp.authorize_params(**params))
    page = follow(next(steps), response)
    login = only_form(page)
    fields = login.submission(email=user.email, password=user.password)
    response = submit(next(steps), page, fields, login)
    page = follow(next(steps), response)
    consent = only_form(page)
    response = submit(next(steps), page, consent.press("decision", "allow"), consent)
    params_back = answer_to(rp, response, issuer)
    assert "code" in params_back, params_back
    return params_back["code"]


def refresh(http: httpx.Client, rp: RP, refresh_token: str) -> httpx.Response:
    """RFC 6749 §6."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return http.post("/token", data=data, headers=rp.auth())


def tokens_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    return response.json()  # type: ignore[no-any-return]


def error_of(response: httpx.Response) -> str:
    assert response.status_code == 400, f"{response.status_code}: {response.text}"
    return str(response.json()["error"])


def jwks(http: httpx.Client) -> KeySet:
    response = http.get("/jwks.json")
    assert response.status_code == 200, response.text
    return KeySet.import_key_set(response.json())


def published_kids(http: httpx.Client) -> set[str]:
    return {str(key.kid) for key in jwks(http).keys}


def verified(token: str, keys: KeySet) -> jwt.Token:
    """The token, verified with the keys one node publishes (RFC 7517 §5)."""
    return jwt.decode(token, keys, algorithms=["RS256"])


def password_attempt(http: httpx.Client, email: str, password: str) -> httpx.Response:
    """A sign-in with the form the node renders."""
    page = http.get("/login")
    form = only_form(page)
    return submit(http, page, form.submission(email=email, password=password), form)


def audit_export(cli: Cli, event: str) -> list[dict[str, Any]]:
    """`idp audit export --event EVENT`: one JSON object per line."""
    out = cli.run("audit", "export", "--event", event).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --- tests ---------------------------------------------------------------------------------------


def test_nodes_started_together_agree_on_one_signing_key(
    cluster: Cluster, backchannel: Pair
) -> None:
    """Issue 15 (README, Several nodes): two nodes that start at once on an empty database
    migrate it once and make one first signing key between them, under the database's locks;
    both publish the same key set (RFC 7517 §5), with the same validator (RFC 9110 §8.8.3)."""
    # Keys made at start have no actor (`idp keys rotate` is "cli"); one more would show here.
    at_start = [e for e in audit_export(cluster.cli, "key.created") if e["actor"] is None]
    assert len(at_start) == 1, at_start
    documents = [backchannel.at(n).get("/jwks.json") for n in "ab"]
    assert documents[0].content == documents[1].content, [d.text for d in documents]
    assert documents[0].headers["etag"] == documents[1].headers["etag"]


def test_a_sign_in_at_one_node_holds_at_the_other_until_logout(
    cluster: Cluster, browser: Pair, backchannel: Pair
) -> None:
    """OIDC Core §3.1.2 and RFC 6749 §4.1, §6 across nodes: a user signs in at node A, the code
    is redeemed at node B (RFC 7636 §4.6, S256); a refresh at A rotates (RFC 9700 §4.14.2): the
    new refresh token works at B, the old one is reuse and ends the family; the session from A
    is live at B (prompt=none, OIDC Core §3.1.2.1), and RP-Initiated Logout 1.0 §2 at B ends it
    for A too: prompt=none there is login_required, even with the old session cookie."""
    rp = cluster.rp()
    code = sign_in(browser, rp, cluster.user, cluster.issuer, "aaaaa", scope=SIGN_IN_SCOPE)
    # One browser, one cookie jar: A's session cookie goes to B as it would behind a balancer.
    # On this plain-http loopback issuer it is `idp_session`, not `__Host-` and not Secure.
    session_cookie = browser.cookie("idp_session")
    assert session_cookie, browser.a.cookies

    first = tokens_of(redeem(backchannel.b, rp, code))
    claims = verified(first["id_token"], jwks(backchannel.a)).claims
    assert claims["iss"] == cluster.issuer and claims["nonce"] == rp.nonce, claims

    second = tokens_of(refresh(backchannel.a, rp, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    third = tokens_of(refresh(backchannel.b, rp, second["refresh_token"]))
    assert error_of(refresh(backchannel.a, rp, first["refresh_token"])) == "invalid_grant"
    # The reuse revoked the whole family, at both nodes.
    assert error_of(refresh(backchannel.b, rp, third["refresh_token"])) == "invalid_grant"
    reused = audit_export(cluster.cli, "refresh.reused")
    assert [e["subject"]["user_id"] for e in reused] == [cluster.user.id], reused

    silent = rp.authorize_params(scope="openid email", prompt="none")
    assert "code" in answer_to(rp, browser.b.get("/authorize", params=silent), cluster.issuer)

    logout = browser.b.get(
        "/logout",
        params={
            "id_token_hint": second["id_token"],  # signed at A
            "post_logout_redirect_uri": POST_LOGOUT_URI,
            "state": "bye",
        },
    )
    assert logout.status_code == 302, logout.text
    assert logout.headers["location"] == POST_LOGOUT_URI + "?state=bye"

    after = answer_to(rp, browser.a.get("/authorize", params=silent), cluster.issuer)
    assert after.get("error") == "login_required", after
    with cluster.clients(shared_cookies=False) as replay:
        replay.a.cookies.set("idp_session", session_cookie)
        old = answer_to(rp, replay.a.get("/authorize", params=silent), cluster.issuer)
    assert old.get("error") == "login_required", old


def test_a_code_replayed_at_the_other_node_revokes_what_it_issued(
    cluster: Cluster, browser: Pair, backchannel: Pair
) -> None:
    """RFC 6749 §4.1.2 and §10.5 across nodes: a code redeemed at node B and presented again at
    node A is refused, and what B issued for it is revoked at both nodes: B's userinfo (RFC 6750
    §3.1) and introspection (RFC 7662 §2.2) refuse the access token, the refresh token is dead."""
    rp = cluster.rp()
    code = sign_in(browser, rp, cluster.user, cluster.issuer, scope=SIGN_IN_SCOPE)
    issued = tokens_of(redeem(backchannel.b, rp, code))
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert backchannel.b.get("/userinfo", headers=bearer).status_code == 200

    assert error_of(redeem(backchannel.a, rp, code)) == "invalid_grant"
    refused = backchannel.b.get("/userinfo", headers=bearer)
    assert refused.status_code == 401, refused.text
    introspection = backchannel.b.post(
        "/introspect", data={"token": issued["access_token"]}, headers=rp.auth()
    )
    assert introspection.json() == {"active": False}, introspection.text
    assert error_of(refresh(backchannel.b, rp, issued["refresh_token"])) == "invalid_grant"


def test_a_retried_refresh_gets_the_same_successor_at_the_other_node(
    cluster: Cluster, browser: Pair, backchannel: Pair
) -> None:
    """RFC 9700 §4.14.2 and RFC 6749 §6: a client whose refresh response from node A was lost
    retries within the grace period and lands on node B; B hands out the very successor A did
    (an HMAC under a key both derive from the shared KEK) instead of taking the retry for reuse,
    and the family lives on."""
    rp = cluster.rp()
    code = sign_in(browser, rp, cluster.user, cluster.issuer, scope=SIGN_IN_SCOPE)
    first = tokens_of(redeem(backchannel.a, rp, code))
    lost = tokens_of(refresh(backchannel.a, rp, first["refresh_token"]))
    retried = tokens_of(refresh(backchannel.b, rp, first["refresh_token"]))
    assert retried["refresh_token"] == lost["refresh_token"]
    tokens_of(refresh(backchannel.a, rp, retried["refresh_token"]))


def test_each_step_of_a_sign_in_may_land_on_either_node(
    cluster: Cluster, browser: Pair, backchannel: Pair
) -> None:
    """OIDC Core §3.1.2 without sticky sessions: the stored interaction, its binding to this
    browser, the CSRF token (made by one node, checked by the other) and the consent all live
    in the database or come from the shared key, so a sign-in whose steps alternate between the
    nodes ends with a code, which either node redeems."""
    rp = cluster.rp()
    code = sign_in(browser, rp, cluster.user, cluster.issuer, "babba", scope=SIGN_IN_SCOPE)
    tokens = tokens_of(redeem(backchannel.a, rp, code))
    assert verified(tokens["id_token"], jwks(backchannel.b)).claims["nonce"] == rp.nonce


def test_a_rotated_key_is_published_and_trusted_by_both_nodes(
    cluster: Cluster, browser: Pair, backchannel: Pair
) -> None:
    """OIDC Core §10.1.1 and RFC 7517 §5: `idp keys rotate` against the shared database stages
    a key that both nodes publish within the key refresh interval, before it signs; once it is
    active, tokens node A signs with it verify with node B's JWKS and node B's userinfo (OIDC
    Core §5.3) and introspection (RFC 7662 §2.2) accept them. Tokens signed before still verify:
    the retired key stays published."""
    rp = cluster.rp()
    code = sign_in(browser, rp, cluster.user, cluster.issuer, scope=SIGN_IN_SCOPE)
    before = tokens_of(redeem(backchannel.a, rp, code))
    old_kid = verified(before["id_token"], jwks(backchannel.a)).header["kid"]
    assert old_kid in published_kids(backchannel.b)

    staged = cluster.cli.json("keys", "rotate", "--json")
    new_kid = staged["kid"]
    assert staged["state"] == "staged" and new_kid != old_kid, staged
    assert wait_until(
        lambda: all(new_kid in published_kids(backchannel.at(n)) for n in "ab"), WAIT_SECONDS
    ), (published_kids(backchannel.a), published_kids(backchannel.b))

    # Refresh at A until what it signs carries the new kid (once the key has activated).
    latest = before

    def a_signs_with_the_new_key() -> bool:
        nonlocal latest
        latest = tokens_of(refresh(backchannel.a, rp, latest["refresh_token"]))
        return bool(verified(latest["access_token"], jwks(backchannel.a)).header["kid"] == new_kid)

    assert wait_until(a_signs_with_the_new_key, WAIT_SECONDS), latest

    keys_at_b = jwks(backchannel.b)
    for token in (latest["access_token"], latest["id_token"]):
        assert verified(token, keys_at_b).header["kid"] == new_kid
    userinfo = backchannel.b.get(
        "/userinfo", headers={"Authorization": f"Bearer {latest['access_token']}"}
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["email"] == cluster.user.email
    introspection = backchannel.b.post(
        "/introspect", data={"token": latest["access_token"]}, headers=rp.auth()
    )
    assert introspection.status_code == 200, introspection.text
    assert introspection.json()["active"] is True, introspection.json()

    for token in (before["access_token"], before["id_token"]):
        assert verified(token, keys_at_b).header["kid"] == old_kid
    # RFC 9110 §13.1.2: one key set, one validator, whichever node a cache revalidates with.
    etag = backchannel.a.get("/jwks.json").headers["etag"]
    assert backchannel.b.get("/jwks.json", headers={"If-None-Match": etag}).status_code == 304
    states = {k["kid"]: k["state"] for k in cluster.cli.json("keys", "list", "--json")}
    assert (states[old_kid], states[new_kid]) == ("retired", "active"), states


def test_a_revoked_key_is_withdrawn_by_both_nodes(
    cluster: Cluster, browser: Pair, backchannel: Pair
) -> None:
    """OIDC Core §10.1.1, emergency: `idp keys revoke` of the signing key (a leaked key)
    withdraws it from both nodes' JWKS within the key refresh interval, and a token it signed is
    then refused by both nodes' userinfo (RFC 6750 §3.1); both sign with the replacement."""
    rp = cluster.rp()
    code = sign_in(browser, rp, cluster.user, cluster.issuer, scope=SIGN_IN_SCOPE)
    issued = tokens_of(redeem(backchannel.a, rp, code))
    kid = verified(issued["access_token"], jwks(backchannel.a)).header["kid"]

    cluster.cli.run("keys", "revoke", kid)
    assert wait_until(
        lambda: all(kid not in published_kids(backchannel.at(n)) for n in "ab"), WAIT_SECONDS
    ), (published_kids(backchannel.a), published_kids(backchannel.b))
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    for name in "ab":
        refused = backchannel.at(name).get("/userinfo", headers=bearer)
        assert refused.status_code == 401, (name, refused.text)

    renewed = tokens_of(refresh(backchannel.b, rp, issued["refresh_token"]))
    replacement = verified(renewed["access_token"], jwks(backchannel.a)).header["kid"]
    assert replacement != kid
    bearer = {"Authorization": f"Bearer {renewed['access_token']}"}
    assert backchannel.a.get("/userinfo", headers=bearer).status_code == 200


def test_failed_sign_ins_at_both_nodes_share_one_budget(cluster: Cluster, browser: Pair) -> None:
    """Issue 11's throttle across nodes (RFC 6585 §4): failed passwords for one account from
    one address, alternating between the nodes, use up one budget counted in the database; the
    next attempt, at either node, is answered 429 with Retry-After whatever the password, and
    the block's start is one throttle.started event in the audit trail."""
    account = create_account(cluster.cli, "throttled@example.com")
    route = ("ab" * ACCOUNT_ADDRESS_LIMIT)[:ACCOUNT_ADDRESS_LIMIT]
    for name in route:
        refused = password_attempt(browser.at(name), account.email, WRONG)
        assert refused.status_code == 400, (name, refused.status_code, refused.text[:500])
        assert "Incorrect email or password." in refused.text
    for name, password in (("b", WRONG), ("a", account.password)):
        throttled = password_attempt(browser.at(name), account.email, password)
        assert throttled.status_code == 429, (name, throttled.status_code, throttled.text[:500])
        assert int(throttled.headers["retry-after"]) > 0, throttled.headers
        assert "Too many failed attempts" in throttled.text
    started = [
        e
        for e in audit_export(cluster.cli, "throttle.started")
        if e["subject"]["user_id"] == account.id
    ]
    assert len(started) == 1, started
    assert started[0]["details"]["budget"] == "account+address", started


def test_concurrent_failed_sign_ins_at_both_nodes_pass_the_budget_once(cluster: Cluster) -> None:
    """Issue 11's throttle across nodes, at once: failed passwords for one account from one
    address, sent together to both nodes, are judged no more often than the budget allows (each
    reservation is one statement on the shared database), the rest are answered 429, and the
    block starts once, with one throttle.started event."""
    account = create_account(cluster.cli, "raced@example.com")
    address = f"203.0.113.{secrets.randbelow(254) + 1}"
    attempts = 8

    def attempt(i: int) -> int:
        # A browser of its own per attempt (its own CSRF cookie), all from one address.
        with cluster.clients(shared_cookies=True, address=address) as own:
            return password_attempt(own.at("ab"[i % 2]), account.email, WRONG).status_code

    with ThreadPoolExecutor(attempts) as pool:
        statuses = sorted(pool.map(attempt, range(attempts)))
    assert statuses == [400] * ACCOUNT_ADDRESS_LIMIT + [429] * (attempts - ACCOUNT_ADDRESS_LIMIT)
    started = [
        e
        for e in audit_export(cluster.cli, "throttle.started")
        if e["subject"]["user_id"] == account.id
    ]
    assert len(started) == 1, started
