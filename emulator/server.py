"""HTTPS on 127.0.0.1: parsing requests, routing them, applying faults, writing (or breaking) responses.

HTTP/1.1 with keep-alive; every response has a Content-Length (except when a fault deliberately lies).
TLS handshakes happen in the per-connection thread, so a stalled client cannot block ``accept``.
"""

from __future__ import annotations

import logging
import re
import socket
import socketserver
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from .context import Context
from .envelopes import api_error
from .faults import Fault
from .kql import RESULT_TOO_LARGE
from .messages import JSON_TYPE, Request, Response
from .requestlog import RequestRecord
from .routing import Route, Router, family_of_path, gate, unauthorized

if TYPE_CHECKING:
    from .state import State

log = logging.getLogger("emulator")

HOST = "127.0.0.1"

_GATEWAY_PAGE = """<html>
<head><title>{status} Bad Gateway</title></head>
<body>
<center><h1>{status} Bad Gateway</h1></center>
<hr><center>Microsoft-Azure-Application-Gateway/v2</center>
</body>
</html>
"""
_MALFORMED_BODY = b'{"Schema":[{"Name":"Timestamp","Type":"DateTime"}],"Results":[{"Timestamp":<!-- upstream error'


def _cpu_quota_message(seconds: int) -> str:
    return ("You have exceeded processing resources allocated to this tenant. You can run queries again in "
            f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}.")


#: Dedicated host -> the route families it serves (the M365D/XDR ``/api/...`` paths live with MDE's).
HOST_FAMILIES: dict[str, frozenset[str]] = {"graph": frozenset({"graph"}), "mde": frozenset({"mde", "xdr"})}


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTPS server bound to loopback: the state it serves, its routes and its open connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, state: State, router: Router, port: int, context: ssl.SSLContext,
                 family: str | None = None) -> None:
        self.state = state
        self.router = router
        # A dedicated host (Graph or MDE) serves only its family's routes, like graph.microsoft.com and
        # api.securitycenter.microsoft.com; None serves everything, as one proxy in front of all would.
        self.family = family
        self.families = HOST_FAMILIES[family] if family else None
        self.ssl_context = context
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def server_bind(self) -> None:
        """Bind without a reverse name lookup."""
        # HTTPServer.server_bind would call socket.getfqdn(): a name lookup we neither need nor want.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, self.server_address[1]

    def get_request(self) -> tuple[socket.socket, object]:
        """Accept and wrap in TLS; the handshake itself runs in the connection's thread."""
        sock, addr = self.socket.accept()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the client's delayed
        # ACK add ~40 ms to every small response.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: object, client_address: object) -> None:
        """Log connection-level errors at debug level only."""
        # Clients that time out, reset or fail the handshake are part of the job, not errors.
        log.debug("connection error from %s", client_address, exc_info=True)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT`` of this server (what its own links and @odata.context point at)."""
        return f"https://{HOST}:{self.server_address[1]}"

    def track(self, conn: socket.socket, add: bool = True) -> None:
        """Remember open connections so that stop() can close idle keep-alive ones."""
        with self._conn_lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def close_connections(self) -> None:
        """Shut every open connection down (wakes threads blocked reading)."""
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "defender-soar-emulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: EmulatorHTTPServer

    def setup(self) -> None:
        """Set up the streams and finish the TLS handshake in this connection's thread."""
        super().setup()
        self.connection.do_handshake()  # raises on a failed handshake; the server just logs it
        self.server.track(self.connection)

    def finish(self) -> None:
        """Close the streams, tolerating a connection a fault already closed."""
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Route http.server's messages to logging at debug level."""
        log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log method, path and status only: a query string may carry a credential."""
        path = urlsplit(self.path).path if hasattr(self, "path") else "-"
        log.debug("%s %s %s %s", self.address_string(), getattr(self, "command", "-"), path, code)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self._serve()  # noqa: E731

    # ------------------------------------------------------------ reading

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _base_url(self) -> str:
        """scheme://host:port as the client addressed us (``localhost`` or ``127.0.0.1``), for links we send back."""
        host = (self.headers.get("Host") or "").strip()
        if re.fullmatch(r"(?:localhost|127\.0\.0\.1):\d{1,5}", host, re.IGNORECASE):
            return f"https://{host.lower()}"
        return self.server.base_url

    def _request(self) -> Request:
        url = urlsplit(self.path)
        return Request(
            method=self.command,
            path=unquote(url.path) or "/",
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
            base_url=self._base_url(),
            client=str(self.client_address[0]) if self.client_address else "",
        )

    # ------------------------------------------------------------ answering

    def _serve(self) -> None:
        state = self.server.state
        req = self._request()
        server = self.server
        route, params, other_method = server.router.match(req.method, req.path, server.families)
        family = route.family if route else family_of_path(req.path)
        if route is None and server.families is not None and family not in server.families:
            family = server.family or family  # a path for another host: this host answers, in its own envelope
        ctx = Context(state, req, params, family)
        # The control endpoints are never faulted: they are how faults get disarmed.
        fault = None if family == "admin" else state.faults.take(req.method, req.path, family)

        if fault is not None and fault.kind == "drop":
            self._record(req, 0, fault)
            self._drop(reset=fault.reset)
            return
        if fault is None or fault.kind in ("slow", "truncated"):
            resp = self._normal(ctx, route, other_method)
        else:
            resp = self._faulty(ctx, fault)
        if fault is not None:
            resp.headers.extend(fault.headers.items())
        self._record(req, resp.status, fault)

        if fault is not None and fault.kind == "slow":
            # Waits on the stop event, so stopping the emulator never waits for a slow fault.
            if state.stop_event.wait(fault.delay):
                self._drop(reset=False)
                return
        if fault is not None and fault.kind == "truncated":
            self._write_truncated(resp, fault.full_length)
        else:
            self._write(resp)

    def _normal(self, ctx: Context, route: Route | None, other_method: bool) -> Response:
        req = ctx.req
        if route is None:
            if other_method:
                return api_error(ctx.family, 405, f"The HTTP method '{req.method}' is not allowed for this resource.",
                                 req, code="MethodNotAllowed")
            if self.server.families is not None and family_of_path(req.path) not in self.server.families:
                segment = req.path.strip("/").split("/", 1)[0]
                if ctx.family == "graph":
                    return api_error("graph", 404, f"Resource not found for the segment '{segment}'.", req)
                return api_error(ctx.family, 404, f"No HTTP resource was found that matches the request URI "
                                                  f"'{req.base_url}{req.path}'.", req)
            if ctx.family == "graph":
                segment = req.path.rstrip("/").rsplit("/", 1)[-1]
                return api_error("graph", 400, f"Resource not found for the segment '{segment}'.", req)
            return api_error(ctx.family, 404, f"No HTTP resource was found that matches the request URI "
                                              f"'{req.base_url}{req.path}'.", req)
        denied = gate(ctx, route)
        if denied is not None:
            return denied
        try:
            return route.handler(ctx)
        except Exception:  # a bug in the emulator: answer like the service would, but log it loudly
            log.exception("emulator handler failed for %s %s", req.method, req.path)
            return api_error(ctx.family, 500, None, req)

    def _faulty(self, ctx: Context, fault: Fault) -> Response:
        req, family, kind = ctx.req, ctx.family, fault.kind
        retry = [] if fault.retry_after is None else [("Retry-After", _retry_after(fault.retry_after))]
        if kind == "status":
            assert fault.status is not None
            return api_error(family, fault.status, fault.message, req, code=fault.code, headers=retry)
        if kind == "malformed":
            return Response(200, [fault.body if fault.body is not None else _MALFORMED_BODY],
                            content_type=fault.content_type or JSON_TYPE)
        if kind == "html":
            status = fault.status or 502
            page = fault.body if fault.body is not None else _GATEWAY_PAGE.format(status=status).encode()
            return Response(status, [page], content_type=fault.content_type or "text/html")
        if kind == "expired_token":
            return unauthorized(ctx, "expired")
        if kind == "result_too_large":
            return api_error(family, 400, fault.message or RESULT_TOO_LARGE, req, code=fault.code or "BadRequest")
        if kind == "cpu_quota":
            seconds = fault.retry_after if fault.retry_after is not None else 1
            message = fault.message or _cpu_quota_message(int(float(seconds)) if _is_number(seconds) else 900)
            return api_error(family, 429, message, req, code=fault.code or "TooManyRequests",
                             headers=[("Retry-After", _retry_after(seconds))])
        raise AssertionError(f"unhandled fault kind {kind}")

    def _record(self, req: Request, status: int, fault: Fault | None) -> None:
        state = self.server.state
        state.requests.append(RequestRecord.redacted(
            req.method, req.path, req.query, req.headers, req.body, status, fault.kind if fault else None,
            known_secrets=state.directory.secrets(), base_url=req.base_url))

    # ------------------------------------------------------------ writing

    def _head(self, resp: Response, length: int, close: bool = False) -> None:
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(length))
        for name, value in resp.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _write(self, resp: Response) -> None:
        try:
            self._head(resp, resp.length)
            for part in resp.parts:
                self.wfile.write(part)  # one sendall per part: big bodies go out in one call
        except (OSError, ssl.SSLError):
            self.close_connection = True

    def _write_truncated(self, resp: Response, full_length: bool) -> None:
        body = resp.body()
        cut = body[: len(body) // 2]
        try:
            self._head(resp, len(body) if full_length else len(cut), close=full_length)
            self.wfile.write(cut)
        except (OSError, ssl.SSLError):
            pass
        if full_length:
            self._drop(reset=False)

    def _drop(self, reset: bool) -> None:
        """Close the connection without (the rest of) a response; ``reset`` sends a TCP RST."""
        self.close_connection = True
        conn = self.connection
        try:
            if reset:
                # rfile/wfile keep the descriptor open past close(), and the server would then send a
                # FIN (shutdown(SHUT_WR)). Detach it and close it ourselves with SO_LINGER 0: an RST.
                raw = socket.socket(fileno=conn.detach())
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()
            else:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        except OSError:
            pass


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _retry_after(value: int | float | str) -> str:
    """Retry-After as sent: seconds (``"3"``) or an HTTP-date string passed through as is."""
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value
