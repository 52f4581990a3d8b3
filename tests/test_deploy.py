"""The multi-node deployment (issue 15): compose.yaml runs two IdP nodes behind a TLS proxy on
one PostgreSQL, and what the nodes must agree on is the same for both. `docker compose config`
checks the file where Docker exists; the Dockerfile is linted by hadolint in `make lint`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = (
    "IDP_ISSUER",
    "IDP_DATABASE_URL",
    "IDP_KEY_ENCRYPTION_KEY_FILE",
    "IDP_FORWARDED_ALLOW_IPS",
)


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def test_two_nodes_agree_on_issuer_database_kek_and_proxy() -> None:
    services = compose()["services"]
    nodes = [services["idp-a"], services["idp-b"]]
    for name in SHARED:
        values = {node["environment"][name] for node in nodes}
        assert len(values) == 1 and values != {""}, (name, values)
    issuer = nodes[0]["environment"]["IDP_ISSUER"]
    assert issuer.startswith("https://")
    assert nodes[0]["environment"]["IDP_DATABASE_URL"].startswith("postgresql://")
    # The KEK is a mounted secret, never a value in the file.
    assert all(node["secrets"] == ["kek"] for node in nodes)
    assert nodes[0]["environment"]["IDP_KEY_ENCRYPTION_KEY_FILE"] == "/run/secrets/kek"
    assert "IDP_KEY_ENCRYPTION_KEY" not in nodes[0]["environment"]
    assert compose()["secrets"]["kek"]["file"] == "./deploy/kek"


def test_the_proxy_terminates_tls_for_both_nodes_and_checks_readiness() -> None:
    services = compose()["services"]
    assert services["db"]["image"].startswith("postgres:")
    assert "healthcheck" in services["db"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert re.search(r"reverse_proxy idp-a:8000 idp-b:8000", caddyfile)
    assert "health_uri /health/ready" in caddyfile
    assert "localhost:8443" in caddyfile and proxy["ports"] == ["8443:8443"]
    # Every node trusts X-Forwarded-For from the proxy's network only.
    subnet = compose()["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert services["idp-a"]["environment"]["IDP_FORWARDED_ALLOW_IPS"] == subnet


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    has_compose = docker is not None and (
        subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode
        == 0
    )
    if docker is None or not has_compose:
        pytest.skip("no Docker Compose on this machine: the file's structure is checked above")
    result = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
        env={"IDP_DB_PASSWORD": "checked-only", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
