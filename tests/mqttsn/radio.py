"""The far end of a serial line, played by the tests: an XBee coordinator, or a plain board.

Written apart from ``gateway.mqttsn.xbee`` (as a radio vendor would), so the gateway's
framing is checked against an independent implementation. The coordinator answers
every 0x10 Transmit Request with a 0x8B Transmit Status, as a real one does and as
the Paho gateway insists on.
"""

from __future__ import annotations

import os
import select
import struct
import time
from dataclasses import dataclass
from typing import Callable

ESCAPED = {0x7E, 0x7D, 0x11, 0x13}
BROADCAST = 0x000000000000FFFF


def api_frame(data: bytes, mode: int) -> bytes:
    """Frame data -> wire bytes (API mode 1, or 2 with escapes)."""
    body = struct.pack("!H", len(data)) + data + bytes([0xFF - (sum(data) & 0xFF)])
    if mode == 2:
        out = bytearray()
        for b in body:
            out += bytes([0x7D, b ^ 0x20]) if b in ESCAPED else bytes([b])
        body = bytes(out)
    return b"\x7e" + body


def receive_packet(addr64: int, addr16: int, payload: bytes, options: int = 0x01) -> bytes:
    return b"\x90" + struct.pack("!QHB", addr64, addr16, options) + payload


def transmit_status(frame_id: int, addr16: int, delivery: int = 0) -> bytes:
    return b"\x8b" + struct.pack("!BHBBB", frame_id, addr16, 0, delivery, 0)


@dataclass
class TxRequest:
    frame_id: int
    addr64: int
    addr16: int
    radius: int
    options: int
    payload: bytes


def frames_in(wire: bytes, mode: int) -> list[bytes]:
    """Every frame's data in ``wire`` (complete frames only); asserts they are well formed."""
    frames = []
    for chunk in wire.split(b"\x7e")[1:]:
        raw = bytearray()
        esc = False
        for b in chunk:
            if mode == 2 and b == 0x7D:
                esc = True
                continue
            raw.append(b ^ 0x20 if esc else b)
            esc = False
        n = struct.unpack("!H", raw[:2])[0]
        data = bytes(raw[2 : 2 + n])
        assert len(raw) == n + 3, f"frame length {n} but {len(raw) - 3} bytes: {chunk.hex()}"
        assert raw[-1] == 0xFF - (sum(data) & 0xFF), f"bad checksum in {chunk.hex()}"
        frames.append(data)
    return frames


class Line:
    """Non-blocking reads and writes on a pty master (or any fd)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.pending = b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            select.select([], [self.fd], [], 5.0)
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[n:]

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.fd, 65536)
        except (BlockingIOError, OSError):
            return b""


class Coordinator:
    """An XBee coordinator on ``fd``: radios send 0x90, the gateway's 0x10s are collected."""

    def __init__(self, fd: int, mode: int = 2) -> None:
        self.line = Line(fd)
        self.mode = mode
        self.buffer = b""
        self.received: list[TxRequest] = []
        self.statuses_sent = 0

    def send(self, addr64: int, addr16: int, payload: bytes) -> None:
        self.line.write(api_frame(receive_packet(addr64, addr16, payload), self.mode))

    def send_raw(self, wire: bytes) -> None:
        self.line.write(wire)

    def pump(self, timeout: float = 0.05) -> None:
        """Read what arrived; answer each Transmit Request with a Transmit Status."""
        self.buffer += self.line.read(timeout)
        cut = self.buffer.rfind(b"\x7e")
        if cut <= 0:
            return
        # keep the last (maybe incomplete) frame for later
        complete, self.buffer = self.buffer[:cut], self.buffer[cut:]
        for data in frames_in(complete, self.mode):
            self._frame(data)

    def flush(self) -> None:
        """Treat the buffered tail as complete (call once the gateway is quiet)."""
        for data in frames_in(self.buffer, self.mode):
            self._frame(data)
        self.buffer = b""

    def _frame(self, data: bytes) -> None:
        if data[0] != 0x10:
            return
        frame_id, addr64, addr16, radius, options = struct.unpack("!BQHBB", data[1:14])
        self.received.append(TxRequest(frame_id, addr64, addr16, radius, options, data[14:]))
        self.line.write(api_frame(transmit_status(frame_id, addr16), self.mode))
        self.statuses_sent += 1

    def expect(self, match: Callable[[TxRequest], bool], timeout: float = 10.0) -> TxRequest:
        """The first (not yet taken) Transmit Request ``match`` accepts; waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, tx in enumerate(self.received):
                if match(tx):
                    return self.received.pop(i)
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching transmit request in {timeout}s; got {self.received}")
            self.pump()
            if self.buffer:
                self.flush()


class Board:
    """A board on a plain-framed line: MQTT-SN messages back to back."""

    def __init__(self, fd: int) -> None:
        self.line = Line(fd)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.line.write(data)

    def expect(self, wanted: bytes, timeout: float = 10.0) -> list[bytes]:
        """Read messages until ``wanted`` arrives; returns those before it."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            while self.buffer:
                n = self.buffer[0] if self.buffer[0] != 1 else struct.unpack("!H", self.buffer[1:3])[0]
                if len(self.buffer) < n or n == 0:
                    break
                message, self.buffer = self.buffer[:n], self.buffer[n:]
                if message == wanted:
                    return before
                before.append(message)
            if time.monotonic() > deadline:
                raise AssertionError(f"{wanted.hex()} not received in {timeout}s; got {[m.hex() for m in before]}")
            self.buffer += self.line.read(0.05)
