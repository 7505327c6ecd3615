"""One MQTT connection's protocol state: packets in, hub calls out, deliveries back.

The channel writes encoded bytes to a transport-like ``link`` (``write``,
``loseConnection``) and reads time from an ``IReactorTime``; tests drive it with
``StringTransport`` and ``task.Clock``. Anything that breaks the protocol closes this
one connection, never anything else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gateway.hub.api import SUBSCRIBE, SUBSCRIBE_FAILED, WRITE, ClientInfo, Message
from gateway.hub.auth import authorize_later, has_acl_plugins
from gateway.hub.hub import Hub
from gateway.hub.sessions import Session
from gateway.hub.topics import TopicError, validate_topic_filter, validate_topic_name
from gateway.logs import clip, summary_for
from gateway.mqtt.codec import MQTTError, encode, publish_parts, set_dup
from gateway.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
)
from gateway.mqtt.reasons import ConnAckCode, ReasonCode
from gateway.sweeper import sweeper_for
from gateway.tls import certificate_username

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


@dataclass(slots=True)
class MQTTSettings:
    """The protocol-side part of the configuration."""

    max_keepalive: int = 65535
    allow_zero_length_clientid: bool = True
    auto_id_prefix: str = "auto-"
    message_size_limit: int = 0
    max_packet_size: int = 0
    max_subscriptions: int = 10000       # per client; 0 = unlimited
    retain_available: bool = True
    connect_timeout: float = 10.0
    verbose: bool = False


class MQTTChannel:
    """Protocol state for one client connection (levels 3 and 4)."""

    log = Logger()

    # Slotted: an idle connection should cost as little memory as possible.
    __slots__ = (
        "hub", "settings", "link", "clock", "peer", "listener", "state", "level",
        "session", "client", "keepalive", "last_rx", "opened", "congested", "backlog",
        "_graceful", "_pending", "_may_wait", "_released", "_sweeper", "_stats",
        "__weakref__",
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
        self._graceful = False
        self._pending: list[Any] = []
        self._may_wait = False          # an ACL plugin may need asking (gateway.hub.auth)
        self._released: Any = None      # the held packet being handled again
        self.opened = self.last_rx
        self._sweeper = sweeper_for(clock)
        self._sweeper.add(self)
        self._stats = hub.stats
        self.congested = False
        self.backlog = 0

    # input -----------------------------------------------------------------------

    def handle(self, packet: Any) -> None:
        """Dispatch one decoded packet."""
        state = self.state
        if state == CONNECTED:
            handler = _HANDLERS.get(type(packet))
            if handler is None:
                self.protocol_error(MQTTError(f"unexpected {type(packet).__name__}", ReasonCode.PROTOCOL_ERROR))
                return
            handler(self, packet)
        elif state == AWAIT_CONNECT:
            if type(packet) is not Connect:
                self.protocol_error(MQTTError("first packet is not CONNECT", ReasonCode.PROTOCOL_ERROR))
                return
            self._on_connect(packet)
        elif state == AUTHENTICATING or state == WAITING:
            self._pending.append(packet)

    def protocol_error(self, error: MQTTError) -> None:
        """Close this connection for a protocol violation (the will is published)."""
        if self.state == CLOSED:
            return
        if error.reason == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION and self.state == AWAIT_CONNECT:
            self._write(encode(ConnAck(ConnAckCode.UNACCEPTABLE_PROTOCOL_VERSION)))
        fields = dict(peer=self.peer, client_id=clip(self.client.client_id) if self.client else None,
                      reason=clip(str(error)))
        if self.state == AWAIT_CONNECT or self.state == AUTHENTICATING:
            self._anonymous_failure(error.reason.name.lower().replace("_", " "), LogLevel.warn,
                                    "closing connection from {peer} ({client_id}): {reason}", fields)
        else:
            self.log.warn("closing connection from {peer} ({client_id}): {reason}", **fields)
        self._close()

    def _anonymous_failure(self, kind: str, level: LogLevel, fmt: str, fields: dict) -> None:
        """Logged through a summary: a flood of garbage costs a bounded number of lines."""
        summary = summary_for(self.clock, "connections closed before CONNECT", MQTTChannel.log)
        summary.event(kind, self.peer.rpartition(":")[0], level, fmt, **fields)

    def connection_lost(self) -> None:
        """The transport is gone: detach from the hub (will unless clean DISCONNECT)."""
        self.state = CLOSED
        self._sweeper.discard(self)
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

    # CONNECT -----------------------------------------------------------------------

    def _on_connect(self, p: Connect) -> None:
        if p.protocol_level not in (3, 4):
            # Answer in the client's own format so it can read the refusal.
            self.log.info("refused connection from {peer}: protocol level {protocol_level}", peer=self.peer, protocol_level=p.protocol_level)
            self._write(encode(ConnAck(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION), p.protocol_level))
            self._close()
            return
        self.level = p.protocol_level
        settings = self.settings
        client_id = p.client_id
        if not client_id:
            if self.level == 3 or not p.clean_session or not settings.allow_zero_length_clientid:
                self._refuse(ConnAckCode.IDENTIFIER_REJECTED, "zero-length client id")
                return
            client_id = settings.auto_id_prefix + os.urandom(8).hex()
        elif self.level == 3 and len(client_id) > 23:
            self._refuse(ConnAckCode.IDENTIFIER_REJECTED, "client id longer than 23 characters")
            return
        if settings.max_keepalive < 65535 and (
            p.keepalive > settings.max_keepalive or p.keepalive == 0
        ):
            self._refuse(ConnAckCode.IDENTIFIER_REJECTED, "keepalive above max_keepalive")
            return
        will = None
        if p.will is not None:
            try:
                validate_topic_name(p.will.topic)
            except TopicError as e:
                self.protocol_error(MQTTError(f"will topic: {e}", ReasonCode.TOPIC_NAME_INVALID))
                return
            if p.will.retain and not settings.retain_available:
                self.protocol_error(MQTTError("retain not available", ReasonCode.RETAIN_NOT_SUPPORTED))
                return
            if settings.message_size_limit and len(p.will.payload) > settings.message_size_limit:
                # As Mosquitto: CONNACK 5 (MQTT 5: 0x95, packet too large).
                self._refuse(ConnAckCode.NOT_AUTHORIZED, "will payload above message_size_limit")
                return
            will = Message(p.will.topic, p.will.payload, p.will.qos, p.will.retain)
        # On a use_identity_as_username listener the TLS certificate names the client.
        username = certificate_username(self.link, self.listener, p.username)
        self.client = ClientInfo(client_id, "mqtt", self.peer, username, self.listener)
        self.keepalive = p.keepalive
        self.state = AUTHENTICATING
        d = maybeDeferred(self.hub.authenticate, self.client, p.password)
        d.addCallbacks(self._authenticated, self._auth_failed, callbackArgs=(p, will))
        d.addErrback(self._internal_error)

    def _auth_failed(self, failure: Failure) -> None:
        self.log.failure("authentication backend failed", failure)
        self._refuse(ConnAckCode.SERVER_UNAVAILABLE, "authentication backend failed")

    def _internal_error(self, failure: Failure) -> None:
        self.log.failure("internal error while accepting {peer}", failure, peer=self.peer)
        self._close()

    def _authenticated(self, ok: bool, p: Connect, will: Message | None) -> None:
        if self.state != AUTHENTICATING:
            return
        client = self.client
        assert client is not None
        if not ok:
            self.log.info(
                "refused {client_id} from {peer}: not authorized",
                client_id=clip(client.client_id),
                peer=self.peer,
            )
            self._refuse(ConnAckCode.NOT_AUTHORIZED, None)
            return
        if will is not None and not self.hub.authorize(client, WRITE, will.topic):
            self._refuse(ConnAckCode.NOT_AUTHORIZED, "will topic not authorized")
            return
        session, present = self.hub.connect(client, self, p.clean_session, will)
        self.session = session
        self.state = CONNECTED
        self._write(encode(ConnAck(0, present)))
        if self.settings.verbose:
            self.log.info(
                "client {client_id} connected from {peer} (level {protocol_level}, clean {clean}, keepalive {keepalive})",
                client_id=clip(client.client_id),
                peer=self.peer,
                protocol_level=self.level,
                clean=p.clean_session,
                keepalive=p.keepalive,
            )
        if not self.keepalive:
            self._sweeper.discard(self)
        session.resume(self)
        self._may_wait = has_acl_plugins(self.hub)
        self._drain()

    def _drain(self) -> None:
        """Handle the packets queued while authenticating or waiting, in order."""
        pending, self._pending = self._pending, []
        for i, packet in enumerate(pending):
            if self.state == WAITING:
                self._pending[:0] = pending[i:]
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

    def _refuse(self, code: int, why: str | None) -> None:
        if why:
            self.log.info("refused connection from {peer}: {why}", peer=self.peer, why=why)
        self._write(encode(ConnAck(code)))
        self._close()

    def _on_second_connect(self, p: Connect) -> None:
        self.protocol_error(MQTTError("second CONNECT", ReasonCode.PROTOCOL_ERROR))

    # PUBLISH and acknowledgements --------------------------------------------------

    def _on_publish(self, p: Publish) -> None:
        if self._may_wait and self._hold(p, WRITE, (p.topic,)):
            return
        stats = self._stats
        stats.publish_received += 1
        limit = self.settings.message_size_limit
        if limit and len(p.payload) > limit:
            self.protocol_error(MQTTError("payload above message_size_limit", ReasonCode.PACKET_TOO_LARGE))
            return
        if p.retain and not self.settings.retain_available:
            self.protocol_error(MQTTError("retain not available", ReasonCode.RETAIN_NOT_SUPPORTED))
            return
        qos = p.qos
        hub = self.hub
        session = self.session
        allowed = hub.authorize(session.client, WRITE, p.topic)  # type: ignore[union-attr]
        if qos == 0:
            if allowed:
                hub.publish(Message(p.topic, p.payload, 0, p.retain), session)
            return
        pid = p.packet_id
        if qos == 1:
            if allowed:
                hub.publish(Message(p.topic, p.payload, 1, p.retain), session)
            self._write(b"\x40\x02" + pid.to_bytes(2, "big"))  # type: ignore[union-attr]
        else:
            if session.inbound_qos2_received(pid) and allowed:  # type: ignore[union-attr,arg-type]
                hub.publish(Message(p.topic, p.payload, 2, p.retain), session)
            self._write(b"\x50\x02" + pid.to_bytes(2, "big"))  # type: ignore[union-attr]

    def _on_puback(self, p: PubAck) -> None:
        self.session.acknowledge(p.packet_id)  # type: ignore[union-attr]

    def _on_pubrec(self, p: PubRec) -> None:
        self.session.received_pubrec(p.packet_id)  # type: ignore[union-attr]
        self._write(b"\x62\x02" + p.packet_id.to_bytes(2, "big"))

    def _on_pubrel(self, p: PubRel) -> None:
        self.session.inbound_qos2_released(p.packet_id)  # type: ignore[union-attr]
        self._write(b"\x70\x02" + p.packet_id.to_bytes(2, "big"))

    def _on_pubcomp(self, p: PubComp) -> None:
        self.session.acknowledge(p.packet_id)  # type: ignore[union-attr]

    # SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------------------

    def _on_subscribe(self, p: Subscribe) -> None:
        hub = self.hub
        session = self.session
        assert session is not None and self.client is not None
        if self._may_wait and self._hold(p, SUBSCRIBE, [f for f, _ in p.topics]):
            return
        granted: list[int] = []
        limit = self.settings.max_subscriptions
        over = 0
        for topic_filter, qos in p.topics:
            try:
                validate_topic_filter(topic_filter)
            except TopicError as e:
                self.protocol_error(MQTTError(f"invalid filter: {e}", ReasonCode.TOPIC_FILTER_INVALID))
                return
            if not hub.authorize(self.client, SUBSCRIBE, topic_filter):
                granted.append(SUBSCRIBE_FAILED)
                continue
            subs = session.subscriptions
            if limit and len(subs) >= limit and topic_filter not in subs:
                over += 1  # MQTT 5: 0x97, quota exceeded
                granted.append(SUBSCRIBE_FAILED)
                continue
            granted.append(hub.subscribe(session, topic_filter, qos))
            if self.settings.verbose:
                self.log.debug(
                    "{client_id} subscribed to {topic_filter} qos {qos}",
                    client_id=clip(session.client_id),
                    topic_filter=clip(topic_filter),
                    qos=qos,
                )
        if over:
            self.log.info("refused {over} subscriptions of {client_id}: max_subscriptions ({limit}) reached",
                          over=over, client_id=clip(session.client_id), limit=limit)
        self._write(encode(SubAck(p.packet_id, granted)))
        for (topic_filter, _), qos in zip(p.topics, granted):
            if qos == SUBSCRIBE_FAILED:
                continue
            for message in hub.retained(topic_filter):
                if not hub.can_read(self.client, message.topic):
                    continue
                session.deliver(message, min(qos, message.qos), True)

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        session = self.session
        for topic_filter in p.topics:
            try:
                validate_topic_filter(topic_filter)
            except TopicError as e:
                self.protocol_error(MQTTError(f"invalid filter: {e}", ReasonCode.TOPIC_FILTER_INVALID))
                return
            self.hub.unsubscribe(session, topic_filter)  # type: ignore[arg-type]
        self._write(encode(UnsubAck(p.packet_id)))

    def _on_pingreq(self, p: PingReq) -> None:
        self._write(PINGRESP)

    def _on_disconnect(self, p: Disconnect) -> None:
        self._graceful = True
        session = self.session
        if session is not None:
            self.session = None
            self.hub.disconnect(session, True, self)
            if self.settings.verbose:
                self.log.info("client {client_id} disconnected (clean)", client_id=clip(session.client_id))
        self._close()

    # Endpoint (called by the hub and the session) --------------------------------------

    def send_publish(
        self, message: Message, qos: int, packet_id: int | None, dup: bool, retain: bool
    ) -> None:
        stats = self._stats
        if self.congested and qos == 0:
            # The client reads slower than it is sent to. Past a bounded backlog,
            # drop QoS 0 (counted), as Mosquitto does once a client's queue is full.
            if self.backlog > QOS0_BACKLOG_LIMIT:
                stats.dropped += 1
                return
            self.backlog += len(message.payload)
        cache = message.cache
        key = qos * 2 + retain
        head = cache.get(key)
        if qos == 0:
            if head is None:
                h, payload = publish_parts(message.topic, message.payload, 0, retain)
                head = cache[key] = h + payload
            data = head
        else:
            if head is None:
                head = cache[key] = publish_parts(message.topic, message.payload, qos, retain)[0]
            if dup:
                head = set_dup(head)
            data = head + packet_id.to_bytes(2, "big") + message.payload  # type: ignore[union-attr]
        stats.publish_sent += 1
        stats.messages_sent += 1
        stats.bytes_sent += len(data)
        self.link.write(data)

    def send_pubrel(self, packet_id: int) -> None:
        self._write(b"\x62\x02" + packet_id.to_bytes(2, "big"))

    def takeover(self) -> None:
        """Another connection claimed our client id: the hub already detached us."""
        self.session = None
        if self.settings.verbose and self.client is not None:
            self.log.info("client {client_id} taken over by a new connection", client_id=clip(self.client.client_id))
        self._close()

    # helpers -------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        stats = self._stats
        stats.messages_sent += 1
        stats.bytes_sent += len(data)
        self.link.write(data)

    def _close(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self._sweeper.discard(self)
            if getattr(self.link, "producer", None) is self:
                # A transport with a registered producer never finishes closing.
                self.link.unregisterProducer()
            self.link.loseConnection()

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
                self._close()
        elif state == CLOSED:
            self._sweeper.discard(self)
        elif now - self.opened >= self.settings.connect_timeout:
            self._anonymous_failure("timeout", LogLevel.info, "no CONNECT from {peer} in time; closing",
                                    {"peer": self.peer})
            self._close()


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
}
