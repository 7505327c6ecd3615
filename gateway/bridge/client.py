"""The client side of one MQTT connection to a remote broker, sans-IO.

Bytes from the remote go in through ``feed(data, now)``; packets go out through the
``write`` callable given at construction; timing is the caller's (``tick(now)`` says
when to come back). What the remote sends is checked here (CONNACK first and once,
acknowledgements with the right shape, no topic alias we did not allow) and handed to
a ``Handler`` as calls, so the bridge sees messages and acknowledgements, never wire
details. Built on the project's codec (``gateway.mqtt.codec``) at level 3, 4 or 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from gateway.mqtt.codec import Decoder, MQTTError, encode
from gateway.mqtt.packets import (
    ConnAck, Connect, Disconnect, Packet, PingReq, PingResp, PubAck, PubComp, Publish, PubRec,
    PubRel, SubAck, UnsubAck,
)
from gateway.mqtt.reasons import ConnAckCode, PropertyId, ReasonCode

P = PropertyId

CONNACK_V3_TEXT = {
    ConnAckCode.UNACCEPTABLE_PROTOCOL_VERSION: "unacceptable protocol version",
    ConnAckCode.IDENTIFIER_REJECTED: "identifier rejected",
    ConnAckCode.SERVER_UNAVAILABLE: "server unavailable",
    ConnAckCode.BAD_USERNAME_OR_PASSWORD: "bad user name or password",
    ConnAckCode.NOT_AUTHORIZED: "not authorised",
}


class ClientError(Exception):
    """The remote broke the protocol (or timed out); the connection must close."""

    def __init__(self, text: str, reason: int = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(slots=True)
class RemoteLimits:
    """What the remote's CONNACK allows us (MQTT 5 properties; defaults below 5)."""

    max_qos: int = 2
    receive_maximum: int = 0          # 0: no limit of the remote's own
    retain_available: bool = True
    max_packet_size: int = 0          # 0: the protocol's
    keepalive: int = 60
    session_present: bool = False


class Handler(Protocol):
    """What the bridge does with the remote's packets."""

    def connected(self, limits: RemoteLimits) -> None: ...

    def refused(self, code: int, text: str) -> None: ...

    def message(self, publish: Publish) -> None: ...

    def acked(self, packet_id: int, code: int) -> None: ...

    def received(self, packet_id: int, code: int) -> None: ...

    def released(self, packet_id: int) -> None: ...

    def completed(self, packet_id: int) -> None: ...

    def subscribed(self, packet_id: int, codes: list[int]) -> None: ...

    def unsubscribed(self, packet_id: int) -> None: ...

    def server_disconnected(self, code: int) -> None: ...


def connack_text(level: int, code: int) -> str:
    """A refused CONNACK's reason, worded for the log."""
    if level == 5:
        try:
            return ReasonCode(code).name.lower().replace("_", " ")
        except ValueError:
            return f"reason code {code:#04x}"
    return CONNACK_V3_TEXT.get(code, f"return code {code}")  # type: ignore[call-overload]


class MQTTClient:
    """One connection's client state: CONNECT/CONNACK, keepalive, packet checks."""

    def __init__(self, connect: Connect, handler: Handler, write: Callable[[bytes], None]) -> None:
        self.connect = connect
        self.level = connect.protocol_level
        self.handler = handler
        self._write = write
        self.decoder = Decoder()
        self.decoder.protocol_level = self.level
        self.active = False             # CONNACK 0 received
        self.keepalive = connect.keepalive
        self.last_out = self.last_in = 0.0
        self.ping_sent: float | None = None
        self.limits = RemoteLimits(keepalive=connect.keepalive)

    # --- out ---------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Send CONNECT (the connection just opened)."""
        self.last_in = now
        self.send(self.connect, now)

    def send(self, packet: Packet, now: float) -> None:
        self.send_bytes(encode(packet, self.level), now)

    def send_bytes(self, data: bytes, now: float) -> None:
        self.last_out = now
        self._write(data)

    # --- in ----------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> None:
        """Handle the remote's bytes; ClientError when they break the protocol (after
        the whole packets before the bad one were handled)."""
        self.last_in = now
        try:
            packets = self.decoder.feed(data)
        except MQTTError as e:
            for packet in e.packets:
                self._handle(packet)
            raise ClientError(f"malformed packet from the remote: {e}", e.reason) from None
        for packet in packets:
            self._handle(packet)

    def _handle(self, packet: Packet) -> None:
        kind = type(packet)
        if not self.active and kind is not ConnAck:
            raise ClientError(f"{kind.__name__} before CONNACK")
        handler = self.handler
        if kind is Publish:
            self._check_publish(packet)  # type: ignore[arg-type]
            handler.message(packet)  # type: ignore[arg-type]
        elif kind is PubAck:
            handler.acked(packet.packet_id, packet.reason_code)  # type: ignore[union-attr]
        elif kind is PubRec:
            handler.received(packet.packet_id, packet.reason_code)  # type: ignore[union-attr]
        elif kind is PubRel:
            handler.released(packet.packet_id)  # type: ignore[union-attr]
        elif kind is PubComp:
            handler.completed(packet.packet_id)  # type: ignore[union-attr]
        elif kind is PingResp:
            self.ping_sent = None
        elif kind is SubAck:
            handler.subscribed(packet.packet_id, packet.return_codes)  # type: ignore[union-attr]
        elif kind is UnsubAck:
            handler.unsubscribed(packet.packet_id)  # type: ignore[union-attr]
        elif kind is ConnAck:
            self._connack(packet)  # type: ignore[arg-type]
        elif kind is Disconnect and self.level == 5:
            handler.server_disconnected(packet.reason_code)  # type: ignore[union-attr]
        else:
            raise ClientError(f"unexpected {kind.__name__} from the remote")

    def _check_publish(self, p: Publish) -> None:
        # We announce no Topic Alias Maximum, so the remote may not use aliases.
        if p.properties and P.TOPIC_ALIAS in p.properties:
            raise ClientError("topic alias we did not allow", ReasonCode.TOPIC_ALIAS_INVALID)

    def _connack(self, p: ConnAck) -> None:
        if self.active:
            raise ClientError("second CONNACK")
        if p.return_code:
            self.handler.refused(p.return_code, connack_text(self.level, p.return_code))
            return
        self.active = True
        props = p.properties
        limits = self.limits
        limits.session_present = p.session_present
        if props:
            limits.max_qos = props.get(P.MAXIMUM_QOS, 2)
            limits.receive_maximum = props.get(P.RECEIVE_MAXIMUM, 0)
            limits.retain_available = bool(props.get(P.RETAIN_AVAILABLE, 1))
            limits.max_packet_size = props.get(P.MAXIMUM_PACKET_SIZE, 0)
            self.keepalive = limits.keepalive = props.get(P.SERVER_KEEP_ALIVE, self.keepalive)
        self.handler.connected(limits)

    # --- time --------------------------------------------------------------------

    def tick(self, now: float) -> float | None:
        """Keepalive: a PINGREQ when we have been quiet for the keepalive interval;
        ClientError when the remote left one unanswered that long. Returns when to
        call again (None: keepalive off)."""
        keepalive = self.keepalive
        if not keepalive:
            return None
        if self.ping_sent is not None and now - self.ping_sent >= keepalive:
            raise ClientError("no PINGRESP within the keepalive interval",
                              ReasonCode.KEEP_ALIVE_TIMEOUT)
        if not self.active:
            if now - self.last_in >= keepalive:
                raise ClientError("no CONNACK within the keepalive interval",
                                  ReasonCode.KEEP_ALIVE_TIMEOUT)
            return self.last_in + keepalive
        if self.ping_sent is None and now - self.last_out >= keepalive:
            self.ping_sent = now
            self.send(PingReq(), now)
        if self.ping_sent is not None:
            return self.ping_sent + keepalive
        return self.last_out + keepalive
