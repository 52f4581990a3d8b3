"""Benchmark of the token endpoint: the client_credentials grant, end to end over HTTP.

What it measures: how many access tokens (RS256 JWTs) one `idp serve` instance issues per second,
and the latency of each POST /token (from writing the request to reading the whole response
body), with a confidential client authenticating by client_secret_basic. Every request goes the
full way: HTTP parsing, client lookup, secret check, token signing and the audit trail.

How: the script creates a temporary directory (database, key-encryption key, server log), picks a
free port on 127.0.0.1, applies the migrations, creates a client with `idp clients create`,
starts `idp serve` as a subprocess and waits for its discovery document. It then opens
--connections HTTP/1.1 keep-alive connections (raw asyncio streams with pre-built request bytes;
a Python HTTP library would be the bottleneck), runs a warm-up that is not measured, and measures
for --seconds or until --requests responses, whichever comes first. Afterwards it stops the server
(SIGTERM, then SIGKILL on timeout) and removes the temporary directory.

The load generator runs in this process and the server in its own: on a 2-core machine, one core
for a single server worker and one for the load generator. With --workers 2 both compete for the
same two cores, so the figures say more about the machine than about the server.

Run:
    make bench
    .venv/bin/python bench/token_bench.py --seconds 10
    .venv/bin/python bench/token_bench.py --seconds 10 --workers 2 --json
    .venv/bin/python bench/token_bench.py \\
        --database-url postgresql://root@127.0.0.1:5432/test
    .venv/bin/python bench/token_bench.py --url http://127.0.0.1:8000 \\
        --client-id ID --client-secret SECRET              # a server that is already running

Exit status: 0 when every measured request answered 200, 1 when any did not (or the first token
was not a JWT), 2 when the server could not be set up or started, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only target this benchmark will load
DISCOVERY_PATH = "/.well-known/openid-configuration"
START_TIMEOUT_SECONDS = 30.0
EXTERNAL_WAIT_SECONDS = 5.0  # a server that is already running
STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0
# Added to --seconds to bound a phase whose responses stop coming (a hung server).
PHASE_GRACE_SECONDS = 30.0
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024

T = TypeVar("T")


class SetupError(RuntimeError):
    """The server could not be prepared or started; exit status 2."""


class BadResponse(RuntimeError):
    """A response this client cannot parse, or a token that is not a JWT."""


# --------------------------------------------------------------------------------------------
# The load generator: HTTP/1.1 keep-alive over asyncio streams.
# --------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    body: bytes
    keep_alive: bool


def build_token_request(port: int, client_id: str, client_secret: str, scope: str) -> bytes:
    """The whole POST /token request, built once and written as is for every request."""
    # RFC 6749 §2.3.1: client_id and secret are form-urlencoded before the Basic encoding.
    credentials = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    basic = base64.b64encode(credentials.encode()).decode("ascii")
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    body = urlencode(form).encode("ascii")
    head = (
        "POST /token HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        f"Authorization: Basic {basic}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One HTTP/1.1 response: status line, headers, then a Content-Length or chunked body."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("server closed the connection") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadResponse("response header too large") from exc
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise BadResponse(f"bad status line {lines[0][:100]!r}")
    status = int(status_line[1])
    length = -1
    chunked = False
    keep_alive = status_line[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep_alive = token == b"keep-alive" or (keep_alive and token != b"close")
    if chunked:
        body = await _read_chunked(reader)
    elif length >= 0:
        if length > MAX_BODY_BYTES:
            raise BadResponse(f"response body of {length} bytes")
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:  # no framing: the body runs to the end of the connection
        body = await reader.read(MAX_BODY_BYTES)
        keep_alive = False
    return Response(status, body, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        chunk = int(line.split(b";", 1)[0], 16)
        if chunk == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        size += chunk
        if size > MAX_BODY_BYTES:
            raise BadResponse("chunked response body too large")
        parts.append(await reader.readexactly(chunk))
        await reader.readexactly(2)


class Connection:
    """One keep-alive connection to 127.0.0.1 that reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            HOST, self.port, limit=MAX_HEADER_BYTES
        )

    async def request(self, data: bytes) -> Response:
        if self.writer is None or self.reader is None:
            await self.open()
            assert self.writer is not None and self.reader is not None
        self.writer.write(data)
        await self.writer.drain()
        response = await read_response(self.reader)
        if not response.keep_alive:
            await self.close()
        return response

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


@dataclass
class Phase:
    """The shared budget and the results of one phase (warm-up or measurement)."""

    deadline: float
    max_requests: int
    record: bool
    issued: int = 0
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None
    last_done: float = 0.0

    def claim(self) -> bool:
        if self.issued >= self.max_requests or time.perf_counter() >= self.deadline:
            return False
        self.issued += 1
        return True

    def error(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message


async def worker(conn: Connection, request: bytes, phase: Phase) -> None:
    perf_counter = time.perf_counter
    latencies = phase.latencies
    record = phase.record
    while phase.claim():
        start = perf_counter()
        try:
            response = await conn.request(request)
        except (OSError, asyncio.IncompleteReadError, BadResponse, ValueError) as exc:
            phase.error(f"{type(exc).__name__}: {exc}")
            await conn.close()
            try:
                await conn.open()
            except OSError:
                return  # the server is gone; the other connections will notice too
            continue
        end = perf_counter()
        phase.last_done = end
        if record:
            latencies.append(end - start)
        if response.status == 200:
            phase.ok += 1
        else:
            phase.error(f"HTTP {response.status}: {response.body[:500].decode(errors='replace')}")


async def run_phase(
    conns: list[Connection], request: bytes, seconds: float, max_requests: int, record: bool
) -> tuple[Phase, float]:
    start = time.perf_counter()
    phase = Phase(deadline=start + seconds, max_requests=max_requests, record=record)
    if max_requests > 0 and seconds > 0:
        try:
            async with asyncio.timeout(seconds + PHASE_GRACE_SECONDS):
                await asyncio.gather(*(worker(conn, request, phase) for conn in conns))
        except TimeoutError:
            phase.error(f"responses stopped: phase still running {PHASE_GRACE_SECONDS:g} s late")
    duration = (phase.last_done or time.perf_counter()) - start
    return phase, max(duration, 1e-9)


def b64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def check_token_response(response: Response) -> dict[str, Any]:
    """The first answer must be a 200 with a 3-part JWT access token; returns its header."""
    text = response.body[:500].decode(errors="replace")
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


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values, in the values' unit."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(len(ordered) * fraction))
    return ordered[rank - 1]


async def run_load(args: argparse.Namespace, port: int, request: bytes) -> dict[str, Any]:
    conns = [Connection(port) for _ in range(args.connections)]
    try:
        await asyncio.gather(*(conn.open() for conn in conns))
        token = check_token_response(await conns[0].request(request))
        warm, _ = await run_phase(conns, request, args.warmup, args.requests, record=False)
        if warm.errors:
            print(f"warm-up: {warm.errors} errors; first: {warm.first_error}", file=sys.stderr)
        cpu_start = time.process_time()
        phase, duration = await run_phase(conns, request, args.seconds, args.requests, record=True)
        # Near 1.0 the load generator, not the server, sets the pace.
        client_cpu = (time.process_time() - cpu_start) / duration
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    ordered = sorted(phase.latencies)
    ms = 1000.0
    return {
        "requests": phase.ok + phase.errors,
        "errors": phase.errors,
        "duration_s": round(duration, 3),
        "tokens_per_s": round(phase.ok / duration, 1),
        "latency_ms": {
            "p50": round(percentile(ordered, 0.50) * ms, 2),
            "p90": round(percentile(ordered, 0.90) * ms, 2),
            "p99": round(percentile(ordered, 0.99) * ms, 2),
            "max": round(ordered[-1] * ms, 2) if ordered else float("nan"),
        },
        "warmup": {"requests": warm.ok + warm.errors, "errors": warm.errors},
        "client_cpu": round(client_cpu, 2),
        "first_error": phase.first_error,
        "token": token,
    }


def run_async(main: Callable[[], Coroutine[Any, Any, T]], loop: str) -> T:
    """Runs the load on uvloop when it is installed (a faster client), else on asyncio's loop."""
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise SetupError("--loop uvloop: uvloop is not installed") from None
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main())
    return asyncio.run(main())


# --------------------------------------------------------------------------------------------
# The server under test.
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    port: int
    client_id: str
    client_secret: str
    workers: int | None
    database: str
    server_python: str


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


def server_env(port: int, database_url: str, kek_file: Path) -> dict[str, str]:
    # Only the settings given here: an IDP_* variable of the caller's shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ISSUER=f"http://{HOST}:{port}",
        IDP_DATABASE_URL=database_url,
        IDP_KEY_ENCRYPTION_KEY_FILE=str(kek_file),
    )
    return env


def run_cli(idp: Path, cli_args: list[str], env: dict[str, str], cwd: Path) -> str:
    try:
        result = subprocess.run(
            [str(idp), *cli_args],
            env=env,
            cwd=cwd,
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


def create_client(idp: Path, env: dict[str, str], cwd: Path, scope: str) -> tuple[str, str]:
    out = run_cli(
        idp,
        [
            "clients",
            "create",
            "--name",
            f"token-bench-{secrets.token_hex(4)}",
            "--grant-type",
            "client_credentials",
            "--scope",
            scope,
            "--json",
        ],
        env,
        cwd,
    )
    try:
        created = json.loads(out)
        return str(created["client_id"]), str(created["client_secret"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SetupError(f"idp clients create printed no client JSON: {out[:500]!r}") from exc


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
def spawned_server(args: argparse.Namespace) -> Iterator[Target]:
    idp = find_idp(args.idp)
    tmp = Path(tempfile.mkdtemp(prefix="idp-token-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    log_handle = None
    try:
        port = free_port()
        database_url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
        kek_file = Path(args.kek_file).resolve() if args.kek_file else tmp / "key-encryption-key"
        env = server_env(port, database_url, kek_file)
        run_cli(idp, ["migrate"], env, tmp)
        client_id, client_secret = create_client(idp, env, tmp, args.scope)
        log = tmp / "server.log"
        log_handle = log.open("wb")
        command = [str(idp), "serve", "--host", HOST, "--port", str(port)]
        command += ["--workers", str(args.workers)]
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
        yield Target(
            port=port,
            client_id=client_id,
            client_secret=client_secret,
            workers=args.workers,
            database=database_backend(database_url),
            server_python=script_python_version(idp),
        )
        if proc.poll() is not None:
            raise SetupError(f"idp serve exited {proc.returncode} during the load{log_tail(log)}")
    finally:
        if proc is not None:
            stop_server(proc)
        if log_handle is not None:
            log_handle.close()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def running_server(args: argparse.Namespace) -> Iterator[Target]:
    port = urlsplit(args.url).port
    assert port is not None  # checked by parse_args
    wait_until_ready(port, None, None, EXTERNAL_WAIT_SECONDS)
    yield Target(
        port=port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        workers=args.workers if args.workers_given else None,
        database=database_backend(args.database_url),
        server_python="unknown",
    )


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark POST /token (client_credentials) of the idp.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    load = parser.add_argument_group("load")
    load.add_argument("--seconds", type=non_negative_float, default=10.0, help="measured time")
    load.add_argument(
        "--requests", type=positive_int, default=50_000, help="measured requests at most"
    )
    load.add_argument("--warmup", type=non_negative_float, default=2.0, help="unmeasured seconds")
    load.add_argument("--connections", type=positive_int, default=32, help="keep-alive connections")
    load.add_argument("--scope", default="api", help="scope of the client and of each request")
    load.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="client event loop"
    )
    server = parser.add_argument_group("server started by the benchmark")
    server.add_argument("--workers", type=positive_int, default=None, help="uvicorn workers [1]")
    server.add_argument(
        "--database-url",
        help="IDP_DATABASE_URL instead of a temporary SQLite file (with --url: only reported)",
    )
    server.add_argument(
        "--kek-file",
        help="key-encryption key file to reuse (needed to run twice on one PostgreSQL database)",
    )
    server.add_argument("--idp", help="the idp command (default: the one next to this Python)")
    external = parser.add_argument_group("server already running")
    external.add_argument("--url", help=f"http://{HOST}:PORT of a running idp")
    external.add_argument("--client-id")
    external.add_argument("--client-secret")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    args.workers_given = args.workers is not None
    if args.workers is None:
        args.workers = 1
    if args.url is None and (args.client_id or args.client_secret):
        parser.error("--client-id and --client-secret go with --url")
    if args.url is not None:
        check_url(parser, args)
    if args.url is not None and args.kek_file:
        parser.error("--kek-file is for a server the benchmark starts")
    return args


def check_url(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    parts = urlsplit(args.url)
    try:
        port = parts.port
    except ValueError as exc:
        parser.error(f"--url: {exc}")
    if parts.scheme != "http" or parts.hostname != HOST or port is None:
        parser.error(f"--url must be http://{HOST}:PORT; this benchmark loads nothing else")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        parser.error("--url takes no path, query, fragment or user")
    if not (args.client_id and args.client_secret):
        parser.error("--url needs --client-id and --client-secret")


def print_figures(figures: dict[str, Any]) -> None:
    latency = figures["latency_ms"]
    workers = figures["server"]["workers"]
    rows = [
        ("requests", f"{figures['requests']}"),
        ("errors", f"{figures['errors']}"),
        ("duration", f"{figures['duration_s']:.2f} s"),
        ("tokens/s", f"{figures['tokens_per_s']:.1f}"),
        (
            "latency ms",
            f"p50 {latency['p50']:.2f}  p90 {latency['p90']:.2f}  "
            f"p99 {latency['p99']:.2f}  max {latency['max']:.2f}",
        ),
        ("connections", f"{figures['connections']}"),
        ("warm-up", f"{figures['warmup']['requests']} requests, not measured"),
        (
            "server",
            f"{workers if workers is not None else '?'} worker(s), "
            f"{figures['server']['database']}, Python {figures['server']['python']}",
        ),
        ("token", f"{figures['token']['alg']}, {figures['token']['length']} bytes"),
        (
            "client",
            f"Python {figures['client']['python']}, {figures['client']['loop']} loop, "
            f"{figures['client']['cpus']} CPUs, {figures['client_cpu']:.0%} of a core busy",
        ),
    ]
    for name, value in rows:
        print(f"{name:<12} {value}")
    if figures["first_error"]:
        print(f"first error  {figures['first_error']}")


def client_loop_name(choice: str) -> str:
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop the server and remove the files."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = running_server if args.url else spawned_server
    signal.signal(signal.SIGTERM, interrupt)
    try:
        with server(args) as target:
            request = build_token_request(
                target.port, target.client_id, target.client_secret, args.scope
            )
            try:
                figures = run_async(lambda: run_load(args, target.port, request), args.loop)
            except BadResponse as exc:
                print(f"token_bench: {exc}", file=sys.stderr)
                return 1
            except OSError as exc:
                print(f"token_bench: cannot reach the server: {exc}", file=sys.stderr)
                return 2
    except SetupError as exc:
        print(f"token_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("token_bench: interrupted", file=sys.stderr)
        return 130
    figures["connections"] = args.connections
    figures["server"] = {
        "url": f"http://{HOST}:{target.port}",
        "workers": target.workers,
        "database": target.database,
        "python": target.server_python,
    }
    figures["client"] = {
        "python": platform.python_version(),
        "loop": client_loop_name(args.loop),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print_figures(figures)
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
