"""A small HTTP server for a few GET endpoints (``/metrics``, ``/healthz``), bounded in every way.

Why not ``http.server``: ``ThreadingHTTPServer`` spends a thread and a file descriptor on every connection for
as long as the client likes (it has no timeout) and listens with a backlog of 5. A thousand clients that connect
and send nothing took every descriptor of the process (systemd's default limit is 1024): ``/healthz`` stopped
answering and the monitor itself could no longer open files.

Here one thread runs a selector over the listening socket and every connection, and nothing depends on the
client's good will:

- a connection must send its request head (at most :data:`MAX_HEAD_BYTES`) and take its answer within
  ``timeout`` seconds of being accepted, or it is closed: a client that sends nothing, or a byte at a time,
  cannot hold on to it;
- at most ``max_connections`` are open at once. When one more arrives, the connection that has waited longest
  for its request is closed to make room (an idle socket yields to a client that is asking), so ``/healthz``
  keeps answering even while the table is full of stalled sockets; only when every open connection is being
  answered is the newcomer turned away with a 503;
- the listen backlog is :data:`BACKLOG`, so a burst of clients waits in the kernel instead of being refused;
- a bad request gets a one-line plain-text answer (400, 405, 431), never a traceback, and every answer closes
  the connection.

The answer comes from ``handler(path)``, called on the server thread: it must be quick (a metrics scrape takes
milliseconds) and never block.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus

log = logging.getLogger(__name__)

Handler = Callable[[str], tuple[int, bytes, str]]
"""``handler(path) -> (status, body, content type)`` for a GET of ``path`` (query string removed)."""

MAX_HEAD_BYTES = 8192  # request line and headers; Prometheus and curl send a few hundred bytes
BACKLOG = 512  # the kernel caps it at net.core.somaxconn
ACCEPT_BATCH = 64  # connections accepted per wake-up, so a flood cannot starve the ones already open
LIMIT_LOG_SECONDS = 60.0  # at most one "connection limit reached" line this often
TEXT = "text/plain; charset=utf-8"


class _Conn:
    """One client connection: the request head read so far, then the answer being written."""

    __slots__ = ("deadline", "inbuf", "out", "sent", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbuf = bytearray()
        self.out: bytes | None = None  # None while the request is still being read
        self.sent = 0


class HttpServer:
    """Serve ``handler`` on ``bind:port`` from one daemon thread (see the module docstring for the bounds)."""

    def __init__(self, handler: Handler, bind: str, port: int, timeout: float = 5.0, max_connections: int = 256,
                 name: str = "http") -> None:
        self.handler = handler
        self.timeout = timeout
        self.max_connections = max_connections
        self.name = name
        family = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        self.sock = socket.create_server((bind, port), family=family, backlog=BACKLOG)
        self.sock.setblocking(False)
        self.server_address: tuple[str, int] = self.sock.getsockname()[:2]
        self._conns: OrderedDict[_Conn, None] = OrderedDict()  # in accept order, i.e. in deadline order
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self.sock, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopping = False
        self._last_limit_log = -LIMIT_LOG_SECONDS
        self._thread = threading.Thread(target=self._serve, name=f"{name}-http", daemon=True)

    @property
    def connections(self) -> int:
        """Client connections open now (a plain read; other threads may call it)."""
        return len(self._conns)

    def start(self) -> HttpServer:
        """Start serving."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close every connection and release the port."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(5)
        else:
            self._close_all()

    # --- the server thread -------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while not self._stopping:
                first = next(iter(self._conns), None)
                wait = 1.0 if first is None else min(1.0, max(0.0, first.deadline - time.monotonic()))
                for key, mask in self._sel.select(wait):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._handle(key.data, mask)
                self._expire(time.monotonic())
        except Exception:
            log.exception("%s: the HTTP server stopped", self.name)
        finally:
            self._close_all()

    def _handle(self, conn: _Conn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                self._read(conn)
            elif mask & selectors.EVENT_WRITE:
                self._write(conn)
        except Exception:  # a bug with one client must not take the endpoint down for all
            log.exception("%s: a connection failed", self.name)
            self._close(conn)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave the rest in the backlog until a descriptor frees up
                now = time.monotonic()
                if now - self._last_limit_log >= LIMIT_LOG_SECONDS:
                    self._last_limit_log = now
                    log.warning("%s: cannot accept connections: %s", self.name, exc)
                time.sleep(0.1)  # the listener stays readable: do not spin on it
                return
            sock.setblocking(False)
            if len(self._conns) >= self.max_connections and not self._evict_idle():
                self._refuse(sock)
                continue
            conn = _Conn(sock, time.monotonic() + self.timeout)
            self._conns[conn] = None
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _evict_idle(self) -> bool:
        """Close the connection that has waited longest for its request (or, answered, for the client to close);
        False if every one is still being answered."""
        victim = next((c for c in self._conns if c.out is None or c.sent >= len(c.out)), None)
        if victim is None:
            return False
        now = time.monotonic()
        if now - self._last_limit_log >= LIMIT_LOG_SECONDS:
            self._last_limit_log = now
            log.warning("%s: %d connections open (the limit); closing the ones idle longest to serve new ones",
                        self.name, self.max_connections)
        self._close(victim)
        return True

    def _refuse(self, sock: socket.socket) -> None:
        try:
            sock.send(_response(503, b"busy: too many connections\n", TEXT))
        except OSError:
            pass
        sock.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client is done (or went away before finishing its request)
            self._close(conn)
            return
        if conn.out is not None:  # answered: discard what else it sends until it closes (see _write)
            return
        conn.inbuf += data
        end = _head_end(conn.inbuf)
        if end < 0 and len(conn.inbuf) <= MAX_HEAD_BYTES:
            return
        if end < 0 or end > MAX_HEAD_BYTES:
            self._answer(conn, _response(431, f"request head over {MAX_HEAD_BYTES} bytes\n".encode(), TEXT))
            return
        self._answer(conn, self._respond(bytes(conn.inbuf[:end])))

    def _respond(self, head: bytes) -> bytes:
        """The whole answer to one request head."""
        parts = head.split(b"\n", 1)[0].decode("latin-1").strip().split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, b"bad request: expected 'GET /metrics HTTP/1.1'\n", TEXT)
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return _response(405, f"method {method[:20]} not allowed: use GET\n".encode(), TEXT,
                             extra="Allow: GET, HEAD\r\n")
        try:
            status, body, ctype = self.handler(target.split("?", 1)[0])
        except Exception:
            log.exception("%s: answering %s failed", self.name, target[:100])
            status, body, ctype = 500, b"internal error (see the monitor's log)\n", TEXT
        return _response(status, body, ctype, head_only=method == "HEAD")

    def _answer(self, conn: _Conn, data: bytes) -> None:
        conn.out = data
        self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._write(conn)  # most answers fit the socket buffer: done at once

    def _write(self, conn: _Conn) -> None:
        assert conn.out is not None
        try:
            conn.sent += conn.sock.send(conn.out[conn.sent:])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if conn.sent >= len(conn.out):
            # Half-close and wait for the client to close: closing with its bytes unread (a request over the
            # size bound, a body) would send a reset that can destroy the answer before the client reads it.
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
            self._sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def _expire(self, now: float) -> None:
        # Deadlines grow in accept order, so the expired connections are the first ones.
        while self._conns:
            conn = next(iter(self._conns))
            if conn.deadline > now:
                return
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn, None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _drain_wake(self) -> None:
        try:
            self._wake_r.recv(64)
        except OSError:
            pass

    def _close_all(self) -> None:
        for conn in list(self._conns):
            self._close(conn)
        self._sel.close()
        for sock in (self.sock, self._wake_r, self._wake_w):
            sock.close()


def _head_end(buf: bytearray) -> int:
    """Length of the request head in ``buf`` (through the blank line), or -1 while it is incomplete."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = buf.find(sep)
        if i >= 0:
            return i + len(sep)
    return -1


def _response(status: int, body: bytes, ctype: str, head_only: bool = False, extra: str = "") -> bytes:
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("latin-1") + (b"" if head_only else body)
