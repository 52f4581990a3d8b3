"""`idp serve` (issue 11, secure defaults): development mode only on a loopback address, and
uvicorn's connection limits from the settings.

Most tests run `main(["serve", ...])` in this process with uvicorn.run replaced, on a fresh
working directory holding nothing, as `make run` does on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from idp.cli.main import is_loopback, main
from idp.keys.kek import new_key_encryption_key
from idp.settings import Settings

HTTPS_ISSUER = "https://id.example.org"
# Nothing binds to it here: serve is refused, or uvicorn.run is replaced.
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104
NETWORK_HOSTS = [
    EVERY_INTERFACE,
    "::",
    "",
    "192.0.2.10",
    "10.0.0.1",
    "2001:db8::1",
    "id.example.org",
]
LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "[::1]", "localhost"]


# The cheapest argon2id profile: these tests check behaviour, not cost.
CHEAP_HASHES = {
    "IDP_PASSWORD_HASH_TIME_COST": "1",
    "IDP_PASSWORD_HASH_MEMORY_KIB": "8",
    "IDP_PASSWORD_HASH_PARALLELISM": "1",
}


def fresh_env() -> dict[str, str]:
    """This environment without any IDP_* setting but CHEAP_HASHES: the built-in defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return {**env, **CHEAP_HASHES}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """The keyword arguments of every uvicorn.run call, made in an empty working directory
    with the built-in settings (and CHEAP_HASHES)."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("IDP_")]:
        monkeypatch.delenv(name)
    for name, value in CHEAP_HASHES.items():
        monkeypatch.setenv(name, value)
    # serve sets it for its workers; this process's environment is back as it was afterwards.
    monkeypatch.setenv("MALLOC_ARENA_MAX", os.environ.get("MALLOC_ARENA_MAX", "2"))
    calls: list[dict[str, Any]] = []

    def run(app: str, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr(uvicorn, "run", run)
    return calls


def nothing_written(folder: Path) -> bool:
    return not (folder / "idp.db").exists() and not (folder / "keys").exists()


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- development mode stays on this machine ----------------------------------------------------


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_addresses(host: str) -> None:
    """Issue 11: 127.0.0.0/8, ::1 and localhost reach only this machine."""
    assert is_loopback(host)


@pytest.mark.parametrize("host", [*NETWORK_HOSTS, "::ffff:192.0.2.10", "localhost.example.org"])
def test_network_addresses(host: str) -> None:
    """Issue 11: any other address (IPv4, IPv6, every interface, a host name) is not loopback."""
    assert not is_loopback(host)


def test_ipv4_mapped_loopback_is_loopback() -> None:
    """RFC 4291 §2.5.5.2: ::ffff:127.0.0.1 is the IPv4 loopback address written in IPv6."""
    assert is_loopback("::ffff:127.0.0.1")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_development_serves_on_loopback(
    served: list[dict[str, Any]], tmp_path: Path, host: str
) -> None:
    """Issue 11: `make run` on a fresh machine (no settings, no key, no database) still starts:
    a plain-http localhost issuer with a generated KEK may serve on a loopback address."""
    assert main(["serve", "--host", host]) == 0
    assert [call["host"] for call in served] == [host]
    assert (tmp_path / "idp.db").exists()
    assert (tmp_path / "keys" / "key-encryption-key").exists()


@pytest.mark.parametrize("host", NETWORK_HOSTS)
def test_plain_http_issuer_is_refused_on_a_network_address(
    served: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    """Issue 11: development mode (a plain-http localhost issuer) on a non-loopback address
    exits non-zero with one line naming what to set, before migrating, generating a key or
    binding."""
    assert main(["serve", "--host", host]) == 1
    message = one_line(capsys)
    assert "not a loopback address" in message
    assert "IDP_ISSUER" in message and "https" in message and "127.0.0.1" in message
    assert served == []
    assert nothing_written(tmp_path)


def test_generated_kek_is_refused_on_a_network_address(
    served: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11: an https issuer does not make the development KEK a production one: with the
    key `make run` generated, `--host 0.0.0.0` exits non-zero naming the KEK settings."""
    assert main(["serve"]) == 0  # a development start generates keys/key-encryption-key
    capsys.readouterr()
    monkeypatch.setenv("IDP_ISSUER", HTTPS_ISSUER)
    assert main(["serve", "--host", EVERY_INTERFACE]) == 1
    message = one_line(capsys)
    assert "generated for development" in message
    assert "IDP_KEY_ENCRYPTION_KEY" in message and "idp keys new-kek" in message
    assert len(served) == 1  # only the development start
    assert main(["serve", "--host", "127.0.0.1"]) == 0  # loopback: as before


def test_operators_kek_and_https_issuer_serve_on_a_network_address(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: production settings (https issuer, the operator's own KEK) serve on every
    interface, as the Dockerfile does."""
    monkeypatch.setenv("IDP_ISSUER", HTTPS_ISSUER)
    monkeypatch.setenv("IDP_KEY_ENCRYPTION_KEY", new_key_encryption_key())
    assert main(["serve", "--host", EVERY_INTERFACE, "--port", "8000"]) == 0
    assert [(call["host"], call["port"]) for call in served] == [(EVERY_INTERFACE, 8000)]


def test_refusal_exits_the_process_non_zero(tmp_path: Path) -> None:
    """Issue 11: `idp serve --host 0.0.0.0` with the built-in (development) settings, as its
    own process: exit status 1, one line on stderr, nothing written or bound."""
    result = subprocess.run(
        [sys.executable, "-m", "idp", "serve", "--host", EVERY_INTERFACE, "--port", "0"],
        capture_output=True,
        text=True,
        env=fresh_env(),
        cwd=tmp_path,
        timeout=60,  # a server that starts anyway fails the test here
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("idp: error: --host 0.0.0.0 is not a loopback address")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert nothing_written(tmp_path)


# --- uvicorn's limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "keep_alive", "concurrency"),
    [
        ({}, 5, 1000),
        ({"IDP_KEEP_ALIVE_TIMEOUT_SECONDS": "2", "IDP_LIMIT_CONCURRENCY": "64"}, 2, 64),
    ],
    ids=["defaults", "settings"],
)
def test_serve_passes_the_connection_limits_to_uvicorn(
    served: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    keep_alive: int,
    concurrency: int,
) -> None:
    """Issue 11: idle keep-alive connections close after IDP_KEEP_ALIVE_TIMEOUT_SECONDS and a
    worker answers 503 past IDP_LIMIT_CONCURRENCY connections or requests, so connections
    cannot pile up without bound (the proxy's header and body timeouts do the rest)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 0
    [call] = served
    assert call["timeout_keep_alive"] == keep_alive
    assert call["limit_concurrency"] == concurrency
    # Proxy headers are create_app's (IDP_FORWARDED_ALLOW_IPS), not uvicorn's: applied twice,
    # a trusted proxy's own address in X-Forwarded-For would be unwrapped twice.
    assert call["server_header"] is False and call["proxy_headers"] is False


def test_forwarded_allow_ips_flag_reaches_every_workers_settings(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--forwarded-allow-ips` sets IDP_FORWARDED_ALLOW_IPS, which each worker's create_app
    reads (uvicorn builds the app from the environment in every worker process)."""
    monkeypatch.setenv("IDP_FORWARDED_ALLOW_IPS", "127.0.0.1")  # restored after the test
    assert main(["serve", "--forwarded-allow-ips", "10.0.0.5,10.0.1.0/24"]) == 0
    assert os.environ["IDP_FORWARDED_ALLOW_IPS"] == "10.0.0.5,10.0.1.0/24"
    assert Settings().forwarded_allow_ips == "10.0.0.5,10.0.1.0/24"


@pytest.mark.parametrize(
    ("args", "env", "access_log", "formatter"),
    [
        ([], {}, False, "JsonFormatter"),
        (["--access-log"], {"IDP_LOG_FORMAT": "text"}, True, "TextFormatter"),
    ],
    ids=["defaults", "access-log-text"],
)
def test_serve_logs_json_by_default_and_request_lines_on_request(
    served: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    access_log: bool,
    formatter: str,
) -> None:
    """Issue 15: uvicorn gets the IdP's logging configuration (JSON lines unless
    IDP_LOG_FORMAT=text) for every worker, and never its own access log: `--access-log` turns
    on the IdP's request lines instead, through IDP_ACCESS_LOG for every worker."""
    monkeypatch.setenv("IDP_ACCESS_LOG", "false")  # and removed again after the test
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", *args]) == 0
    [call] = served
    assert call["access_log"] is False
    assert call["log_config"]["formatters"]["line"]["()"] == f"idp.ops.logs.{formatter}"
    assert Settings().access_log is access_log


def test_several_workers_share_a_fresh_metrics_folder(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: with --workers 2, serve points PROMETHEUS_MULTIPROC_DIR at a new, empty
    folder before the workers start (prometheus-client's multiprocess mode); one worker
    needs none."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # and restored after the test
    assert main(["serve"]) == 0
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == ""
    assert main(["serve", "--workers", "2"]) == 0
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert folder.is_dir() and not any(folder.iterdir())
    assert [call["workers"] for call in served] == [1, 2]
