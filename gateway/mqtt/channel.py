"""One MQTT connection's protocol state: packets in, hub calls out, deliveries back.

Protocol levels 3 (3.1), 4 (3.1.1) and 5 are negotiated per connection; the hub sees
the same neutral calls whichever level a client speaks, and ``gateway.mqtt.codes``
maps its answers to each level's codes. The CONNECT handshake (authentication,
enhanced authentication, CONNACK) lives in ``gateway.mqtt.connect``; the encoding of
deliveries in ``gateway.mqtt.outbound``.

The channel writes encoded bytes to a transport-like ``link`` (``write``,
``loseConnection``) and reads time from an ``IReactorTime``; tests drive it with
``StringTransport`` and ``task.Clock``. Anything that breaks the protocol closes this
one connection, never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from zlib import crc32

from twisted.internet.defer import gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from gateway.hub.acks import DurableAcks
from gateway.hub.api import SUBSCRIBE, WRITE, ClientInfo, Denied, Message, Reason
from gateway.hub.auth import authorize_later, has_acl_plugins
from gateway.logtext import clip, summary_for
from gateway.hub.hub import Hub
from gateway.hub.sessions import AWAIT_ACK, AWAIT_COMP, Session
from gateway.hub.topics import TopicError, split_shared, validate_topic_filter
from gateway.mqtt import codes
from gateway.mqtt.codec import MQTTError, encode
from gateway.mqtt.outbound import encode_delivery
from gateway.mqtt.packets import (
    Auth, ConnAck, Connect, Disconnect, PingReq, PubAck, PubComp, Publish, PubRec, PubRel,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
)
from gateway.mqtt.reasons import PacketType, PropertyId, ReasonCode
from gateway.sweeper import sweeper_for

AWAIT_CONNECT = 0
AUTHENTICATING = 1
CONNECTED = 2
CLOSED = 3
WAITING = 4        # a packet waits for an ACL plugin's answer; later packets queue behind it

PINGRESP = b"\xd0\x00"
# QoS 0 payload bytes accepted for a client after its transport's buffer filled up;
# enough for a burst from many publishers in one reactor turn, small enough to bound
# what a stalled client costs.
QOS0_BACKLOG_LIMIT = 4 * 1024 * 1024
# Seconds a connection stays readable after our DISCONNECT: the client's packets in
# flight (acknowledgements of what we sent) are read and dropped instead of meeting
# a reset, so it can read the DISCONNECT and its reason.
DISCONNECT_LINGER = 2.0

# Errors found in these packets are answered with a DISCONNECT carrying the reason
# at level 5 (once connected); in the others the connection just closes, as Mosquitto
# does.
_DISCONNECT_AFTER = frozenset({PacketType.PUBLISH, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE,
                               PacketType.AUTH})

_P = PropertyId
_ALIAS = _P.TOPIC_ALIAS
_FORMAT = _P.PAYLOAD_FORMAT_INDICATOR
_RC = ReasonCode


@dataclass(slots=True)
class MQTTSettings:
    """The protocol-side part of the configuration (per listener where Mosquitto has
    per-listener keys)."""

    max_keepalive: int = 65535
    allow_zero_length_clientid: bool = True
    auto_id_prefix: str = "auto-"
    message_size_limit: int = 0
    max_packet_size: int = 0
    max_subscriptions: int = 10000       # per client; 0 = unlimited
    retain_available: bool = True
    connect_timeout: float = 10.0
    verbose: bool = False
    #: Highest QoS clients may publish and are granted (Mosquitto's ``max_qos``).
    max_qos: int = 2
    #: Topic aliases a level 5 client may define (Mosquitto's default is 10).
    max_topic_alias: int = 10
    #: QoS 1/2 messages a client may have unacknowledged towards us (Receive Maximum).
    receive_maximum: int = 20
    #: Protocol levels accepted (Mosquitto 2.1's ``accept_protocol_versions``).
    protocol_levels: frozenset[int] = field(default_factory=lambda: frozenset({3, 4, 5}))
    #: Prefix of every topic of this listener's clients (Mosquitto's ``mount_point``).
    mount_point: str = ""


class MQTTChannel:
    """Protocol state for one client connection."""

    log = Logger()

    # Slotted: an idle connection should cost as little memory as possible.
    __slots__ = (
        "hub", "settings", "link", "clock", "peer", "listener", "state", "level",
        "session", "client", "keepalive", "last_rx", "opened", "congested", "backlog",
        "handshake", "auth_method", "aliases_in", "aliases_out", "max_out", "problem_info",
        "_graceful", "_pending", "_may_wait", "_released", "_sweeper", "_stats", "_linger",
        "_traffic", "_acks", "bridge", "__weakref__",
    )

    def __init__(
        self,
        hub: Hub,
        settings: MQTTSettings,
        link: Any,
        clock: IReactorTime,
        peer: str = "",
        listener: Any = None,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.link = link
        self.clock = clock
        self.peer = peer
        self.listener = listener
        self.state = AWAIT_CONNECT
        self.level = 4
        self.session: Session | None = None
        self.client: ClientInfo | None = None
        self.keepalive = 0
        self.last_rx = clock.seconds()
        self.opened = self.last_rx
        self.congested = False
        self.backlog = 0
        # The CONNECT (or re-authentication) in progress; see gateway.mqtt.connect.
        self.handshake: Any = None
        self.auth_method: Any = None    # the enhanced authentication method of CONNECT
        # Level 5 only: topic aliases both ways, the client's Maximum Packet Size
        # (0: none), whether it wants reason strings on acknowledgements.
        self.aliases_in: Any = None
        self.aliases_out: Any = None
        self.max_out = 0
        self.problem_info = True
        self.bridge = False             # a Mosquitto bridge said so in its CONNECT
        self._graceful = False
        self._linger: Any = None        # after our DISCONNECT: the DelayedCall that closes
        # Acknowledgements wait for the store, in order (only with persistence on).
        self._acks = DurableAcks(hub, self._write_durable) if hub.journal is not None else None
        self._pending: list[Any] | tuple[()] = ()  # a list once a packet waits
        self._may_wait = False          # an ACL plugin may need asking (gateway.hub.auth)
        self._released: Any = None      # the held packet being handled again
        self._sweeper = sweeper_for(clock)
        self._sweeper.add(self)
        self._stats = hub.stats
        self._traffic = hub.stats.traffic_of("mqtt")  # PUBLISH by QoS: in, out, dropped

    # input -----------------------------------------------------------------------

    def handle(self, packet: Any) -> None:
        """Dispatch one decoded packet."""
        state = self.state
        if state == CONNECTED:
            handler = _HANDLERS.get(type(packet))
            if handler is None:
                self.protocol_error(MQTTError(f"unexpected {type(packet).__name__}", _RC.PROTOCOL_ERROR))
                return
            handler(self, packet)
        elif state == AWAIT_CONNECT:
            if type(packet) is not Connect:
                self.protocol_error(MQTTError("first packet is not CONNECT", _RC.PROTOCOL_ERROR))
                return
            from gateway.mqtt.connect import Handshake

            self.handshake = Handshake(self, packet)
            self.handshake.begin()
        elif state == AUTHENTICATING and self.handshake is not None and (
                type(packet) is Auth or self.handshake.method is not None):
            self.handshake.packet(packet)
        elif state == AUTHENTICATING or state == WAITING:
            if self._pending:
                self._pending.append(packet)  # type: ignore[union-attr]
            else:
                self._pending = [packet]

    def protocol_error(self, error: MQTTError, packet_type: int | None = None) -> None:
        """Close this connection for a protocol violation (the will is published).

        At level 5 the DISCONNECT says why, for errors in PUBLISH, SUBSCRIBE and
        UNSUBSCRIBE and for oversized packets, as Mosquitto answers them.
        """
        if self.state == CLOSED:
            return
        if error.reason == _RC.UNSUPPORTED_PROTOCOL_VERSION and self.state == AWAIT_CONNECT:
            self._write(encode(ConnAck(1)))
        elif self.level == 5 and self.state in (CONNECTED, WAITING) and (
            packet_type in _DISCONNECT_AFTER or error.reason == _RC.PACKET_TOO_LARGE
            or getattr(error, "packet_type", None) in _DISCONNECT_AFTER
        ):
            self.send_disconnect(error.reason)
        fields = dict(peer=self.peer, client_id=clip(self.client.client_id) if self.client else None,
                      reason=clip(str(error)))
        fmt = "closing connection from {peer} ({client_id}): {reason}"
        if self.state == AWAIT_CONNECT or self.state == AUTHENTICATING:
            self._anonymous_failure(error.reason.name.lower().replace("_", " "), LogLevel.warn, fmt, fields)
        else:
            self.log.warn(fmt, **fields)
        self._close()

    def _anonymous_failure(self, kind: str, level: LogLevel, fmt: str, fields: dict) -> None:
        """Logged through a summary: a flood of garbage costs a bounded number of lines."""
        summary = summary_for(self.clock, "connections closed before CONNECT", MQTTChannel.log)
        summary.event(kind, self.peer.rpartition(":")[0], level, fmt, **fields)

    def connection_lost(self) -> None:
        """The transport is gone: detach from the hub (will unless clean DISCONNECT)."""
        self.state = CLOSED
        self._sweeper.discard(self)
        self.handshake = None
        if self._linger is not None and self._linger is not True and self._linger.active():
            self._linger.cancel()
        session = self.session
        if session is not None:
            self.session = None
            self.hub.disconnect(session, self._graceful, self)
            if self.settings.verbose:
                self.log.info(
                    "client {client_id} disconnected ({how})",
                    client_id=clip(session.client_id),
                    how="clean" if self._graceful else "without DISCONNECT",
                )

    # after CONNACK (called by gateway.mqtt.connect) ---------------------------------

    def connected(self, session: Session) -> None:
        """The handshake is done and CONNACK written: redeliver, then handle what the
        client sent meanwhile."""
        self.session = session
        self.handshake = None
        self.state = CONNECTED
        if not self.keepalive:
            self._sweeper.discard(self)
        session.resume(self)
        self._may_wait = has_acl_plugins(self.hub)
        self._drain()

    def _drain(self) -> None:
        """Handle the packets queued while authenticating or waiting, in order."""
        pending, self._pending = self._pending, ()
        for i, packet in enumerate(pending):
            if self.state == WAITING:
                self._pending = [*pending[i:], *self._pending]
                return
            if self.state != CONNECTED:
                return
            self.handle(packet)

    def _hold(self, packet: Any, access: str, topics: Any) -> bool:
        """Wait for ACL plugins without a cached answer (``auth.authorize_later``); the
        packet is handled again once they answered, and nothing overtakes it."""
        if packet is self._released:
            self._released = None
            return False
        waits = [d for t in topics
                 if (d := authorize_later(self.hub, self.client, access, t)) is not None]
        if not waits:
            return False
        self.state = WAITING

        def resume(_: Any) -> None:
            if self.state != WAITING:
                return
            self.state = CONNECTED
            self._released = packet
            self.handle(packet)
            self._drain()

        gatherResults(waits, consumeErrors=True).addBoth(resume)
        return True

    def _on_second_connect(self, p: Connect) -> None:
        self.protocol_error(MQTTError("second CONNECT", _RC.PROTOCOL_ERROR))

    def _on_auth(self, p: Auth) -> None:
        """Re-authentication (level 5): the same method as at CONNECT."""
        if self.level != 5:
            self.protocol_error(MQTTError("AUTH below level 5", _RC.PROTOCOL_ERROR))
            return
        from gateway.mqtt.connect import Reauthentication

        if self.handshake is None:
            self.handshake = Reauthentication(self)
        self.handshake.auth_packet(p)

    # PUBLISH and acknowledgements --------------------------------------------------

    def _on_publish(self, p: Publish) -> None:
        settings = self.settings
        props = p.properties
        if self.level == 5 and (p.qos == 2 or props and (_ALIAS in props or _FORMAT in props)) \
                and not self._publish_v5_checks(p):
            return  # (topic aliases, the payload format; QoS 2 is counted)
        if self._may_wait and self._hold(p, WRITE, (settings.mount_point + p.topic,)):
            return
        qos = p.qos
        traffic = self._traffic
        traffic.received[qos] += 1
        if qos > settings.max_qos:
            self.protocol_error(MQTTError(f"QoS {qos} above max_qos", _RC.QOS_NOT_SUPPORTED),
                                PacketType.PUBLISH)
            return
        if p.retain and not settings.retain_available:
            self.protocol_error(MQTTError("retain not available", _RC.RETAIN_NOT_SUPPORTED),
                                PacketType.PUBLISH)
            return
        limit = settings.message_size_limit
        if limit and len(p.payload) > limit:
            # Dropped, still acknowledged; the connection stays (as Mosquitto).
            traffic.dropped[qos] += 1
            self._ack_publish(p, _RC.PACKET_TOO_LARGE)
            return
        topic = settings.mount_point + p.topic if settings.mount_point else p.topic
        session = self.session
        assert session is not None
        hub = self.hub
        message = codes.hub_message(topic, p, hub.now)
        if qos == 2:
            # As Mosquitto: checked now, published when the PUBREL comes; a resent
            # duplicate is acknowledged again and not published twice.
            fingerprint = crc32(p.payload, crc32(topic.encode()))
            pid = p.packet_id
            if session.inbound_qos2_pending(pid, fingerprint):  # type: ignore[arg-type]
                self._ack_publish(p, 0)
                return
            denied = hub.check_publish(session.client, message)
            if denied is None:
                session.inbound_qos2_received(pid, fingerprint, message)  # type: ignore[arg-type]
            self._ack_publish(p, 0 if denied is None else codes.v5_code(denied.reason))
            return
        result = hub.publish_from(session, message)
        if qos:
            if type(result) is not int:
                code = codes.v5_code(result.reason)  # type: ignore[union-attr]
            elif not result and self.level == 5 and not hub.has_subscribers(topic):
                code = _RC.NO_MATCHING_SUBSCRIBERS
            else:
                code = 0
            self._ack_publish(p, code)

    def _publish_v5_checks(self, p: Publish) -> bool:
        """Topic aliases, Receive Maximum and the payload format: False when the
        PUBLISH was answered (or the connection closed) here."""
        props = p.properties
        alias = props.get(_P.TOPIC_ALIAS) if props else None
        if alias is not None:
            aliases = self.aliases_in
            if aliases is None or not aliases.valid(alias):
                self.protocol_error(MQTTError(f"topic alias {alias} out of range", _RC.TOPIC_ALIAS_INVALID),
                                    PacketType.PUBLISH)
                return False
            if p.topic:
                aliases.define(alias, p.topic)
            else:
                topic = aliases.topic(alias)
                if topic is None:
                    self.protocol_error(MQTTError(f"unknown topic alias {alias}", _RC.PROTOCOL_ERROR),
                                        PacketType.PUBLISH)
                    return False
                p.topic = topic
        if p.qos == 2 and p.packet_id not in self.session.inbound_qos2:  # type: ignore[union-attr]
            maximum = self.settings.receive_maximum
            if maximum and len(self.session.inbound_qos2) >= maximum:  # type: ignore[union-attr]
                self.protocol_error(MQTTError("Receive Maximum exceeded", _RC.RECEIVE_MAXIMUM_EXCEEDED),
                                    PacketType.PUBLISH)
                return False
        if props and props.get(_P.PAYLOAD_FORMAT_INDICATOR) == 1 and not codes.valid_utf8(p.payload):
            self._traffic.dropped[p.qos] += 1
            self._ack_publish(p, _RC.PAYLOAD_FORMAT_INVALID)
            return False
        return True

    def _ack_publish(self, p: Publish, code: int) -> None:
        if p.qos == 1:
            self._ack_when_durable(PubAck(p.packet_id, code))  # type: ignore[arg-type]
        elif p.qos == 2:
            self._ack_when_durable(PubRec(p.packet_id, code))  # type: ignore[arg-type]

    def _ack_when_durable(self, packet: Any) -> None:
        """An acknowledgement of what the client sent (or a QoS 2 delivery's bytes),
        written once what it acknowledges is durable (with persistence on), and never
        before an earlier one."""
        acks = self._acks
        if acks is None:
            self._write_durable(packet)
        else:
            acks.send(packet)

    def _write_durable(self, packet: Any) -> None:
        if self.state == CLOSED:
            return
        if type(packet) is bytes:
            self.link.write(packet)  # a held QoS 2 delivery, already counted
        else:
            self._write_ack(packet)

    def _write_ack(self, packet: Any) -> None:
        """An acknowledgement: four bytes without a reason code or properties, any level."""
        if self.level == 5 and (packet.reason_code or packet.properties):
            self._write(encode(packet, 5))
        else:
            self._write(_ACK_V4[type(packet)] + packet.packet_id.to_bytes(2, "big"))

    def _on_puback(self, p: PubAck) -> None:
        session = self.session
        assert session is not None
        if not session.expects(p.packet_id, 1, AWAIT_ACK):
            if self._wrong_ack(session, p.packet_id, "PUBACK"):
                return
        session.acknowledge(p.packet_id)

    def _on_pubrec(self, p: PubRec) -> None:
        session = self.session
        assert session is not None
        pid = p.packet_id
        if not session.expects(pid, 2, AWAIT_ACK) and not session.expects(pid, 2, AWAIT_COMP):
            if self._wrong_ack(session, pid, "PUBREC"):
                return
            self._write_ack(PubRel(pid, _RC.PACKET_IDENTIFIER_NOT_FOUND if self.level == 5 else 0))
            return
        if p.reason_code >= 0x80:
            session.acknowledge(pid)  # the client refused it: the flow ends here
            return
        session.received_pubrec(pid)
        self.send_pubrel(pid)

    def _on_pubrel(self, p: PubRel) -> None:
        session = self.session
        assert session is not None
        pid = p.packet_id
        # Completed even for an unknown id, reason 0 (as Mosquitto: a PUBREL repeated
        # after a reconnect is normal).
        _, held = session.inbound_qos2_released(pid)
        if held is not None:
            self.hub.publish(held, session)
        self._ack_when_durable(PubComp(pid))

    def _on_pubcomp(self, p: PubComp) -> None:
        session = self.session
        assert session is not None
        if not session.expects(p.packet_id, 2, AWAIT_COMP):
            if self._wrong_ack(session, p.packet_id, "PUBCOMP"):
                return
        session.acknowledge(p.packet_id)

    def _wrong_ack(self, session: Session, pid: int, kind: str) -> bool:
        """An acknowledgement of the wrong type for a message in flight breaks the
        protocol (MQTT-4.8.0-1) and closes the connection; one for an unknown id is
        ignored (it may answer a message the session already forgot)."""
        out = session.inflight.get(pid)
        if out is None:
            return False
        self.protocol_error(MQTTError(f"{kind} for a QoS {out.qos} message in flight", _RC.PROTOCOL_ERROR))
        return True

    # SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------------------

    def _on_subscribe(self, p: Subscribe) -> None:
        hub = self.hub
        session = self.session
        assert session is not None and self.client is not None
        mount = self.settings.mount_point
        filters = [mount + f for f, _ in p.topics] if mount else [f for f, _ in p.topics]
        if self._may_wait and self._hold(p, SUBSCRIBE, filters):
            return
        sub_ids = p.properties.get(_P.SUBSCRIPTION_IDENTIFIER) if p.properties else None
        sub_id = sub_ids[0] if sub_ids else None
        level, max_qos = self.level, self.settings.max_qos
        limit = self.settings.max_subscriptions
        over = 0
        results: list[Any] = []
        for topic_filter, (_, options) in zip(filters, p.topics):
            try:
                validate_topic_filter(topic_filter)
                split_shared(topic_filter)
            except TopicError as e:
                # As Mosquitto: a malformed packet (level 5: DISCONNECT 0x81).
                self.protocol_error(MQTTError(f"invalid filter: {e}"), PacketType.SUBSCRIBE)
                return
            subs = session.subscriptions
            if limit and len(subs) >= limit and topic_filter not in subs:
                over += 1
                results.append(Denied(Reason.QUOTA_EXCEEDED))
                continue
            sub = codes.subscription(options, level, sub_id, max_qos, self.bridge)
            results.append(hub.subscribe(session, topic_filter, sub))
        if over:
            self.log.info("refused {over} subscriptions of {client_id}: max_subscriptions ({limit}) reached",
                          over=over, client_id=clip(session.client_id), limit=limit)
        if level == 5:
            granted = [r.qos if r else codes.suback_v5(r.reason) for r in results]
        elif level == 4:
            granted = [r.qos if r else 0x80 for r in results]
        else:  # MQTT 3.1 has no failure code: the requested QoS is returned
            granted = [r.qos if r else options & 3 for r, (_, options) in zip(results, p.topics)]
        self._answer(session, encode(SubAck(p.packet_id, granted), level),
                     [r for r in results if r])

    def _answer(self, session: Session, data: bytes, granted: list[Any]) -> None:
        """A SUBACK or UNSUBACK, then the retained messages of what it granted. With
        persistence on, a persistent session's answer waits for the commit of what it
        reports, so a crash cannot take back a (un)subscription the client was told of."""
        if self._acks is not None and not session.clean:
            self._acks.run(lambda: self._answered(session, data, granted))
        else:
            self._answered(session, data, granted)

    def _answered(self, session: Session, data: bytes, granted: list[Any]) -> None:
        if self.state == CLOSED:
            return
        self._write(data)
        hub = self.hub
        for result in granted:
            hub.deliver_retained(session, result)

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        mount = self.settings.mount_point
        codes_out = []
        for topic_filter in p.topics:
            try:
                validate_topic_filter(mount + topic_filter)
            except TopicError as e:
                self.protocol_error(MQTTError(f"invalid filter: {e}"), PacketType.UNSUBSCRIBE)
                return
            existed = self.hub.unsubscribe(session, mount + topic_filter)
            codes_out.append(0 if existed else _RC.NO_SUBSCRIPTION_EXISTED)
        self._answer(session, encode(UnsubAck(p.packet_id, codes_out if self.level == 5 else []),
                                     self.level), [])

    def _on_pingreq(self, p: PingReq) -> None:
        self._write(PINGRESP)

    def _on_disconnect(self, p: Disconnect) -> None:
        session = self.session
        if self.level == 5 and session is not None:
            expiry = p.properties.get(_P.SESSION_EXPIRY_INTERVAL) if p.properties else None
            if expiry is not None:
                if session.expiry == 0 and expiry != 0:
                    # MQTT-3.14.2-2; Mosquitto answers with DISCONNECT 0x82.
                    self.send_disconnect(_RC.PROTOCOL_ERROR)
                    self.protocol_error(MQTTError("session expiry set after connecting with 0", _RC.PROTOCOL_ERROR))
                    return
                self.hub.set_expiry(session, None if expiry == 0xFFFFFFFF else expiry)
        # 0x04: "disconnect with will message" publishes the will as a loss would.
        self._graceful = p.reason_code != _RC.DISCONNECT_WITH_WILL_MESSAGE
        if session is not None:
            self.session = None
            self.hub.disconnect(session, self._graceful, self)
            if self.settings.verbose:
                self.log.info("client {client_id} disconnected (clean)", client_id=clip(session.client_id))
        self._close()

    # Endpoint (called by the hub and the session) --------------------------------------

    def send_publish(
        self, message: Message, qos: int, packet_id: int | None, dup: bool, retain: bool,
        sub_ids: tuple[int, ...] = (),
    ) -> bool:
        traffic = self._traffic
        if self.congested and qos == 0:
            # The client reads slower than it is sent to. Past a bounded backlog,
            # drop QoS 0 (counted), as Mosquitto does once a client's queue is full.
            if self.backlog > QOS0_BACKLOG_LIMIT:
                traffic.dropped[0] += 1
                return True
            self.backlog += len(message.payload)
        data = encode_delivery(self, message, qos, packet_id, dup, retain, sub_ids)
        if data is None:
            traffic.dropped[qos] += 1  # larger than the client's Maximum Packet Size
            return False
        traffic.sent[qos] += 1
        stats = self._stats
        stats.messages_sent += 1
        stats.bytes_sent += len(data)
        session = self.session
        acks = self._acks
        if qos == 2 and acks is not None and (acks.pending() or (session is not None and not session.clean)):
            # Exactly once across a crash: the client sees a QoS 2 delivery to its
            # persistent session only once the store knows it was sent.
            self._ack_when_durable(data)
        else:
            self.link.write(data)
        return True

    def send_pubrel(self, packet_id: int) -> None:
        # Held as a delivery is: a PUBREL the store has not recorded could be followed,
        # after a crash, by the same PUBLISH again, which the client would take as new.
        self._ack_when_durable(PubRel(packet_id))

    def close(self, reason: Reason) -> None:
        """The hub ended this connection (taken over, no longer authorized, shutting
        down); it already detached the session. Level 5 clients are told why."""
        self.session = None
        if self.state == CLOSED:
            return
        if self.level == 5 and self.state in (CONNECTED, WAITING):
            self.send_disconnect(codes.v5_code(reason))
        if self.settings.verbose and self.client is not None:
            self.log.info("client {client_id} disconnected by the server: {reason}",
                          client_id=clip(self.client.client_id), reason=reason.value)
        self._close()

    def shutdown(self) -> None:
        """The server is stopping: level 5 clients get DISCONNECT 0x8B first."""
        if self.level == 5 and self.state in (CONNECTED, WAITING):
            self.send_disconnect(_RC.SERVER_SHUTTING_DOWN)
        self._close()

    # helpers -------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        stats = self._stats
        stats.messages_sent += 1
        stats.bytes_sent += len(data)
        self.link.write(data)

    def send_disconnect(self, code: int) -> None:
        """A level 5 DISCONNECT with ``code``; the connection then closes with a linger."""
        self._write(encode(Disconnect(code), 5))
        self._linger = True

    def _close(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self._sweeper.discard(self)
            if self._acks is not None:
                self._acks.drop()
            link = self.link
            if getattr(link, "producer", None) is self:
                # A transport with a registered producer never finishes closing.
                link.unregisterProducer()
            if self._linger is True:
                half_close = getattr(link, "loseWriteConnection", None)
                if half_close is not None:
                    half_close()  # the client sees the end at once; we still read
                self._linger = self.clock.callLater(DISCONNECT_LINGER, link.loseConnection)
            else:
                link.loseConnection()

    # IPushProducer: the transport tells us when its outgoing buffer is full --------

    def pauseProducing(self) -> None:
        if not self.congested:
            self.congested = True
            self.backlog = 0

    def resumeProducing(self) -> None:
        self.congested = False

    def stopProducing(self) -> None:
        self.congested = True

    def sweep(self, now: float) -> None:
        """Called about once a second (``gateway.sweeper``): enforce the CONNECT
        timeout, then the keepalive at 1.5 times the client's interval."""
        state = self.state
        if state == CONNECTED or state == WAITING:
            limit = self.keepalive * 1.5
            idle = now - self.last_rx
            if idle >= limit:
                self.log.info(
                    "client {client_id} keepalive expired after {idle:.1f}s",
                    client_id=clip(self.client.client_id) if self.client else None,
                    idle=idle,
                )
                if self.level == 5:
                    self.send_disconnect(_RC.KEEP_ALIVE_TIMEOUT)
                self._close()
        elif state == CLOSED:
            self._sweeper.discard(self)
        elif now - self.opened >= self.settings.connect_timeout:
            self._anonymous_failure("timeout", LogLevel.info, "no CONNECT from {peer} in time; closing",
                                    {"peer": self.peer})
            self._close()


_ACK_V4 = {PubAck: b"\x40\x02", PubRec: b"\x50\x02", PubRel: b"\x62\x02", PubComp: b"\x70\x02"}

_HANDLERS: dict[type, Callable[[MQTTChannel, Any], None]] = {
    Publish: MQTTChannel._on_publish,
    PubAck: MQTTChannel._on_puback,
    PubRec: MQTTChannel._on_pubrec,
    PubRel: MQTTChannel._on_pubrel,
    PubComp: MQTTChannel._on_pubcomp,
    Subscribe: MQTTChannel._on_subscribe,
    Unsubscribe: MQTTChannel._on_unsubscribe,
    PingReq: MQTTChannel._on_pingreq,
    Disconnect: MQTTChannel._on_disconnect,
    Connect: MQTTChannel._on_second_connect,
    Auth: MQTTChannel._on_auth,
}
