"""The load generator of the benchmarks: HTTP/1.1 keep-alive over asyncio streams.

A Python HTTP library would be the bottleneck, so this is a minimal client: requests are bytes
(built once where they never change), responses are parsed just enough to frame the body, and
headers are looked at only when a scenario asks for one (Location, Set-Cookie). Each connection
runs one `Visitor`: what one measured request is (a token request, a whole sign-in flow, ...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

HOST = "127.0.0.1"  # the only target these benchmarks will load
# Added to --seconds to bound a phase whose responses stop coming (a hung server).
PHASE_GRACE_SECONDS = 30.0
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024

T = TypeVar("T")


class SetupError(RuntimeError):
    """The server could not be prepared or started; exit status 2."""


class BadResponse(RuntimeError):
    """A response this client cannot parse, or an answer that is not what was asked for."""


@dataclass
class Response:
    status: int
    body: bytes
    keep_alive: bool
    head: list[bytes] = field(default_factory=list)  # the header lines, parsed only on demand

    def headers(self, name: str) -> list[str]:
        """Every value of one header (case-insensitive name), in order."""
        wanted = name.lower().encode("ascii")
        values = []
        for line in self.head:
            key, _, value = line.partition(b":")
            if key.strip().lower() == wanted:
                values.append(value.strip().decode("latin-1"))
        return values

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode(errors="replace")


def basic_auth(client_id: str, client_secret: str) -> str:
    """The Authorization header value; RFC 6749 §2.3.1: both parts form-urlencoded first."""
    credentials = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(credentials.encode()).decode("ascii")


def build_request(
    method: str,
    target: str,
    port: int,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> bytes:
    """A whole HTTP/1.1 request; a form body gets its Content-Type unless headers name one."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{port}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        if not headers or "Content-Type" not in headers:
            lines.append("Content-Type: application/x-www-form-urlencoded")
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + (body or b"")


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
    return Response(status, body, keep_alive, lines)


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


class Visitor(Protocol):
    """What one connection does for one measured request."""

    async def once(self, conn: Connection) -> str | None:
        """One request (or flow); None when it succeeded, else what went wrong."""
        ...


class Fixed:
    """Pre-built requests written as they are, in turn; a success is a 200."""

    def __init__(self, requests: list[bytes], start: int = 0) -> None:
        self.requests = requests
        self.next = start % len(requests)

    async def once(self, conn: Connection) -> str | None:
        requests = self.requests
        data = requests[self.next]
        self.next = (self.next + 1) % len(requests)
        response = await conn.request(data)
        if response.status == 200:
            return None
        return f"HTTP {response.status}: {response.text()}"


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


async def worker(conn: Connection, visitor: Visitor, phase: Phase) -> None:
    perf_counter = time.perf_counter
    latencies = phase.latencies
    record = phase.record
    once = visitor.once
    while phase.claim():
        start = perf_counter()
        try:
            problem = await once(conn)
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
        if problem is None:
            phase.ok += 1
        else:
            phase.error(problem)


async def run_phase(
    conns: list[Connection],
    visitors: list[Visitor],
    seconds: float,
    max_requests: int,
    record: bool,
) -> tuple[Phase, float]:
    start = time.perf_counter()
    phase = Phase(deadline=start + seconds, max_requests=max_requests, record=record)
    if max_requests > 0 and seconds > 0:
        try:
            async with asyncio.timeout(seconds + PHASE_GRACE_SECONDS):
                await asyncio.gather(
                    *(
                        worker(conn, visitor, phase)
                        for conn, visitor in zip(conns, visitors, strict=True)
                    )
                )
        except TimeoutError:
            phase.error(f"responses stopped: phase still running {PHASE_GRACE_SECONDS:g} s late")
    duration = (phase.last_done or time.perf_counter()) - start
    return phase, max(duration, 1e-9)


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values, in the values' unit."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(len(ordered) * fraction))
    return ordered[rank - 1]


def latency_ms(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    ms = 1000.0
    return {
        "p50": round(percentile(ordered, 0.50) * ms, 2),
        "p90": round(percentile(ordered, 0.90) * ms, 2),
        "p99": round(percentile(ordered, 0.99) * ms, 2),
        "max": round(ordered[-1] * ms, 2) if ordered else float("nan"),
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


def client_loop_name(choice: str) -> str:
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
