"""A loopback TCP proxy that a test can cut and heal: the network faults of cluster tests.

`TcpProxy(target_port)` listens on a free 127.0.0.1 port and forwards every connection to
the target. `cut()` breaks the path: open connections are reset and new ones are accepted
and dropped at once, so a client sees its peer vanish rather than wait on a timeout.
`cut("to_target")` or `cut("from_target")` cuts one direction only: bytes going that way
are swallowed while the other direction keeps flowing (a half-broken link).

With `identify`, the proxy reads the start of each connection and asks it who the sender
is (for HTTP, a request header), so cuts can name a sender: `cut(source="node-2")` cuts
only node-2's connections through this proxy. One such proxy in front of each node is
how cluster tests cut single links between nodes that learn each other's addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

BOTH, TO_TARGET, FROM_TARGET = "both", "to_target", "from_target"
DIRECTIONS = (BOTH, TO_TARGET, FROM_TARGET)
CHUNK_BYTES = 64 * 1024
MAX_IDENTIFY_BYTES = 64 * 1024  # a sender that has not said who it is by then stays anonymous
IDENTIFY_TIMEOUT_S = 5.0

Identify = Callable[[bytes], "str | None"]


def http_header_identity(header: str) -> Identify:
    """An `identify` that names a connection by a header of its first HTTP request.

    Returns None while the headers are incomplete, "" when they lack the header.
    """
    wanted = header.lower().encode() + b":"

    def identify(head: bytes) -> str | None:
        end = head.find(b"\r\n\r\n")
        if end < 0:
            return None
        for line in head[:end].split(b"\r\n")[1:]:
            if line.lower().startswith(wanted):
                return line[len(wanted):].strip().decode("latin-1")
        return ""

    return identify


@dataclass(eq=False)
class _Connection:
    """One client connection and its upstream twin."""

    source: str
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; `cut` and `heal` make and mend partitions."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *, identify: Identify | None = None,
                 name: str = "") -> None:
        self.target = (target_host, target_port)
        self.identify = identify
        self.name = name or f"proxy->{target_port}"
        self.port = 0
        self.accepted = 0
        self.swallowed_bytes = 0  # dropped by one-way cuts: lets a test see a cut take effect
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # Cut directions per sender; the key "" holds the cuts that apply to every sender.
        self._cuts: dict[str, set[str]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._on_client, sock=sock)
        return self

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        # Aborted sockets end every handler by themselves; cancelling a connection
        # handler would make asyncio's stream server log it as an error.
        for writer in self._handlers.values():
            writer.transport.abort()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    # -- faults ----------------------------------------------------------------------

    def cut(self, direction: str = BOTH, *, source: str = "") -> None:
        """Cut every connection (or only `source`'s) in `direction`; open ones too."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        self._cuts.setdefault(source, set()).add(direction)
        for conn in list(self._connections):
            if BOTH in self._blocked(conn.source):
                conn.abort()

    def heal(self, *, source: str | None = None) -> None:
        """Mend the cuts of `source`, or every cut when no source is given."""
        if source is None:
            self._cuts.clear()
        else:
            self._cuts.pop(source, None)

    @property
    def is_cut(self) -> bool:
        return any(self._cuts.values())

    def _blocked(self, source: str) -> set[str]:
        blocked = self._cuts.get("", set()) | self._cuts.get(source, set())
        if TO_TARGET in blocked and FROM_TARGET in blocked:
            blocked.add(BOTH)
        return blocked

    # -- forwarding ------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            writer.transport.abort()
        finally:
            self._handlers.pop(task, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, source = await self._read_identity(reader)
        if BOTH in self._blocked(source):
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        conn = _Connection(source, writer, up_writer)
        self._connections.add(conn)
        if head and TO_TARGET not in self._blocked(source):
            up_writer.write(head)
        conn.tasks = [
            asyncio.create_task(self._pump(conn, reader, up_writer, TO_TARGET)),
            asyncio.create_task(self._pump(conn, up_reader, writer, FROM_TARGET)),
        ]
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._connections.discard(conn)
            conn.abort()

    async def _read_identity(self, reader: asyncio.StreamReader) -> tuple[bytes, str]:
        if self.identify is None:
            return b"", ""
        head = b""
        async with asyncio.timeout(IDENTIFY_TIMEOUT_S):
            while len(head) < MAX_IDENTIFY_BYTES:
                chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    break
                head += chunk
                source = self.identify(head)
                if source is not None:
                    return head, source
        return head, ""

    async def _pump(self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        try:
            while True:
                chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    break
                if direction in self._blocked(conn.source):
                    self.swallowed_bytes += len(chunk)
                    continue  # a one-way cut: the bytes are lost on the wire
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            # Half-close so the other side sees EOF as it would from a real peer.
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()
