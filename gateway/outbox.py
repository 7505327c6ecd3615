"""Writes made while a read is handled, sent together when it is done.

One read from a publisher may hold many packets, each delivered to many clients.
Handed to Twisted one by one, every write costs a ``transport.write`` and, for a
connection with nothing queued, arming the reactor for writability (two
``epoll_ctl`` calls) and a loop iteration to send. Instead, a transport handles a
read between ``begin()`` and ``end()``: a ``BufferedLink`` keeps what is written to
its connection meanwhile, and ``end()`` sends each connection's share at once, as
one buffer, straight to its socket when the kernel takes it all (Twisted queues
the rest). Writes outside a read go to Twisted's buffer, which sends what a loop turn
gathered at once. A TLS connection gets its share
as one write, so one record instead of one per packet; a WebSocket connection
keeps one message per packet.

Neutral: any transport may batch its reads here, whatever the protocol of the
connections it writes to.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

_depth = 0
_dirty: list[BufferedLink] = []


def begin() -> None:
    """A read starts being handled: writes wait for its ``end()``."""
    global _depth
    _depth += 1


def end() -> None:
    """The read is handled: send what it wrote (once the outermost read ends)."""
    global _depth
    _depth -= 1
    if _depth == 0 and _dirty:
        flush()


def flush() -> None:
    """Send every connection's waiting writes."""
    while _dirty:
        links = _dirty[:]
        _dirty.clear()
        for link in links:
            link.flush()


def _direct_socket(transport: Any) -> Any:
    """The socket of a plain TCP connection (writable directly while Twisted has
    nothing queued for it); None for TLS (``listenSSL`` starts it before the
    protocol sees the connection), WebSocket and other wrappers."""
    if (isinstance(transport, tcp.Connection) and not transport.TLS
            and type(transport).write is tcp.Connection.write):
        return transport.socket
    return None


class BufferedLink:
    """A transport as a channel writes to it: batched during reads, direct after.

    Everything else (``loseConnection`` after the pending bytes, producers, peer
    certificates, addresses) is the transport's.
    """

    __slots__ = ("transport", "socket", "parts", "sent", "batch")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.socket = _direct_socket(transport)
        self.parts: list[bytes] | None = None  # writes waiting for the read's end
        self.sent = False  # something went out since the owner last asked (replied())
        # A transport that frames each write (a WebSocket message per packet) is
        # written to as it is.
        self.batch = not getattr(transport, "one_message_per_write", False)

    def write(self, data: bytes) -> None:
        if _depth and self.batch:
            parts = self.parts
            if parts is None:
                _dirty.append(self)
                self.parts = [data]
            else:
                parts.append(data)
        else:
            # Outside a read (a timer, a datagram, a commit releasing acknowledgements):
            # Twisted's buffer gathers what the rest of this loop turn writes.
            self.sent = True
            self.transport.write(data)

    def writeSequence(self, seq: list[bytes]) -> None:
        for data in seq:
            self.write(data)

    def flush(self) -> None:
        parts = self.parts
        if parts is not None:
            self.parts = None
            self._send(parts[0] if len(parts) == 1 else b"".join(parts))

    def _send(self, data: bytes) -> None:
        self.sent = True
        sock = self.socket
        t = self.transport
        if sock is not None and t.connected and not t.disconnecting and not t.dataBuffer and not t._tempDataLen:
            try:
                n = sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                n = 0  # Twisted finds the error when it writes, and closes as usual
            if n == len(data):
                return
            data = data[n:]
        t.write(data)

    def replied(self) -> bool:
        """Whether anything was sent since the last call (a reply carries the ACK)."""
        sent, self.sent = self.sent, False
        return sent

    def discard(self) -> None:
        """The connection is gone: what waits is dropped (``flush`` finds nothing)."""
        self.parts = None

    def loseConnection(self) -> None:
        self.flush()
        self.transport.loseConnection()

    def loseWriteConnection(self) -> None:
        self.flush()
        self.transport.loseWriteConnection()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
