"""bench/token_bench.py still runs against the real server: the refresh scenario, which signs in
through the HTML pages (authorize, login, consent, code exchange) to start its chains and then
follows rotating refresh tokens. A handful of requests on two connections, a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[2] / "bench" / "token_bench.py"


def test_refresh_scenario_signs_in_and_follows_rotation() -> None:
    command = [sys.executable, str(BENCH), "--scenario", "refresh", "--connections", "2"]
    command += ["--warmup", "0", "--seconds", "5", "--requests", "10", "--json"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["scenario"] == "refresh"
    assert figures["requests"] == 10
    assert figures["errors"] == 0
    assert figures["probe"] == {"chains": 2}
    assert figures["server_cpu_s"] is not None
