"""A WebSocket client made of raw bytes (RFC 6455), for the handshake and framing
edge cases no library client produces: odd subprotocols, origins, oversized
headers, text frames, MQTT packets split across messages."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

HOST = "127.0.0.1"
TIMEOUT = 10.0
BINARY, TEXT, CLOSE = 0x2, 0x1, 0x8


class RawWebSocket:
    """One connection; ``sock`` may be one already opened (after a PROXY header, or
    wrapped in TLS)."""

    def __init__(self, port: int = 0, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.settimeout(TIMEOUT)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def handshake(self, protocols: str | None = "mqtt", origin: str | None = None,
                  extra: str = "", path: str = "/mqtt") -> tuple[int, dict[str, str]]:
        """Send the upgrade request; the response's status code and headers."""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if protocols is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocols}")
        if origin is not None:
            lines.append(f"Origin: {origin}")
        if extra:
            lines.append(extra)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.read_response()

    def read_response(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"closed before an HTTP response; got {self.buffer!r}")
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *fields = head.decode("latin-1").split("\r\n")
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status.split()[1]), headers

    def send(self, payload: bytes, opcode: int = BINARY, fin: bool = True) -> None:
        """One masked frame, as a client must send."""
        mask = os.urandom(4)
        first = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", first, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _need(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"timed out; buffered {self.buffer!r}") from None
            except ConnectionResetError:
                data = b""
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def receive(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, as a server sends them)."""
        deadline = time.monotonic() + timeout
        first, second = self._need(2, deadline)
        assert not second & 0x80, "server frames are not masked"
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8, deadline))[0]
        return first & 0x0F, self._need(n, deadline)

    def ends(self, timeout: float = TIMEOUT) -> list[int]:
        """Read until the server closes the TCP connection; the opcodes it sent first."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                seen.append(self.receive(max(deadline - time.monotonic(), 0.001))[0])
            except EOFError:
                return seen
