"""A client's jwks_uri for tests: a small HTTP server on 127.0.0.1 that serves a JWK Set and
counts how often it is fetched."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class KeyHost:
    """Serves `document` at `url`; change `document` under `lock` to rotate keys."""

    document: dict[str, object]
    fetches: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def serve_keys(document: dict[str, object]) -> Iterator[KeyHost]:
    host = KeyHost(document=document)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with host.lock:
                host.fetches += 1
                body = json.dumps(host.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
