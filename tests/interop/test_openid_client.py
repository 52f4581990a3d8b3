"""Interoperability with panva's openid-client (npm, version pinned in tests/interop/package.json),
a Node.js relying-party library we did not write, against the real server: discovery,
authorization code with PKCE, the authorization response checks (state, RFC 9207 iss), ID token
validation, userinfo, refresh, client credentials, revocation, introspection and the end-session
URL it builds.

tests/interop/openid_client_rp.mjs is the relying party: a long-running node process speaking
JSON lines on stdin/stdout, so that this test can play the browser in the middle of the flow while
openid-client keeps its PKCE verifier, nonce and state in memory. Without `node` on PATH the tests
are skipped, except under CI, where they fail."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e.conftest import REDIRECT_URI, RunningServer
from tests.interop.test_authlib_client import sign_in_and_consent

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "openid_client_rp.mjs"
POST_LOGOUT_REDIRECT_URI = "http://127.0.0.1:9/bye"
READ_TIMEOUT = 60.0
NPM_TIMEOUT = 300.0


def _tool(name: str) -> str:
    """The path of `name`, or skip (fail under CI: CI must run these tests)."""
    path = shutil.which(name)
    if path is None:
        reason = f"`{name}` is not on PATH: the openid-client interop tests need Node.js 20+"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def node() -> str:
    """`node`, with tests/interop/node_modules installed from package-lock.json if missing."""
    node = _tool("node")
    if not (HERE / "node_modules" / "openid-client").is_dir():
        try:
            result = subprocess.run(
                [_tool("npm"), "ci", "--no-audit", "--no-fund"],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"npm ci took more than {NPM_TIMEOUT:.0f} s\n{exc.stdout!r}\n{exc.stderr!r}"
            )
        if result.returncode != 0:
            pytest.fail(
                f"npm ci exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
    return node


class Driver:
    """The node relying party: JSON lines out and in, every read bounded by READ_TIMEOUT."""

    def __init__(self, node: str, env: dict[str, str], stderr_path: Path) -> None:
        self._stderr_path = stderr_path
        with stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [node, str(DRIVER)],
                cwd=HERE,
                env={**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self.process.stdout,), daemon=True
        )
        self._pump_thread.start()

    def _pump(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace")

    def read(self) -> dict[str, Any]:
        """The next message; an {"error": ...} one is returned like any other."""
        try:
            line = self._lines.get(timeout=READ_TIMEOUT)
        except queue.Empty:
            raise AssertionError(
                f"openid-client driver said nothing for {READ_TIMEOUT:.0f} s\n"
                f"--- node stderr ---\n{self.stderr()}"
            ) from None
        assert line is not None, (
            f"openid-client driver exited ({self.process.poll()}) without answering\n"
            f"--- node stderr ---\n{self.stderr()}"
        )
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            raise AssertionError(
                f"openid-client driver printed a line that is not JSON: {line!r}\n"
                f"--- node stderr ---\n{self.stderr()}"
            ) from None
        return message

    def expect(self, key: str) -> dict[str, Any]:
        """The next message, which must carry `key` (not an error)."""
        message = self.read()
        assert key in message and "error" not in message, (
            f"openid-client driver answered {json.dumps(message, indent=2)}\n"
            f"--- node stderr ---\n{self.stderr()}"
        )
        return message

    def write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except OSError as exc:  # node is gone: say why
            raise AssertionError(
                f"could not write to the openid-client driver ({exc!r})\n"
                f"--- node stderr ---\n{self.stderr()}"
            ) from None

    def wait(self) -> int:
        """Node's exit status once it is done."""
        try:
            return self.process.wait(timeout=READ_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"openid-client driver did not exit\n--- node stderr ---\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=READ_TIMEOUT)
        # The reader thread sees the end of stdout once node is gone; only then close it.
        self._pump_thread.join(timeout=READ_TIMEOUT)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


StartDriver = Callable[[str, dict[str, str]], Driver]


@pytest.fixture
def start_driver(node: str, server: RunningServer, tmp_path: Path) -> Iterator[StartDriver]:
    """start_driver(mode, registered_client) -> a running Driver, killed after the test."""
    drivers: list[Driver] = []

    def start(mode: str, registered: dict[str, str]) -> Driver:
        env = {
            "MODE": mode,
            "ISSUER": server.issuer,
            "CLIENT_ID": registered.get("client_id", ""),
            "CLIENT_SECRET": registered.get("client_secret", ""),
            "REDIRECT_URI": REDIRECT_URI,
            "POST_LOGOUT_REDIRECT_URI": POST_LOGOUT_REDIRECT_URI,
        }
        driver = Driver(node, env, tmp_path / f"node-stderr-{len(drivers)}.txt")
        drivers.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.kill()


def register_code_client(server: RunningServer) -> dict[str, str]:
    registered: dict[str, str] = server.cli.json(
        "clients", "create", "--name", "openid-client RP", "--redirect-uri", REDIRECT_URI,
        "--post-logout-redirect-uri", POST_LOGOUT_REDIRECT_URI,
        "--grant-type", "authorization_code", "--grant-type", "refresh_token",
        "--scope", "openid", "--scope", "email", "--scope", "offline_access",
        "--auth-method", "client_secret_basic", "--json",
    )  # fmt: skip
    return registered


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def test_openid_client_code_flow_refresh_and_back_channel_endpoints(
    server: RunningServer, browser: httpx.Client, start_driver: StartDriver
) -> None:
    """OIDC Core §3.1 (with PKCE, RFC 7636 S256, and RFC 9207's iss), §5.3 userinfo, RFC 6749 §6
    refresh with rotation, RFC 7009, RFC 7662 and RP-Initiated Logout 1.0 §2, with openid-client
    doing discovery, the checks on the authorization response and the ID tokens, and every back
    channel request itself; the test is only the browser."""
    registered = register_code_client(server)
    driver = start_driver("code", registered)

    authorization_url = driver.expect("authorization_url")["authorization_url"]
    assert authorization_url.startswith(f"{server.issuer}/authorize?")
    request = query(authorization_url)
    assert request["client_id"] == registered["client_id"]
    assert request["response_type"] == "code" and request["redirect_uri"] == REDIRECT_URI
    assert request["scope"] == "openid email offline_access"
    assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) == 43
    assert request["nonce"] and request["state"]

    location = sign_in_and_consent(browser, authorization_url, server)
    assert location.startswith(REDIRECT_URI + "?")
    response = query(location)
    assert response["state"] == request["state"] and response["iss"] == server.issuer
    driver.write({"callback_url": location})

    result = driver.expect("claims")
    assert driver.wait() == 0, driver.stderr()

    claims = result["claims"]
    assert claims["iss"] == server.issuer and claims["aud"] == registered["client_id"]
    assert claims["nonce"] == request["nonce"]
    assert result["token_type"].lower() == "bearer"
    assert set(result["scope"].split()) == {"openid", "email", "offline_access"}
    assert result["has_refresh_token"] is True

    assert result["userinfo"]["sub"] == claims["sub"]
    assert result["userinfo"]["email"] == server.email

    refreshed = result["refreshed"]
    assert refreshed["refresh_token_rotated"] is True and refreshed["access_token_changed"] is True
    assert refreshed["claims"]["sub"] == claims["sub"]
    assert refreshed["claims"]["iss"] == server.issuer
    assert refreshed["claims"]["aud"] == registered["client_id"]
    assert refreshed["claims"]["auth_time"] == claims["auth_time"]  # OIDC Core §12.2

    before = result["introspection_before"]
    assert before["active"] is True and before["client_id"] == registered["client_id"]
    assert before["sub"] == claims["sub"]
    # Revoking the refresh token revokes its family's access tokens too (RFC 7009 §2.1).
    assert result["introspection_after"] == {"active": False}
    assert result["refresh_token_introspection_after"] == {"active": False}
    assert result["refresh_after_revocation"]["code"] == "invalid_grant"

    end_session_url = result["end_session_url"]
    assert end_session_url.startswith(f"{server.issuer}/logout?")
    logout_request = query(end_session_url)
    assert logout_request["id_token_hint"] == refreshed["id_token"]
    assert logout_request["post_logout_redirect_uri"] == POST_LOGOUT_REDIRECT_URI
    assert logout_request["client_id"] == registered["client_id"]
    logout = browser.get(end_session_url)
    assert logout.status_code == 302, logout.text
    assert logout.headers["location"] == (
        f"{POST_LOGOUT_REDIRECT_URI}?{urlencode({'state': logout_request['state']})}"
    )


@pytest.mark.parametrize(
    ("parameter", "forged", "refusal"),
    [
        ("state", "forged-state", 'unexpected "state" response parameter value'),
        ("iss", "http://127.0.0.1:1", 'unexpected "iss" (issuer) response parameter value'),
    ],
    ids=["state", "iss"],
)
def test_openid_client_rejects_a_tampered_authorization_response(
    server: RunningServer,
    browser: httpx.Client,
    start_driver: StartDriver,
    parameter: str,
    forged: str,
    refusal: str,
) -> None:
    """OIDC Core §3.1.2.7 / RFC 6749 §10.12 (state) and RFC 9207 §2.4 (iss): the genuine
    redirect with one parameter changed is refused, which shows that the checks the test above
    relies on are really made."""
    driver = start_driver("code", register_code_client(server))
    authorization_url = driver.expect("authorization_url")["authorization_url"]
    location = sign_in_and_consent(browser, authorization_url, server)
    parts = urlsplit(location)
    params = query(location)
    assert parameter in params
    tampered = urlunsplit(parts._replace(query=urlencode({**params, parameter: forged})))
    driver.write({"callback_url": tampered})

    answer = driver.read()
    assert "error" in answer, f"openid-client accepted a forged {parameter}: {answer}"
    assert answer["code"] == "OAUTH_INVALID_RESPONSE", answer
    assert refusal in answer["cause"], answer
    assert driver.wait() == 1


def test_openid_client_client_credentials(server: RunningServer, start_driver: StartDriver) -> None:
    """RFC 6749 §4.4 with openid-client, client_secret_post, then RFC 7662 on the token."""
    registered: dict[str, str] = server.cli.json(
        "clients", "create", "--name", "openid-client service",
        "--grant-type", "client_credentials", "--scope", "api.read",
        "--auth-method", "client_secret_post", "--json",
    )  # fmt: skip
    driver = start_driver("client_credentials", registered)
    result = driver.expect("token_type")
    assert driver.wait() == 0, driver.stderr()

    assert result["token_type"].lower() == "bearer" and result["scope"] == "api.read"
    assert isinstance(result["expires_in"], int) and result["expires_in"] > 0
    assert result["has_refresh_token"] is False and result["has_id_token"] is False
    introspection = result["introspection"]
    assert introspection["active"] is True and introspection["client_id"] == registered["client_id"]
    assert introspection["scope"] == "api.read"


def test_openid_client_private_key_jwt(
    server: RunningServer, start_driver: StartDriver, tmp_path: Path
) -> None:
    """RFC 7523 §2.2 / OIDC Core §9 private_key_jwt with openid-client: a service with no shared
    secret. Its ES256 key pair is made in node (the private key cannot even be exported); only
    the public JWK is registered, and the token and introspection requests are authenticated by
    assertions openid-client signs."""
    driver = start_driver("private_key_jwt", {})
    jwks = driver.expect("jwks")["jwks"]
    assert [set(k) for k in jwks["keys"]] == [{"kty", "crv", "x", "y", "kid", "alg", "use"}]
    jwks_file = tmp_path / "service.jwks"
    jwks_file.write_text(json.dumps(jwks))
    registered = server.cli.json(
        "clients", "create", "--name", "openid-client keyed service",
        "--grant-type", "client_credentials", "--scope", "api.read",
        "--auth-method", "private_key_jwt", "--jwks-file", str(jwks_file), "--json",
    )  # fmt: skip
    assert "client_secret" not in registered
    driver.write({"client_id": registered["client_id"]})
    result = driver.expect("token_type")
    assert driver.wait() == 0, driver.stderr()
    assert result["token_type"].lower() == "bearer" and result["scope"] == "api.read"
    assert result["introspection"]["active"] is True
    assert result["introspection"]["client_id"] == registered["client_id"]
