"""What a started server holds (issue 16, "RSS at rest"): `idp serve` after `idp migrate`, in a
process of its own, loads no library that only a rarer path needs, and runs uvicorn without a
WebSocket protocol, its malloc arenas capped and anyio's threads sized by the database pool.

Each library named here cost resident memory in every worker, measured by bench/token_bench.py
(`server RSS`): alembic with mako and pygments 8 MiB, httpx with httpcore 3 MiB, the PostgreSQL
dialect on SQLite 4 MiB, psycopg with psycopg_pool on SQLite 10 MiB, pyotp with segno 1 MiB.
Each loads when its path first runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli.test_serve import fresh_env

# Run as the server's process: `idp serve` with uvicorn.run replaced by what a worker does
# (create_app, then its lifespan), then report what that process holds.
SERVE_AND_REPORT = """
import asyncio, json, os, sys
import uvicorn
from anyio import to_thread

def run(app, **kwargs):
    from idp.app import create_app
    built = create_app()
    async def started():
        async with built.router.lifespan_context(built):
            return to_thread.current_default_thread_limiter().total_tokens
    threads = asyncio.run(started())
    print(json.dumps({
        "modules": sorted(sys.modules),
        "ws": kwargs.get("ws"),
        "threads": threads,
        "arenas": os.environ.get("MALLOC_ARENA_MAX"),
    }))

uvicorn.run = run
from idp.cli.main import main
sys.exit(main(["serve", "--port", "0"]))
"""

NOT_AT_REST = (
    "alembic",  # only when the schema is behind
    "mako",
    "httpx",  # the first outbound request (JWKS of a client, logout, webhook, logo)
    "httpcore",
    "pyotp",  # the first TOTP enrolment or code
    "segno",
    "sqlalchemy.dialects.postgresql",  # on SQLite
    "psycopg",  # on SQLite: the driver, its libpq and the loop's pool (idp.db.loop_reads)
    "psycopg_pool",
    "websockets",  # never: nothing here speaks WebSocket
    "zxcvbn",  # the first password chosen
)


def serve_and_report(tmp_path: Path, **env: str) -> dict[str, object]:
    environment = {**fresh_env(), **env}
    migrate = [sys.executable, "-m", "idp", "migrate"]
    subprocess.run(migrate, cwd=tmp_path, env=environment, check=True, capture_output=True)
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_a_started_server_holds_only_what_serving_needs(tmp_path: Path) -> None:
    report = serve_and_report(tmp_path)
    modules = report["modules"]
    assert isinstance(modules, list)
    loaded = {name for name in NOT_AT_REST for m in modules if m.partition(".")[0] == name}
    loaded |= {name for name in NOT_AT_REST if name in modules}
    assert loaded == set()
    assert "idp.outbound" in modules  # the policy is there; its transport is not
    assert report["ws"] == "none"


def test_threads_follow_the_pool_and_malloc_arenas_are_capped(tmp_path: Path) -> None:
    """anyio's default of 40 threads became the pool's 15 connections on SQLite (a thread past
    them only waits for one); two malloc arenas unless the operator chose otherwise."""
    report = serve_and_report(tmp_path)
    assert report["threads"] == 15
    assert report["arenas"] == "2"
    assert serve_and_report(tmp_path, MALLOC_ARENA_MAX="4")["arenas"] == "4"
