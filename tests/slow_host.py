"""A misbehaving web host for tests: an HTTP server on 127.0.0.1 that answers, drips, hangs,
floods or redirects, and records every request it is sent.

    with serve_slow("drip", interval=0.25) as host:
        fetch_json(host.url, deadline=1.0)  # must give up after about a second

Behaviours (`host.behaviour`, which a test may change between requests):

- "ok": `status` (200) with `body`, or else `document` as JSON, labelled `content_type`;
  announced in a Content-Length unless `content_length` is False (then the end of the connection
  ends the body). `length` announces another Content-Length than the body's own (a lie);
  `chunked` sends the body with Transfer-Encoding: chunked (HTTP/1.1) instead.
- "status": the same; reads better when the status code is the point.
- "redirect": 302 to `location`.
- "drip": the status line and headers at once, then one byte of body per `interval`: `body`
  with its Content-Length if set, else spaces without end (a JSON document that never ends).
- "drip_headers": the whole "ok" answer one byte per `interval`, status line first.
- "drip_tls": for https:// URLs: a TLS record header, then one byte per `interval`.
- "hang": reads the request and never answers.
- "big": `size` bytes of body, announced in a Content-Length if `content_length`.

Every answer carries the extra `headers` (such as Content-Encoding) after its own.

Every connection is counted in `connections`, every HTTP request recorded in `requests`, and
`sent` counts the bytes written after the headers (every byte, for the drips). When the `with`
block ends, every connection still dripping or hanging is let go (handlers wait on a stop
event), and the server threads are joined with a bound, so a test never hangs on its own host.
Nor does a test of a broken client: no connection is dripped or hung for more than `linger`
seconds, so such a client fails its test instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import repeat
from typing import Any

BEHAVIOURS = ("ok", "status", "redirect", "drip", "drip_headers", "drip_tls", "hang", "big")
JOIN_SECONDS = 5.0


@dataclass(frozen=True)
class Seen:
    """One request the host received."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class SlowHost:
    """What the host does, and what it saw. Change fields under `lock` while serving."""

    behaviour: str = "ok"
    document: object = field(default_factory=dict)
    body: bytes | None = None
    status: int = 200
    content_type: str = "application/json"
    location: str = ""
    interval: float = 1.0
    linger: float = 10.0
    size: int = 1024 * 1024
    content_length: bool = True
    length: int | None = None  # the Content-Length announced, if not the body's own
    chunked: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)  # extra, in every answer
    url: str = ""  # http://127.0.0.1:<port>/
    port: int = 0
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def answer(self) -> bytes:
        """The body "ok" and "status" answer with."""
        return self.body if self.body is not None else json.dumps(self.document).encode()


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that keeps its handler threads, to join them at the end."""

    daemon_threads = True

    def __init__(self, host: SlowHost, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.host = host
        self.handlers: list[tuple[threading.Thread, socket.socket]] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.host.lock:
            self.host.connections += 1
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.handlers.append((thread, request))
        thread.start()


@contextmanager
def serve_slow(behaviour: str = "ok", **settings: Any) -> Iterator[SlowHost]:
    """Serve on 127.0.0.1 (a free port) until the block ends; `settings` are SlowHost fields."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}")
    host = SlowHost(behaviour=behaviour, **settings)

    class Handler(BaseHTTPRequestHandler):
        timeout = JOIN_SECONDS  # a client that connects and sends nothing does not pin a thread

        def handle(self) -> None:
            try:
                if host.behaviour == "drip_tls":
                    self.wfile.write(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record
                    self.drip(repeat(0))
                else:
                    super().handle()
            except OSError:
                pass  # the client hung up, which is what clients of a slow host do

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            with host.lock:
                host.requests.append(seen)
                behaviour = host.behaviour
            if behaviour == "hang":
                host.stop.wait(host.linger)
            elif behaviour == "redirect":
                self.wfile.write(self.head(302, [("Location", host.location), _length(b"")]))
            elif behaviour == "drip" and host.body is None:
                self.wfile.write(self.head(host.status, []))
                self.drip(repeat(ord(" ")))
            elif behaviour == "drip":
                self.wfile.write(self.head(host.status, [_length(host.body or b"")]))
                self.drip(host.body or b"")
            elif behaviour == "drip_headers":
                body = host.answer()
                self.drip(self.head(host.status, [_length(body)]) + body)
            elif behaviour == "big":
                sized = [("Content-Length", str(host.size))] if host.content_length else []
                self.wfile.write(self.head(host.status, sized))
                self.flood(host.size)
            elif host.chunked:
                chunked = [("Transfer-Encoding", "chunked"), ("Connection", "close")]
                self.wfile.write(self.head(host.status, chunked, version="1.1"))
                self.send_chunks(host.answer())
            else:
                body = host.answer()
                announced = len(body) if host.length is None else host.length
                sized = [("Content-Length", str(announced))] if host.content_length else []
                self.wfile.write(self.head(host.status, sized) + body)
                self.tally(len(body))

        do_POST = do_GET

        def head(self, status: int, headers: list[tuple[str, str]], version: str = "1.0") -> bytes:
            lines = [f"HTTP/{version} {status} Slow", f"Content-Type: {host.content_type}"]
            lines += [f"{k}: {v}" for k, v in [*headers, *host.headers]]
            return ("\r\n".join(lines) + "\r\n\r\n").encode()

        def drip(self, data: Iterable[int]) -> None:
            until = time.monotonic() + host.linger
            for byte in data:
                if host.stop.wait(host.interval) or time.monotonic() > until:
                    return
                self.wfile.write(bytes([byte]))
                self.tally(1)

        def send_chunks(self, body: bytes) -> None:
            for start in range(0, len(body), 16384):
                piece = body[start : start + 16384]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.tally(len(piece))
            self.wfile.write(b"0\r\n\r\n")

        def flood(self, size: int) -> None:
            chunk = b"x" * 16384
            while size > 0 and not host.stop.is_set():
                piece = chunk[:size]
                self.wfile.write(piece)
                self.tally(len(piece))
                size -= len(piece)

        def tally(self, n: int) -> None:
            with host.lock:
                host.sent += n

        def log_message(self, *_args: Any) -> None:
            pass

    server = _Server(host, Handler)
    host.port = server.server_address[1]
    host.url = f"http://127.0.0.1:{host.port}/"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(JOIN_SECONDS)
        for handler, connection in server.handlers:
            handler.join(JOIN_SECONDS)
            if handler.is_alive():  # blocked in a socket call: unblock it
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                handler.join(JOIN_SECONDS)


def _length(body: bytes) -> tuple[str, str]:
    return ("Content-Length", str(len(body)))
