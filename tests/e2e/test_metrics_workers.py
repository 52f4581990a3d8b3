"""Metrics with `idp serve --workers 2` (issue 15): each worker counts in its own files under
PROMETHEUS_MULTIPROC_DIR, and a scrape, whichever worker answers it, adds up both."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from idp.ops.metrics import FLUSH_SECONDS
from tests.e2e.conftest import Cli, free_port, running, server_env

pytestmark = pytest.mark.e2e

BATCH = 16
MAX_REQUESTS = 640
# Each worker writes what it counted to its files once a second (idp.ops.metrics.RequestTally).
FLUSHED = FLUSH_SECONDS + 0.5


def live_requests_counted(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "idp_http_requests_total"
                and labels.get("route") == "/health/live"
                and labels.get("status") == "200"
            ):
                return float(sample.value)
    return 0.0


def test_two_workers_metrics_add_up(tmp_path: Path) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = {**server_env(tmp_path, issuer), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    Cli(env, tmp_path).run("migrate")
    args = [sys.executable, "-m", "idp", "serve", "--port", str(port), "--workers", "2"]
    with running("idp serve", args, env, tmp_path, f"{issuer}/health/ready", tmp_path / "log"):
        # Concurrent new connections, until the kernel has handed some to each worker
        # (bounded: it spreads them within a few batches).
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while sent < MAX_REQUESTS and len(serving(folder)) < 2:
                statuses = list(pool.map(lambda _: live(issuer), range(BATCH)))
                assert statuses == [200] * BATCH
                sent += BATCH
                time.sleep(FLUSHED)
        scrapes = [httpx.get(f"{issuer}/metrics", timeout=5) for _ in range(6)]
    assert all(s.status_code == 200 for s in scrapes)
    assert len(serving(folder)) == 2, serving(folder)  # both workers served some
    # Every scrape, from either worker, counts all requests (the scrapes come after).
    assert {live_requests_counted(s.text) for s in scrapes} == {sent}
    assert sum(serving(folder).values()) == sent


def serving(folder: Path) -> dict[str, float]:
    """Each process file that counted /health/live requests, and how many."""
    counts = {path.name: counted_in(path) for path in folder.glob("counter_*.db")}
    return {name: n for name, n in counts.items() if n}


def live(issuer: str) -> int:
    return httpx.get(f"{issuer}/health/live", timeout=5).status_code


def counted_in(path: Path) -> float:
    """The /health/live requests one process's file holds."""
    total = 0.0
    for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
        _, name, labels, _ = json.loads(key)
        if name == "idp_http_requests_total" and labels.get("route") == "/health/live":
            total += value
    return total
