"""Fixtures for end-to-end tests: the real `idp` process on a free loopback port.

Everything goes through the command line, as an operator would do it: `idp migrate`,
`idp users create`, `idp clients create` (each run in this process, as tests/cli_runner.py
runs `python -m idp`), then `idp serve` (a real process). The server runs with its own
SQLite file and key-encryption key in a temporary directory, and is always stopped
(SIGTERM, then SIGKILL) when the module's tests are done.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.cli_runner import run_cli

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"  # Debian's package; a browser is never downloaded
# axe-core from tests/interop's npm dependencies (`npm ci --prefix tests/interop`, run by .ci/run).
AXE_CORE = Path(__file__).resolve().parents[1] / "interop" / "node_modules" / "axe-core"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: tests read the Location header
USER_EMAIL = "e2e@example.com"
# The servers a test talks to: name -> their output (stdout, then stderr), shown when it fails.
SERVER_LOGS = pytest.StashKey[dict[str, Callable[[], str]]]()
LOG_TAIL_CHARS = 20_000


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(tmp: Path, issuer: str) -> dict[str, str]:
    """The parent's environment without any IDP_* setting of its own, plus this server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ISSUER=issuer,
        IDP_DATABASE_URL=f"sqlite:///{tmp}/idp.db",
        IDP_KEY_ENCRYPTION_KEY_FILE=str(tmp / "kek"),
        # The cheapest argon2id profile: these tests check behaviour, not cost.
        IDP_PASSWORD_HASH_TIME_COST="1",
        IDP_PASSWORD_HASH_MEMORY_KIB="8",
        IDP_PASSWORD_HASH_PARALLELISM="1",
        IDP_LOG_LEVEL="info",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Cli:
    """`idp ...` with the server's environment, from the temporary directory."""

    env: dict[str, str]
    cwd: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # In this process (tests/cli_runner.py): the same environment, directory, input and
        # exit status as `python -m idp`, without 1.5 s of interpreter start per command.
        result = run_cli(args, self.env, self.cwd, stdin=stdin or "")
        assert result.returncode == 0, (
            f"idp {' '.join(args)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result

    def json(self, *args: str, stdin: str | None = None) -> Any:
        result = self.run(*args, stdin=stdin)
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise AssertionError(
                f"idp {' '.join(args)} did not print JSON:\n{result.stdout}\n{result.stderr}"
            ) from None


@dataclass
class RunningServer:
    issuer: str
    port: int
    tmp: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    cli: Cli
    email: str
    password: str
    client_id: str
    client_secret: str

    def log(self) -> str:
        return output_of(self.log_path)

    def stdout_lines(self) -> list[str]:
        """What the server wrote to stdout: its log lines (stderr is kept apart)."""
        return self.log_path.read_text(errors="replace").splitlines()


def stderr_path(log_path: Path) -> Path:
    return log_path.with_suffix(".stderr")


def output_of(log_path: Path) -> str:
    """stdout, then stderr when the process kept it apart."""
    text = log_path.read_text(errors="replace")
    err = stderr_path(log_path)
    return text + ("\n--- stderr ---\n" + err.read_text(errors="replace") if err.exists() else "")


def _wait_until_ready(
    process: subprocess.Popen[bytes], url: str, log_path: Path, name: str = "idp serve"
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"{name} exited with {process.returncode} before it answered\n"
                f"--- log ---\n{output_of(log_path)}"
            )
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    raise AssertionError(
        f"{name} did not answer {url} within {STARTUP_TIMEOUT:.0f} s ({last_error})\n"
        f"--- log ---\n{output_of(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes], log_path: Path, name: str = "idp serve") -> None:
    """SIGTERM, then SIGKILL; a process that needed the second one fails the teardown."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        raise AssertionError(
            f"{name} ignored SIGTERM for {STOP_TIMEOUT:.0f} s and was killed\n"
            f"--- log ---\n{output_of(log_path)}"
        ) from None


@contextmanager
def running(
    name: str,
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    ready_url: str,
    log_path: Path,
    split_stderr: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process with its output in `log_path` (its stderr beside it, in a .stderr file,
    when `split_stderr`), wait until `ready_url` answers 200, and stop it (SIGTERM, then
    SIGKILL) however the block ends."""
    with log_path.open("wb") as log, contextlib.ExitStack() as files:
        err = files.enter_context(stderr_path(log_path).open("wb")) if split_stderr else None
        process = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=err or subprocess.STDOUT,
        )
    try:
        _wait_until_ready(process, ready_url, log_path, name)
        yield process
    finally:
        _stop(process, log_path, name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test shows the output of the servers it named in `item.stash[SERVER_LOGS]`."""
    report = yield
    if report.failed:
        for name, log in item.stash.get(SERVER_LOGS, {}).items():
            report.sections.append((f"Captured output of {name}", log()[-LOG_TAIL_CHARS:]))
    return report


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("idp-e2e")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    cli = Cli(server_env(tmp, issuer), tmp)

    cli.run("migrate")
    password = "e2e " + secrets.token_urlsafe(18)
    user = cli.json(
        "users", "create", USER_EMAIL, "--password-stdin", "--json", stdin=password + "\n"
    )
    assert user["email"] == USER_EMAIL, user
    client = cli.json(
        "clients", "create", "--name", "E2E",
        "--redirect-uri", REDIRECT_URI,
        "--grant-type", "authorization_code",
        "--scope", "openid", "--scope", "profile", "--scope", "email",
        "--json",
    )  # fmt: skip
    assert client["client_id"] and client["client_secret"], client

    log_path = tmp / "server.log"
    with running(
        "idp serve",
        [sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cli.env,
        tmp,
        f"{issuer}/.well-known/openid-configuration",
        log_path,
        split_stderr=True,
    ) as process:
        yield RunningServer(
            issuer=issuer,
            port=port,
            tmp=tmp,
            log_path=log_path,
            process=process,
            cli=cli,
            email=USER_EMAIL,
            password=password,
            client_id=client["client_id"],
            client_secret=client["client_secret"],
        )


@pytest.fixture
def browser(server: RunningServer) -> Iterator[httpx.Client]:
    """A cookie-keeping client that, like a test reading Location headers, never follows."""
    with httpx.Client(base_url=server.issuer, follow_redirects=False, timeout=10.0) as client:
        yield client


def _unavailable(reason: str) -> None:
    """Skip with the reason; under CI fail instead, since CI must run every browser test."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright, headless, one process for the whole session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        browser.new_context().close()  # fail here, once, if the browser cannot open a page
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's browser bundle, read once; page.evaluate() runs it in a page without
    touching the page's Content-Security-Policy."""
    bundle = AXE_CORE / "axe.min.js"
    if not bundle.is_file():
        _unavailable(f"{bundle} is missing (npm ci --prefix tests/interop)")
    return bundle.read_text(encoding="utf-8")
