"""The benchmark's scenarios: what is registered before the server starts, what is checked once
it runs, and what one measured request is on each connection.

- cc: POST /token, grant_type=client_credentials, client_secret_basic (pre-built bytes).
- refresh: POST /token, grant_type=refresh_token; each connection follows its own rotating
  chain (the successor of every answer is sent next). The chains start from sign-in flows.
- flow: one whole authorization code flow with PKCE by a new browser (its own cookie jar):
  GET /authorize → GET /login → POST /login → GET /authorize/resume → GET /consent →
  POST /consent → the code at the redirect_uri → POST /token with the code_verifier.
- jwks: GET /jwks.json (pre-built bytes).
- introspection: POST /introspect by a resource server (client_secret_basic), in turn over a
  pool of client_credentials access tokens issued before the warm-up (pre-built bytes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from loadgen import (
    HOST,
    BadResponse,
    Connection,
    Fixed,
    Response,
    Visitor,
    basic_auth,
    build_request as build,
)
from server import Cli, Target

# Never contacted: the flow reads the code from the Location header.
REDIRECT_URI = "http://127.0.0.1:9/bench-callback"
FLOW_SCOPE = "openid offline_access"  # offline_access: a refresh token, and consent every time
MAX_FLOW_STEPS = 12
INTROSPECTION_POOL_PER_CONNECTION = 4
# Sign-ins at full speed: the cheapest argon2id (the users are created with it too, so no
# password is rehashed), no cap on interactions per address, and throttle budgets no bench
# reaches (32 parallel sign-ins of one account from one address would wait for slots).
SIGN_IN_ENV = {
    "IDP_PASSWORD_HASH_TIME_COST": "1",
    "IDP_PASSWORD_HASH_MEMORY_KIB": "1024",
    "IDP_PASSWORD_HASH_PARALLELISM": "1",
    "IDP_INTERACTIONS_PER_IP_PER_MINUTE": "0",
    "IDP_THROTTLE_ACCOUNT_ADDRESS_LIMIT": "100000",
    "IDP_THROTTLE_ADDRESS_LIMIT": "100000",
    "IDP_THROTTLE_ACCOUNT_LIMIT": "100000",
    "IDP_THROTTLE_DEVICE_LIMIT": "100000",
}


class FlowFailed(BadResponse):
    """A sign-in flow that did not end in tokens."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def json_answer(response: Response, what: str) -> dict[str, Any]:
    if response.status != 200:
        raise BadResponse(f"{what}: HTTP {response.status}: {response.text()}")
    try:
        answer = json.loads(response.body)
    except ValueError as exc:
        raise BadResponse(f"{what}: not JSON: {response.text()}") from exc
    if not isinstance(answer, dict):
        raise BadResponse(f"{what}: not a JSON object: {response.text()}")
    return answer


def check_token_response(response: Response) -> dict[str, Any]:
    """The first answer must be a 200 with a 3-part JWT access token; returns its header."""
    text = response.text()
    if response.status != 200:
        raise BadResponse(f"first token request: HTTP {response.status}: {text}")
    try:
        answer = json.loads(response.body)
        token = answer["access_token"]
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise BadResponse(f"access_token is not a 3-part JWT: {token[:80]!r}")
        header = b64url_json(parts[0])
        b64url_json(parts[1])
        base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadResponse(
            f"first token response is not a JWT access token ({exc}): {text}"
        ) from exc
    if not isinstance(header, dict) or "alg" not in header:
        raise BadResponse(f"JWT header without alg: {header!r}")
    if str(answer.get("token_type", "")).lower() != "bearer":
        raise BadResponse(f"token_type is {answer.get('token_type')!r}, expected Bearer")
    return {"alg": header["alg"], "expires_in": answer.get("expires_in"), "length": len(token)}


def token_request(port: int, authorization: str, form: dict[str, str]) -> bytes:
    """POST /token with client_secret_basic."""
    headers = {
        "Authorization": authorization,
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    return build("POST", "/token", port, headers, urlencode(form).encode("ascii"))


def cc_request(port: int, client_id: str, client_secret: str, scope: str) -> bytes:
    """The whole client_credentials request, built once and written as is every time."""
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    return token_request(port, basic_auth(client_id, client_secret), form)


# --------------------------------------------------------------------------------------------
# The sign-in flow: a browser reduced to a cookie jar and the two forms of this IdP.
# --------------------------------------------------------------------------------------------

FORM = re.compile(r'<form method="post" action="([^"]*)"[^>]*>(.*?)</form>', re.S | re.I)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass(frozen=True)
class Account:
    """A user and the web client (authorization_code + refresh_token) it signs in to."""

    email: str
    password: str
    client_id: str
    client_secret: str

    @property
    def authorization(self) -> str:
        return basic_auth(self.client_id, self.client_secret)


def update_jar(jar: dict[str, str], response: Response) -> None:
    for cookie in response.headers("set-cookie"):
        pair, _, attributes = cookie.partition(";")
        name, _, value = pair.strip().partition("=")
        if not value or "max-age=0" in attributes.lower().replace(" ", ""):
            jar.pop(name, None)
        else:
            jar[name] = value


def form_submission(page: bytes, account: Account) -> tuple[str, dict[str, str]]:
    """The sign-in form filled in, or the consent form with Allow; (action, fields)."""
    text = page.decode(errors="replace")
    for action, inner in FORM.findall(text):
        fields = {html.unescape(k): html.unescape(v) for k, v in HIDDEN.findall(inner)}
        if action == "/login":
            return action, {**fields, "email": account.email, "password": account.password}
        if action == "/consent":
            return action, {**fields, "decision": "allow"}
    raise FlowFailed(f"no sign-in or consent form on the page: {text[:300]}")


async def sign_in_flow(conn: Connection, port: int, account: Account) -> dict[str, Any]:
    """One authorization code flow with PKCE by a new browser; returns the token answer."""
    verifier = b64url(secrets.token_bytes(32))
    state = secrets.token_urlsafe(12)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": account.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": FLOW_SCOPE,
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": b64url(hashlib.sha256(verifier.encode("ascii")).digest()),
            "code_challenge_method": "S256",
        }
    )
    origin = f"http://{HOST}:{port}"
    jar: dict[str, str] = {}
    method, target, body = "GET", f"/authorize?{query}", None
    code = None
    for _ in range(MAX_FLOW_STEPS):
        headers = {}
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if body is not None:
            headers["Origin"] = origin  # what a browser sends with a same-origin form post
        response = await conn.request(build(method, target, port, headers, body))
        update_jar(jar, response)
        location = response.header("location")
        if response.status in (302, 303) and location:
            if location.startswith(REDIRECT_URI):
                answer = parse_qs(urlsplit(location).query)
                if "error" in answer or answer.get("state") != [state]:
                    raise FlowFailed(f"redirected with {location[:300]}")
                code = answer.get("code", [None])[0]
                break
            parts = urlsplit(location)
            if parts.netloc and parts.netloc != f"{HOST}:{port}":
                raise FlowFailed(f"redirected away to {location[:300]}")
            method, target, body = (
                "GET",
                parts.path + (f"?{parts.query}" if parts.query else ""),
                None,
            )
            continue
        if response.status == 200:
            action, fields = form_submission(response.body, account)
            method, target, body = "POST", action, urlencode(fields).encode("ascii")
            continue
        raise FlowFailed(f"HTTP {response.status} at {target.split('?')[0]}: {response.text(300)}")
    if not code:
        raise FlowFailed(f"no code at the redirect_uri after {MAX_FLOW_STEPS} steps")
    exchange = token_request(
        port,
        account.authorization,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
    )
    answer = json_answer(await conn.request(exchange), "code exchange")
    if "access_token" not in answer:
        raise FlowFailed(f"code exchange without access_token: {answer!r:.300}")
    return answer


def provision_account(cli: Cli) -> dict[str, Any]:
    email = f"bench-{secrets.token_hex(4)}@example.test"
    password = "bench-" + secrets.token_urlsafe(18)
    cli.run(["users", "create", email, "--name", "Bench User", "--password-stdin"], password + "\n")
    client_id, client_secret = cli.create_client(
        [
            "--name",
            f"bench-web-{secrets.token_hex(4)}",
            "--redirect-uri",
            REDIRECT_URI,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid",
            "--scope",
            "offline_access",
            "--auth-method",
            "client_secret_basic",
        ]
    )
    return {"account": Account(email, password, client_id, client_secret)}


# --------------------------------------------------------------------------------------------
# Visitors that are not pre-built bytes.
# --------------------------------------------------------------------------------------------


class Flows:
    """One sign-in flow per request."""

    def __init__(self, port: int, account: Account) -> None:
        self.port = port
        self.account = account

    async def once(self, conn: Connection) -> str | None:
        try:
            await sign_in_flow(conn, self.port, self.account)
        except FlowFailed as exc:
            return str(exc)
        return None


class RefreshChain:
    """A rotating refresh token: every request sends the successor the last one returned.

    Only the body changes, so the head up to Content-Length is built once. A chain broken by
    an error starts again from a new sign-in (inside the failed request's time)."""

    def __init__(self, port: int, account: Account, refresh_token: str) -> None:
        self.port = port
        self.account = account
        self.token = refresh_token
        request = token_request(port, account.authorization, {"grant_type": "refresh_token"})
        self.head = request[: request.index(b"Content-Length:")]

    async def once(self, conn: Connection) -> str | None:
        body = b"grant_type=refresh_token&refresh_token=" + quote(self.token, safe="").encode()
        response = await conn.request(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        if response.status == 200:
            successor = json.loads(response.body).get("refresh_token")
            if successor:
                self.token = successor
                return None
            problem = "refresh answer without refresh_token"
        else:
            problem = f"HTTP {response.status}: {response.text()}"
        await self.restart(conn)
        return problem

    async def restart(self, conn: Connection) -> None:
        answer = await sign_in_flow(conn, self.port, self.account)
        if not answer.get("refresh_token"):
            raise FlowFailed("the code exchange returned no refresh_token")
        self.token = str(answer["refresh_token"])


# --------------------------------------------------------------------------------------------
# The scenarios.
# --------------------------------------------------------------------------------------------


class Scenario:
    name: ClassVar[str]
    unit: ClassVar[str] = "requests"  # what the rate counts: tokens/s, flows/s, requests/s
    probe_label: ClassVar[str] = "probe"
    env: ClassVar[dict[str, str]] = {}  # server settings beyond the benchmark's own

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def provision(self, cli: Cli) -> dict[str, Any]:
        """Registers what the scenario needs, before the server starts; its credentials."""
        return {}

    async def prepare(
        self, target: Target, conns: list[Connection]
    ) -> tuple[list[Visitor], dict[str, Any], str]:
        """Checks the server answers as expected: a visitor per connection, what was seen (for
        the JSON output) and a line saying so."""
        raise NotImplementedError


class ClientCredentials(Scenario):
    name = "cc"
    unit = "tokens"
    probe_label = "token"

    def provision(self, cli: Cli) -> dict[str, Any]:
        client_id, client_secret = cli.create_client(
            [
                "--name",
                f"token-bench-{secrets.token_hex(4)}",
                "--grant-type",
                "client_credentials",
                "--scope",
                self.scope,
            ]
        )
        return {"client_id": client_id, "client_secret": client_secret}

    async def prepare(
        self, target: Target, conns: list[Connection]
    ) -> tuple[list[Visitor], dict[str, Any], str]:
        creds = target.credentials
        request = cc_request(target.port, creds["client_id"], creds["client_secret"], self.scope)
        token = check_token_response(await conns[0].request(request))
        visitor = Fixed([request])
        return [visitor] * len(conns), token, f"{token['alg']}, {token['length']} bytes"


class Jwks(Scenario):
    name = "jwks"

    async def prepare(
        self, target: Target, conns: list[Connection]
    ) -> tuple[list[Visitor], dict[str, Any], str]:
        request = build("GET", "/jwks.json", target.port, {"Accept": "application/json"})
        answer = json_answer(await conns[0].request(request), "GET /jwks.json")
        keys = answer.get("keys")
        if not isinstance(keys, list) or not keys:
            raise BadResponse(f"GET /jwks.json: no keys: {answer!r:.300}")
        algs = sorted({str(k.get("alg")) for k in keys if isinstance(k, dict)})
        visitor = Fixed([request])
        probe = {"keys": len(keys), "algs": algs}
        return [visitor] * len(conns), probe, f"{len(keys)} key(s), {', '.join(algs)}"


class Introspection(Scenario):
    name = "introspection"

    def provision(self, cli: Cli) -> dict[str, Any]:
        issuer = cli.create_client(
            [
                "--name",
                f"bench-cc-{secrets.token_hex(4)}",
                "--grant-type",
                "client_credentials",
                "--scope",
                self.scope,
                "--access-token-ttl",
                "86400",  # the pool outlives any measured run
            ]
        )
        resource_server = cli.create_client(
            [
                "--name",
                f"bench-rs-{secrets.token_hex(4)}",
                "--grant-type",
                "client_credentials",  # a client needs one; the bench never uses it
                "--introspect",
            ]
        )
        return {"issuer": issuer, "resource_server": resource_server}

    async def prepare(
        self, target: Target, conns: list[Connection]
    ) -> tuple[list[Visitor], dict[str, Any], str]:
        creds = target.credentials
        issuer_id, issuer_secret = creds["issuer"]
        issue = cc_request(target.port, issuer_id, issuer_secret, self.scope)
        authorization = basic_auth(*creds["resource_server"])
        headers = {"Authorization": authorization, "Accept": "application/json"}
        pool: list[bytes] = []
        for i in range(len(conns) * INTROSPECTION_POOL_PER_CONNECTION):
            conn = conns[i % len(conns)]
            token = json_answer(await conn.request(issue), "client_credentials")["access_token"]
            body = urlencode({"token": token, "token_type_hint": "access_token"}).encode()
            pool.append(build("POST", "/introspect", target.port, headers, body))
        answer = json_answer(await conns[0].request(pool[0]), "POST /introspect")
        if answer.get("active") is not True:
            raise BadResponse(f"POST /introspect: the token is not active: {answer!r:.300}")
        visitors: list[Visitor] = [
            Fixed(pool, i * INTROSPECTION_POOL_PER_CONNECTION) for i in range(len(conns))
        ]
        probe = {"tokens": len(pool)}
        return visitors, probe, f"a pool of {len(pool)} active access tokens"


class Flow(Scenario):
    name = "flow"
    unit = "flows"
    env = SIGN_IN_ENV

    def provision(self, cli: Cli) -> dict[str, Any]:
        return provision_account(cli)

    async def prepare(
        self, target: Target, conns: list[Connection]
    ) -> tuple[list[Visitor], dict[str, Any], str]:
        account: Account = target.credentials["account"]
        answer = await sign_in_flow(conns[0], target.port, account)
        if not answer.get("refresh_token") or not answer.get("id_token"):
            raise BadResponse("the code exchange returned no ID token or refresh token")
        visitors: list[Visitor] = [Flows(target.port, account) for _ in conns]
        probe = {"scope": FLOW_SCOPE}
        return visitors, probe, f"scope {FLOW_SCOPE}, consent on every flow"


class Refresh(Scenario):
    name = "refresh"
    unit = "tokens"
    env = SIGN_IN_ENV

    def provision(self, cli: Cli) -> dict[str, Any]:
        return provision_account(cli)

    async def prepare(
        self, target: Target, conns: list[Connection]
    ) -> tuple[list[Visitor], dict[str, Any], str]:
        account: Account = target.credentials["account"]
        chains = [RefreshChain(target.port, account, "") for _ in conns]
        # One chain per connection, each from a sign-in of its own, all at once.
        await asyncio.gather(
            *(chain.restart(conn) for chain, conn in zip(chains, conns, strict=True))
        )
        first = chains[0].token
        problem = await chains[0].once(conns[0])
        if problem is not None:
            raise BadResponse(f"first refresh: {problem}")
        if chains[0].token == first:
            raise BadResponse("the refresh token did not rotate")
        return list(chains), {"chains": len(chains)}, f"{len(chains)} chains, rotating"


SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (ClientCredentials, Refresh, Flow, Jwks, Introspection)
}
