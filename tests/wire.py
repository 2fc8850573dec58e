"""A tiny plain-HTTP server on 127.0.0.1 that misbehaves on purpose, for transport tests that need
real sockets (a body dripped byte by byte, an answer that never comes) and a count of what arrived."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable


class Wire:
    """``with Wire(behaviour) as wire: wire.url``; ``wire.hits`` lists (method, path) as they arrived.

    ``behaviour(wire, handler)`` answers one request; ``wire.stop`` is set when the test is done, so a
    behaviour that waits (``stop.wait(60)``) ends at once then.
    """

    def __init__(self, behaviour: Callable[[Wire, http.server.BaseHTTPRequestHandler], None]) -> None:
        self.hits: list[tuple[str, str]] = []
        self.bytes_sent = 0
        self.stop = threading.Event()
        wire = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                wire.hits.append((self.command, self.path))
                behaviour(wire, self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Wire:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()

    def drip(self, handler, total: int = 200, every: float = 0.2) -> None:
        """Answer 200 with a ``total``-byte body sent one byte every ``every`` seconds."""
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        try:
            for _ in range(total):
                if self.stop.wait(every):
                    return
                handler.wfile.write(b" ")
                handler.wfile.flush()
                self.bytes_sent += 1
        except OSError:
            return  # the client hung up: what the deadline is for


def answer(handler, status: int = 200, body: bytes = b"{}", headers: dict | None = None) -> None:
    """Send a complete answer."""
    handler.send_response(status)
    for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.02)
    return predicate()
