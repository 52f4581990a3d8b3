"""The real server process, driven over HTTP by a browser-like client and a relying party.

The browser reads the HTML forms the server renders (action, method, hidden fields, the submit
button) instead of knowing their field names, so the test breaks if the pages stop working for
a person, not only if the protocol breaks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.e2e.conftest import REDIRECT_URI, RunningServer
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


# --- a small HTML form reader --------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)  # name -> value, hidden ones included
    buttons: list[tuple[str, str]] = field(default_factory=list)  # named submit buttons

    def submission(self, **values: str) -> dict[str, str]:
        """The fields a browser sends: every input, with `values` typed over them."""
        unknown = set(values) - set(self.inputs)
        assert not unknown, f"the form has no input named {sorted(unknown)}: {self.inputs}"
        return {**self.inputs, **values}

    def press(self, name: str, value: str) -> dict[str, str]:
        """The fields sent when the submit button `name`=`value` is pressed."""
        assert (name, value) in self.buttons, f"no button {name}={value}: {self.buttons}"
        return {**self.inputs, name: value}


class FormParser(HTMLParser):
    """Every <form> of a page a browser without JavaScript shows, with its <input>s and named
    submit <button>s (a `hidden` form, such as the passkey button, is left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            if "hidden" not in a:
                self.forms.append(self._current)
        elif self._current is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("submit", "image"):
                self._current.buttons.append((a["name"], a.get("value", "")))
            elif kind not in ("checkbox", "radio") or "checked" in a:
                self._current.inputs[a["name"]] = a.get("value", "")
        elif tag == "button" and a.get("name") and a.get("type", "submit").lower() == "submit":
            self._current.buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def only_form(response: httpx.Response) -> Form:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    assert response.headers["content-type"].startswith("text/html"), response.headers
    parser = FormParser()
    parser.feed(response.text)
    parser.close()
    assert len(parser.forms) == 1, f"expected one form, found {len(parser.forms)}"
    return parser.forms[0]


def submit(
    browser: httpx.Client, page: httpx.Response, data: dict[str, str], form: Form
) -> httpx.Response:
    """Send a form as a browser does: to its action resolved against the page URL."""
    assert form.method == "post", form
    target = urljoin(str(page.url), form.action)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(str(page.url)))
    return browser.post(target, data=data, headers={"Origin": origin})


def follow(browser: httpx.Client, response: httpx.Response) -> httpx.Response:
    """A redirect, resolved against the URL that answered with it, and then the IdP's own
    redirects (relative: resume, consent) as a browser follows them; a redirect that leaves for
    the relying party is returned, never fetched."""
    assert response.status_code in (302, 303), f"{response.status_code}: {response.text[:2000]}"
    response = browser.get(urljoin(str(response.url), response.headers["location"]))
    for _ in range(5):
        location = response.headers.get("location", "")
        if response.status_code not in (302, 303) or not location.startswith("/"):
            return response
        response = browser.get(urljoin(str(response.url), location))
    raise AssertionError("too many redirects")


# --- relying party helpers -----------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def half_hash(value: str) -> str:
    """OIDC Core §3.1.3.6 at_hash for RS256/ES256/PS256: left half of SHA-256, base64url."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def cookie_attributes(response: httpx.Response, name: str) -> tuple[str, set[str]] | None:
    """(the cookie's name as sent, its lower-cased attribute names) for a Set-Cookie header
    whose name is `name` or carries a prefix before it (`__Host-name`)."""
    for header in response.headers.get_list("set-cookie"):
        first, *attrs = (part.strip() for part in header.split(";"))
        cookie_name = first.split("=", 1)[0]
        if cookie_name.endswith(name):
            return cookie_name, {attr.split("=", 1)[0].lower() for attr in attrs}
    return None


def discovery(server: RunningServer) -> dict[str, Any]:
    response = httpx.get(f"{server.issuer}/.well-known/openid-configuration", timeout=10.0)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def keyset(meta: dict[str, Any]) -> KeySet:
    response = httpx.get(meta["jwks_uri"], timeout=10.0)
    assert response.status_code == 200, response.text
    keys = response.json()
    assert keys["keys"] and all("d" not in k for k in keys["keys"]), "private key material"
    return KeySet.import_key_set(keys)


# --- tests ---------------------------------------------------------------------------------------


def test_discovery_names_this_issuer(server: RunningServer) -> None:
    meta = discovery(server)
    assert meta["issuer"] == server.issuer
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert meta[key].startswith(server.issuer + "/"), (key, meta[key])
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True


def test_login_page_security_headers_and_dev_cookies(
    server: RunningServer, browser: httpx.Client
) -> None:
    page = browser.get("/login")
    assert page.status_code == 200, page.text
    headers = page.headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp, csp
    assert "frame-ancestors 'none'" in csp, csp
    assert "form-action 'self'" in csp, csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in headers  # plain http development issuer
    assert "server" not in headers, headers["server"]
    assert "date" in headers

    csrf = cookie_attributes(page, "idp_csrf")
    assert csrf is not None, page.headers.get_list("set-cookie")
    name, attrs = csrf
    assert name == "idp_csrf"  # no __Host- prefix on http://127.0.0.1
    assert "secure" not in attrs, attrs
    assert {"httponly", "samesite", "path"} <= attrs, attrs

    for path in ("/.well-known/openid-configuration", "/jwks.json", "/no-such-page"):
        response = browser.get(path)
        assert "server" not in response.headers, (path, response.headers["server"])
        assert response.headers["x-frame-options"] == "DENY", path


def test_wrong_password_is_refused(server: RunningServer, browser: httpx.Client) -> None:
    page = browser.get("/login")
    form = only_form(page)
    answer = submit(browser, page, form.submission(email=server.email, password="not it!"), form)
    assert answer.status_code == 400, answer.text
    assert "Incorrect email or password." in answer.text
    assert cookie_attributes(answer, "idp_session") is None


def test_idp_serve_logs_json_lines_with_the_request_id(
    server: RunningServer, browser: httpx.Client
) -> None:
    """Issue 15: `idp serve` writes one JSON object per line to stdout (its default log
    format), uvicorn's lines included; an audit event's line carries the id of the request it
    happened in, which the response returned as X-Request-ID. The password is in no line."""
    page = browser.get("/login")
    form = only_form(page)
    wrong = "not it, " + secrets.token_urlsafe(8)
    answer = submit(browser, page, form.submission(email=server.email, password=wrong), form)
    request_id = answer.headers["x-request-id"]

    def failed_line() -> dict[str, object] | None:
        for line in server.stdout_lines():
            record = json.loads(line)
            if record["event"] == "login.failed" and record.get("request_id") == request_id:
                return dict(record)
        return None

    assert wait_until(lambda: failed_line() is not None), server.log()
    lines = server.stdout_lines()
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "event"} <= set(r) for r in records), lines
    assert any(r["logger"].startswith("uvicorn") for r in records), lines
    assert wrong not in "\n".join(lines) and server.password not in "\n".join(lines)


def test_authorization_code_flow_through_real_server(
    server: RunningServer, browser: httpx.Client
) -> None:
    meta = discovery(server)
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)

    # The relying party sends the browser to the authorization endpoint.
    response = browser.get(
        meta["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": server.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert response.status_code in (302, 303), response.text
    assert urlsplit(response.headers["location"]).path == "/login", response.headers["location"]

    # Sign in with the form the server renders.
    login_page = follow(browser, response)
    login = only_form(login_page)
    assert {"csrf_token", "interaction", "email", "password"} <= set(login.inputs), login
    assert "E2E" in login_page.text  # "to continue to E2E"
    response = submit(
        browser, login_page, login.submission(email=server.email, password=server.password), login
    )
    assert response.status_code == 303, response.text
    session = cookie_attributes(response, "idp_session")
    assert session is not None, response.headers.get_list("set-cookie")
    assert session[0] == "idp_session", session
    assert "secure" not in session[1] and "httponly" in session[1], session
    assert urlsplit(response.headers["location"]).path == "/authorize/resume"

    # The interaction resumes, signed in: the consent page.
    consent_page = follow(browser, response)
    consent = only_form(consent_page)
    assert server.email in consent_page.text
    assert ("decision", "allow") in consent.buttons and ("decision", "deny") in consent.buttons
    assert (
        "form-action 'self' http://127.0.0.1:9" in consent_page.headers["content-security-policy"]
    )
    response = submit(browser, consent_page, consent.press("decision", "allow"), consent)

    # The answer leaves for the relying party; it is read from Location, never fetched.
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = query(location)
    assert params["state"] == [state], params
    assert params["iss"] == [server.issuer], params
    assert "error" not in params, params
    (code,) = params["code"]

    # The relying party redeems the code (client_secret_basic, PKCE verifier).
    token_response = httpx.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(server.client_id, server.client_secret),
        timeout=10.0,
    )
    assert token_response.status_code == 200, token_response.text
    assert token_response.headers["cache-control"] == "no-store"
    tokens = token_response.json()
    assert tokens["token_type"].lower() == "bearer", tokens
    access_token, id_token = tokens["access_token"], tokens["id_token"]

    # The ID token verifies with the published keys and is meant for this client.
    keys = keyset(meta)
    algs = meta["id_token_signing_alg_values_supported"]
    decoded = jwt.decode(id_token, keys, algorithms=algs)
    claims = decoded.claims
    assert decoded.header["alg"] in algs and decoded.header.get("kid"), decoded.header
    assert claims["iss"] == server.issuer
    audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert server.client_id in audience, claims
    assert claims["nonce"] == nonce
    assert claims["at_hash"] == half_hash(access_token), claims
    assert claims["exp"] > time.time() > claims["iat"] - 60, claims
    assert claims["sub"], claims

    # The access token is an RFC 9068 JWT from the same keys.
    at = jwt.decode(access_token, keys, algorithms=algs)
    assert at.header["typ"].lower() in ("at+jwt", "application/at+jwt"), at.header
    assert at.claims["iss"] == server.issuer
    assert at.claims["sub"] == claims["sub"]
    assert at.claims["client_id"] == server.client_id

    # Userinfo, with the access token as a Bearer token.
    userinfo = httpx.get(
        meta["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10.0,
    )
    assert userinfo.status_code == 200, userinfo.text
    info = userinfo.json()
    assert info["sub"] == claims["sub"]
    assert info["email"] == server.email

    # The code is single-use, and a replay revokes what it issued (RFC 6749 §4.1.2).
    replay = httpx.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(server.client_id, server.client_secret),
        timeout=10.0,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    revoked = httpx.get(
        meta["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10.0,
    )
    assert revoked.status_code == 401, revoked.text


def test_client_credentials_client_created_while_server_runs(server: RunningServer) -> None:
    """A client registered with the CLI against the running server's database works at once."""
    service = server.cli.json(
        "clients", "create", "--name", "E2E service",
        "--grant-type", "client_credentials", "--scope", "api.read",
        "--json",
    )  # fmt: skip
    meta = discovery(server)
    response = httpx.post(
        meta["token_endpoint"],
        data={"grant_type": "client_credentials", "scope": "api.read"},
        auth=(service["client_id"], service["client_secret"]),
        timeout=10.0,
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert "id_token" not in tokens and "refresh_token" not in tokens, tokens
    token = jwt.decode(
        tokens["access_token"],
        keyset(meta),
        algorithms=meta["id_token_signing_alg_values_supported"],
    )
    assert token.claims["iss"] == server.issuer
    assert token.claims["client_id"] == service["client_id"]
    assert token.claims["scope"] == "api.read"

    wrong = httpx.post(
        meta["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=(service["client_id"], "not-the-secret"),
        timeout=10.0,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client", wrong.text
