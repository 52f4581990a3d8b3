"""The server under test: a temporary `idp serve` (or one already running), its CLI and its CPU.

`spawned_server` creates a temporary directory (SQLite database, key-encryption key, server
log), applies the migrations, lets the scenario register what it needs with the `idp` command
line, starts `idp serve` in a session of its own on a free 127.0.0.1 port and waits for its
discovery document. On the way out it stops the server (SIGTERM, then SIGKILL on its process
group) and removes the directory.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadgen import HOST, SetupError

REPO = Path(__file__).resolve().parent.parent
DISCOVERY_PATH = "/.well-known/openid-configuration"
START_TIMEOUT_SECONDS = 30.0
EXTERNAL_WAIT_SECONDS = 5.0  # a server that is already running
STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    port: int
    pid: int | None  # the server's process (its workers are its children); None: not ours
    workers: int | None
    database: str
    server_python: str
    credentials: dict[str, Any] = field(default_factory=dict)  # what the scenario registered


@dataclass
class Cli:
    """The `idp` command line against the benchmark's database and settings."""

    idp: Path
    env: dict[str, str]
    cwd: Path

    def run(self, cli_args: list[str], stdin: str | None = None) -> str:
        try:
            result = subprocess.run(
                [str(self.idp), *cli_args],
                env=self.env,
                cwd=self.cwd,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SetupError(f"idp {' '.join(cli_args[:2])}: {exc}") from exc
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-2000:]
            raise SetupError(f"idp {' '.join(cli_args[:2])} exited {result.returncode}: {detail}")
        return result.stdout

    def run_json(self, cli_args: list[str], stdin: str | None = None) -> dict[str, Any]:
        out = self.run([*cli_args, "--json"], stdin)
        try:
            answer = json.loads(out)
        except ValueError as exc:
            raise SetupError(
                f"idp {' '.join(cli_args[:2])} printed no JSON: {out[:500]!r}"
            ) from exc
        if not isinstance(answer, dict):
            raise SetupError(f"idp {' '.join(cli_args[:2])} printed {out[:500]!r}")
        return answer

    def create_client(self, cli_args: list[str]) -> tuple[str, str]:
        """`idp clients create ARGS --json`: the new client's id and secret."""
        created = self.run_json(["clients", "create", *cli_args])
        try:
            return str(created["client_id"]), str(created["client_secret"])
        except KeyError as exc:
            raise SetupError(f"idp clients create printed no client: {created!r:.500}") from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def database_backend(url: str | None) -> str:
    if not url:
        return "unknown"
    scheme = urlsplit(url).scheme
    return scheme.split("+", 1)[0] or "unknown"


def find_idp(explicit: str | None) -> Path:
    if explicit:
        if not Path(explicit).is_file():
            raise SetupError(f"--idp {explicit}: no such file")
        return Path(explicit)
    for candidate in (Path(sys.executable).parent / "idp", REPO / ".venv" / "bin" / "idp"):
        if candidate.is_file():
            return candidate
    found = shutil.which("idp")
    if found:
        return Path(found)
    raise SetupError("no `idp` command: install the package (pip install -e .) or pass --idp")


def script_python_version(script: Path) -> str:
    """The Python version of the interpreter in a console script's #! line."""
    with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
        first = script.read_bytes().split(b"\n", 1)[0].decode()
        if first.startswith("#!"):
            interpreter = first[2:].strip().split()[0]
            result = subprocess.run(
                [interpreter, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return result.stdout.strip()
    return platform.python_version()


def server_env(
    port: int, database_url: str, kek_file: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    # Only the settings given here: an IDP_* variable of the caller's shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ISSUER=f"http://{HOST}:{port}",
        IDP_DATABASE_URL=database_url,
        IDP_KEY_ENCRYPTION_KEY_FILE=str(kek_file),
    )
    env.update(extra or {})
    return env


def fetch(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until_ready(
    port: int,
    proc: subprocess.Popen[bytes] | None,
    log: Path | None,
    timeout: float = START_TIMEOUT_SECONDS,
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SetupError(f"idp serve exited {proc.returncode} before answering{log_tail(log)}")
        try:
            status, _ = fetch(port, DISCOVERY_PATH, timeout=2.0)
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200:
                return
            last = f"HTTP {status}"
        time.sleep(0.1)
    raise SetupError(
        f"{DISCOVERY_PATH} did not answer 200 within {timeout:g} s ({last}){log_tail(log)}"
    )


def log_tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- server log (last lines) ---\n" + "\n".join(tail) if tail else ""


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait; SIGKILL its process group when it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            print("idp serve ignored SIGTERM; killing it", file=sys.stderr)
    # The server runs in its own session: its pid is the group id of it and its workers.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def spawned_server(
    *,
    idp_command: str | None,
    database_url: str | None,
    kek_file: str | None,
    workers: int,
    env_extra: dict[str, str],
    provision: Callable[[Cli], dict[str, Any]],
) -> Iterator[Target]:
    """A fresh `idp serve`; `provision` registers the scenario's clients and users first."""
    idp = find_idp(idp_command)
    tmp = Path(tempfile.mkdtemp(prefix="idp-token-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    log_handle = None
    try:
        port = free_port()
        url = database_url or f"sqlite:///{tmp / 'bench.db'}"
        kek = Path(kek_file).resolve() if kek_file else tmp / "key-encryption-key"
        env = server_env(port, url, kek, env_extra)
        cli = Cli(idp, env, tmp)
        cli.run(["migrate"])
        credentials = provision(cli)
        log = tmp / "server.log"
        log_handle = log.open("wb")
        command = [str(idp), "serve", "--host", HOST, "--port", str(port)]
        command += ["--workers", str(workers)]
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until_ready(port, proc, log)
        try:
            yield Target(
                port=port,
                pid=proc.pid,
                workers=workers,
                database=database_backend(url),
                server_python=script_python_version(idp),
                credentials=credentials,
            )
        except RuntimeError as e:  # a failed probe or load (SetupError, BadResponse): and why
            raise type(e)(f"{e}{log_tail(log)}") from e
        if proc.poll() is not None:
            raise SetupError(f"idp serve exited {proc.returncode} during the load{log_tail(log)}")
    finally:
        if proc is not None:
            stop_server(proc)
        if log_handle is not None:
            log_handle.close()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def running_server(
    port: int, workers: int | None, database_url: str | None, credentials: dict[str, Any]
) -> Iterator[Target]:
    wait_until_ready(port, None, None, EXTERNAL_WAIT_SECONDS)
    yield Target(
        port=port,
        pid=None,
        workers=workers,
        database=database_backend(database_url),
        server_python="unknown",
        credentials=credentials,
    )


# --------------------------------------------------------------------------------------------
# CPU time of the server: its process and, with --workers N, every descendant.
# --------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def server_cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of the server and its workers so far; None when it cannot be read."""
    if pid is None or not os.path.isdir(f"/proc/{pid}"):
        return None
    ticks = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(member)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / CLOCK_TICKS


def server_rss_mib(pid: int | None) -> float | None:
    """Resident memory of the server and its workers (VmRSS, shared pages counted in each), in
    MiB; None when it cannot be read."""
    if pid is None or not os.path.isdir(f"/proc/{pid}"):
        return None
    kib = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{member}/status") as status:
            kib += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    return round(kib / 1024, 1)
