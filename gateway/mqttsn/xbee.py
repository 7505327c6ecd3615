"""XBee API frames (sans-IO): start delimiter, length, frame data, checksum.

``0x7E | LEN_MSB | LEN_LSB | frame data | CHK`` with ``CHK = 0xFF - sum(frame data)``.
API mode 1 sends that as is; API mode 2 escapes every byte after the delimiter that
is 0x7E, 0x7D, 0x11 or 0x13 as ``0x7D, b ^ 0x20`` (length and checksum are computed
on the unescaped bytes). The gateway receives 0x90 Receive Packet frames, sends
0x10 Transmit Request frames, and reads 0x8B Transmit Status; other frame types
(0x8A Modem Status, AT responses) are returned as ``OtherFrame`` for the caller to
ignore. Bad checksums and truncated frames are dropped and counted, never raised:
a serial line has noise and the decoder resynchronises on the next delimiter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from gateway.errors import GatewayError

START = 0x7E
ESCAPE = 0x7D
XON = 0x11
XOFF = 0x13
NEEDS_ESCAPE = frozenset((START, ESCAPE, XON, XOFF))

TX_REQUEST = 0x10
TX_STATUS = 0x8B
MODEM_STATUS = 0x8A
RX_PACKET = 0x90

BROADCAST_64 = 0x000000000000FFFF
UNKNOWN_16 = 0xFFFE
MAX_FRAME = 512  # longer length fields are noise: ZigBee payloads are well under 256


class XBeeFrameError(GatewayError):
    """A frame the encoder cannot build (the decoder counts instead of raising)."""


@dataclass(frozen=True, slots=True)
class RxPacket:
    """0x90: an RF payload from a radio."""

    addr64: int
    addr16: int
    options: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TxStatus:
    """0x8B: the coordinator's report on one Transmit Request."""

    frame_id: int
    addr16: int
    retries: int
    delivery: int
    discovery: int


@dataclass(frozen=True, slots=True)
class OtherFrame:
    api_id: int
    data: bytes


Frame = Union[RxPacket, TxStatus, OtherFrame]


def checksum(frame_data: bytes) -> int:
    return 0xFF - (sum(frame_data) & 0xFF)


def escape(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b in NEEDS_ESCAPE:
            out.append(ESCAPE)
            out.append(b ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def wrap(frame_data: bytes, mode: int) -> bytes:
    """Frame data to wire bytes in API mode 1 or 2."""
    n = len(frame_data)
    if n > 0xFFFF:
        raise XBeeFrameError("frame data longer than 65535 bytes")
    body = bytes((n >> 8, n & 0xFF)) + frame_data + bytes((checksum(frame_data),))
    return bytes((START,)) + (escape(body) if mode == 2 else body)


def tx_request(
    frame_id: int, addr64: int, addr16: int, payload: bytes, radius: int = 0, options: int = 0
) -> bytes:
    """0x10 Transmit Request frame data (unwrapped)."""
    return (
        bytes((TX_REQUEST, frame_id))
        + addr64.to_bytes(8, "big")
        + addr16.to_bytes(2, "big")
        + bytes((radius, options))
        + payload
    )


def rx_packet(addr64: int, addr16: int, payload: bytes, options: int = 0x01) -> bytes:
    """0x90 Receive Packet frame data, as a radio sends it (tests play the radio)."""
    return bytes((RX_PACKET,)) + addr64.to_bytes(8, "big") + addr16.to_bytes(2, "big") + bytes((options,)) + payload


def tx_status(frame_id: int, addr16: int, delivery: int = 0, retries: int = 0, discovery: int = 0) -> bytes:
    """0x8B Transmit Status frame data."""
    return bytes((TX_STATUS, frame_id)) + addr16.to_bytes(2, "big") + bytes((retries, delivery, discovery))


def parse(frame_data: bytes) -> Frame:
    """Frame data (checksum already verified) to a frame object."""
    api = frame_data[0]
    if api == RX_PACKET and len(frame_data) >= 12:
        return RxPacket(
            int.from_bytes(frame_data[1:9], "big"),
            int.from_bytes(frame_data[9:11], "big"),
            frame_data[11],
            bytes(frame_data[12:]),
        )
    if api == TX_STATUS and len(frame_data) == 7:
        return TxStatus(
            frame_data[1], int.from_bytes(frame_data[2:4], "big"), frame_data[4], frame_data[5], frame_data[6]
        )
    return OtherFrame(api, bytes(frame_data[1:]))


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)`` returns complete frames; errors are counted."""

    def __init__(self, mode: int) -> None:
        if mode not in (1, 2):
            raise ValueError("API mode must be 1 or 2")
        self.mode = mode
        self.bad_checksum = 0
        self.truncated = 0
        self._buf = bytearray()  # unescaped bytes of the current frame, after 0x7E
        self._in_frame = False
        self._escaped = False

    @property
    def dropped(self) -> int:
        return self.bad_checksum + self.truncated

    def feed(self, data: bytes) -> list[Frame]:
        if self.mode == 2:
            return self._feed_escaped(data)
        return self._feed_plain(data)

    def _feed_escaped(self, data: bytes) -> list[Frame]:
        # In mode 2 a raw 0x7E is always a start delimiter.
        frames: list[Frame] = []
        buf = self._buf
        for b in data:
            if b == START:
                if self._in_frame and buf:
                    self.truncated += 1
                buf.clear()
                self._in_frame = True
                self._escaped = False
                continue
            if not self._in_frame:
                continue
            if self._escaped:
                b ^= 0x20
                self._escaped = False
            elif b == ESCAPE:
                self._escaped = True
                continue
            buf.append(b)
            frame = self._complete(buf)
            if frame is not None:
                if frame is not _BAD:
                    frames.append(frame)  # type: ignore[arg-type]
                buf.clear()
                self._in_frame = False
        return frames

    def _complete(self, buf: bytearray) -> Frame | object | None:
        """A frame once ``buf`` holds length, data and checksum; ``_BAD`` if it fails."""
        if len(buf) < 2:
            return None
        n = (buf[0] << 8) | buf[1]
        if n == 0 or n > MAX_FRAME:
            self.truncated += 1
            return _BAD
        if len(buf) < n + 3:
            return None
        data = bytes(buf[2 : 2 + n])
        if checksum(data) != buf[2 + n]:
            self.bad_checksum += 1
            return _BAD
        return parse(data)

    def _feed_plain(self, data: bytes) -> list[Frame]:
        # In mode 1 0x7E may appear inside a frame: a bad checksum makes us resume the
        # search one byte after the delimiter that led us astray.
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        while True:
            start = buf.find(START)
            if start < 0:
                buf.clear()
                return frames
            if start:
                del buf[:start]
            if len(buf) < 3:
                return frames
            n = (buf[1] << 8) | buf[2]
            if n == 0 or n > MAX_FRAME:
                self.truncated += 1
                del buf[:1]
                continue
            if len(buf) < n + 4:
                return frames
            frame_data = bytes(buf[3 : 3 + n])
            if checksum(frame_data) != buf[3 + n]:
                self.bad_checksum += 1
                del buf[:1]
                continue
            del buf[: n + 4]
            frames.append(parse(frame_data))


_BAD = object()
