"""MQTT-SN over serial lines: ``mqttsn_serial DEVICE BAUD FRAMING``.

FRAMING ``plain``: MQTT-SN messages back to back on a point-to-point line, one client.
Each message's own length field delimits it; bytes that cannot start a plausible
message (a length too small, an unknown type, a body that does not decode) are
skipped one at a time until one does. A candidate whose claimed length has not
arrived within ``STALL`` seconds is treated as noise too, so a corrupted length byte
cannot hold the line forever.

FRAMING ``xbee1``/``xbee2``: XBee API frames (``gateway.mqttsn.xbee``) to a coordinator
radio; each remote radio is a client keyed by its 64-bit address (its 16-bit address
is refreshed from every 0x90, as it changes after a rejoin). Broadcast messages
(ADVERTISE, GWINFO) go to the broadcast address.

A line that cannot be opened, or disappears (USB unplugged), is reopened with
exponential backoff; its clients stay until their keepalive runs out, and the rest
of the gateway keeps running.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.mqttsn.channel import MQTTSNChannel
from gateway.mqttsn.codec import MQTTSNError, MsgType, decode, frame_length
from gateway.mqttsn.context import MQTTSNContext, Network, context_for
from gateway.mqttsn.xbee import BROADCAST_64, UNKNOWN_16, FrameDecoder, RxPacket, TxStatus, tx_request, wrap

STALL = 0.5  # seconds an incomplete plain-framed candidate may wait for its bytes
MAX_PLAIN_MESSAGE = 1024  # longer length fields on a serial line are noise
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
_TYPES = frozenset(int(t) for t in MsgType)


class SerialNetwork(Network):
    """Common part: the current port (None while the line is down)."""

    def __init__(self, ctx: MQTTSNContext, device: str, clock: Any) -> None:
        super().__init__(ctx, None)
        self.device = device
        self.clock = clock
        self.port: Any = None
        self.garbage = 0  # runs of bytes skipped to resynchronise
        self.send_errors = 0

    @property
    def frames_dropped(self) -> int:
        return self.garbage

    @property
    def transport_name(self) -> str:
        return f"serial:{self.device}"

    def drops(self) -> list[tuple[tuple[str, str], int]]:
        return [((self.device, "noise"), self.garbage)]

    def radios(self) -> list[dict[str, Any]]:
        """One entry per client on the line: its address, client id and state."""
        return [self.radio(addr, channel) for addr, channel in list(self.channels.items())]

    def radio(self, addr: Any, channel: Any) -> dict[str, Any]:
        client = getattr(channel, "client", None)
        return {
            "address": str(addr),
            "client_id": client.client_id if client is not None else None,
            "asleep": bool(channel.sleeping),
            "last_heard": getattr(channel, "last_rx", None),
        }

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def _put(self, raw: bytes) -> None:
        port = self.port
        if port is None:
            self.send_errors += 1
            return
        port.write(raw)


class PlainSerialNetwork(SerialNetwork):
    """One client on a point-to-point line, messages back to back."""

    max_message = 65535

    def __init__(self, ctx: MQTTSNContext, device: str, clock: Any) -> None:
        super().__init__(ctx, device, clock)
        self._buf = bytearray()
        self._skipping = False
        self._stall: IDelayedCall | None = None

    def write(self, addr: Any, data: bytes) -> None:
        self._put(data)

    def broadcast(self, data: bytes) -> None:
        self._put(data)

    def describe(self, addr: Any) -> str:
        return f"serial:{self.device}"

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while buf:
            info = frame_length(buf)
            if info is None:
                break
            length, header = info
            if length < header + 1 or length > MAX_PLAIN_MESSAGE or (len(buf) > header and buf[header] not in _TYPES):
                self._skip()
                continue
            if len(buf) < length:
                break
            message = bytes(buf[:length])
            try:
                decode(message)
            except MQTTSNError:
                self._skip()
                continue
            del buf[:length]
            self._skipping = False
            self.received(self.device, message)
        self._watch_stall()

    def _skip(self) -> None:
        if not self._skipping:
            self._skipping = True
            self.garbage += 1
        del self._buf[:1]

    def _watch_stall(self) -> None:
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = self.clock.callLater(STALL, self._stalled) if self._buf else None

    def _stalled(self) -> None:
        self._stall = None
        if self._buf:
            self._skip()
            self.feed(b"")


class XBeeNetwork(SerialNetwork):
    """Every radio behind one coordinator, keyed by its 64-bit address."""

    max_message = 255

    def __init__(self, ctx: MQTTSNContext, device: str, clock: Any, mode: int) -> None:
        super().__init__(ctx, device, clock)
        self.mode = mode
        self.decoder = FrameDecoder(mode)
        self.addr16: dict[int, int] = {}
        self.transmit_failures = 0
        self._frame_id = 0

    @property
    def frames_dropped(self) -> int:
        return self.decoder.dropped

    def drops(self) -> list[tuple[tuple[str, str], int]]:
        decoder = self.decoder
        return [((self.device, "bad_checksum"), decoder.bad_checksum),
                ((self.device, "truncated"), decoder.truncated)]

    def radios(self) -> list[dict[str, Any]]:
        """Every radio heard from (its 16-bit address), with its client if connected."""
        channels = self.channels
        found = []
        for addr64, addr16 in list(self.addr16.items()):
            entry = self.radio(addr64, channels[addr64]) if addr64 in channels else {
                "address": "", "client_id": None, "asleep": False, "last_heard": None}
            entry["address"] = f"{addr64:016x}"
            entry["address16"] = f"{addr16:04x}"
            found.append(entry)
        return found

    def feed(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if type(frame) is RxPacket:
                self.addr16[frame.addr64] = frame.addr16
                if frame.data:
                    self.received(frame.addr64, frame.data)
            elif type(frame) is TxStatus and frame.delivery != 0:
                self.transmit_failures += 1

    def _transmit(self, addr64: int, addr16: int, data: bytes) -> None:
        self._frame_id = self._frame_id % 255 + 1  # 0 would ask the radio for no status
        self._put(wrap(tx_request(self._frame_id, addr64, addr16, data), self.mode))

    def write(self, addr: Any, data: bytes) -> None:
        self._transmit(addr, self.addr16.get(addr, UNKNOWN_16), data)

    def broadcast(self, data: bytes) -> None:
        self._transmit(BROADCAST_64, UNKNOWN_16, data)

    def answer_searchgw(self, addr: Any, gwinfo: bytes) -> None:
        self.broadcast(gwinfo)

    def describe(self, addr: Any) -> str:
        if isinstance(addr, int):
            return f"xbee:{addr:016x}@{self.device}"
        return f"{addr}@{self.device}"


class _LineProtocol(Protocol):
    def __init__(self, line: SerialLine) -> None:
        self.line = line

    def dataReceived(self, data: bytes) -> None:
        self.line.network.feed(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.line.lost(self, reason)


class SerialLine:
    """One configured device: opens it, and reopens it with backoff when it goes away."""

    log = Logger()

    def __init__(self, ctx: MQTTSNContext, reactor: Any, device: str, baud: int, framing: str) -> None:
        self.ctx = ctx
        self.reactor = reactor
        self.device = device
        self.baud = baud
        self.framing = framing
        if framing == "plain":
            self.network: SerialNetwork = PlainSerialNetwork(ctx, device, reactor)
        else:
            self.network = XBeeNetwork(ctx, device, reactor, 2 if framing == "xbee2" else 1)
        self.opens = 0
        self._protocol: _LineProtocol | None = None
        self._retry: IDelayedCall | None = None
        self._delay = BACKOFF_FIRST
        self._failing = False
        self._closed = False

    def start(self) -> None:
        self.ctx.add_network(self.network)
        self._register()
        self._open()

    def _register(self) -> None:
        """Probes and a status page entry for this line (read when asked)."""
        hub, device, network = self.ctx.hub, self.device, self.network
        source = f"serial:{device}"
        hub.probe("serial_port_up", "gauge", "1 while the serial line is open",
                  ("device", "framing"), lambda: [((device, self.framing), int(network.port is not None))],
                  source)
        hub.probe("serial_port_opens", "counter", "Times the serial line was opened",
                  ("device",), lambda: [((device,), self.opens)], source)
        hub.probe("serial_frames_dropped", "counter",
                  "Frames dropped on a serial line: XBee bad checksums and truncated frames, "
                  "noise skipped on a plain line", ("device", "reason"), network.drops, source)
        hub.status_section("serial", self.status, source)

    def status(self) -> dict[str, Any]:
        """This line and the clients (radios) behind it, for the status page."""
        network = self.network
        return {
            "device": self.device, "framing": self.framing, "baud": self.baud,
            "up": network.port is not None, "opens": self.opens,
            "frames_dropped": network.frames_dropped, "radios": network.radios(),
        }

    def _open(self) -> None:
        from twisted.internet.serialport import SerialPort

        self._retry = None
        if self._closed:
            return
        protocol = _LineProtocol(self)
        try:
            port = SerialPort(protocol, self.device, self.reactor, baudrate=self.baud)
        except Exception as e:  # SerialException, OSError: absent, busy, no permission
            if not self._failing:
                self.log.warn(
                    "cannot open serial line {device}: {error}; retrying with backoff",
                    device=self.device, error=str(e),
                )
            self._failing = True
            self._schedule()
            return
        self._protocol = protocol
        self.network.port = port
        self.opens += 1
        self._failing = False
        self._delay = BACKOFF_FIRST
        self.log.info(
            "MQTT-SN serial line {device} open ({framing}, {baud} baud)",
            device=self.device, framing=self.framing, baud=self.baud,
        )

    def _schedule(self) -> None:
        self._retry = self.reactor.callLater(self._delay, self._open)
        self._delay = min(self._delay * 2, BACKOFF_MAX)

    def lost(self, protocol: _LineProtocol, reason: Failure | None) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        self.network.port = None
        if self._closed:
            return
        self.log.warn(
            "serial line {device} lost ({reason}); reopening",
            device=self.device, reason=reason.getErrorMessage() if reason else "closed",
        )
        self._schedule()

    def close(self) -> None:
        self._closed = True
        self.ctx.hub.stats.unprobe(f"serial:{self.device}")
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self.ctx.remove_network(self.network)
        port = self.network.port
        if port is not None:
            port.loseConnection()


def start_serial_lines(ctx: Any) -> list[SerialLine]:
    """Open every ``mqttsn_serial`` line (``ctx``: gateway.listeners.ListenerContext)."""
    sn = context_for(ctx.hub, ctx.config, ctx.reactor, MQTTSNChannel, ctx.mqtt_settings.verbose)
    lines = []
    for device, baud, framing in ctx.config.mqttsn_serial:
        line = SerialLine(sn, ctx.reactor, device, baud, framing)
        line.start()
        lines.append(line)
    return lines
