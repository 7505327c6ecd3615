"""One bridge at run time: a hub client on the local side, an MQTT client on the remote.

The local side is a hub session like any client's (client id ``local_clientid``),
subscribed to the local topics of the ``out`` and ``both`` rules with No Local and
Retain As Published, so a message the bridge brought in never goes back out. The
link is that session's endpoint while the remote is connected: the hub's deliveries
become PUBLISHes to the remote, under the session's own packet ids, and the remote's
acknowledgements finish them. While the remote is away the session is detached and
its queue holds the QoS 1/2 messages (bounded by ``max_queued_messages``, durable
with the hub's journal), resent when the remote returns; unless ``local_cleansession``
makes the session end with each connection, as in Mosquitto.

The remote side: connect (with backoff and failover across ``address`` entries),
CONNECT with a will that sets the state topic to ``0``, subscribe to the remote
topics of the ``in`` and ``both`` rules (No Local at MQTT 5; the bridge bit of
``try_private`` below it), and publish what arrives into the hub from the session.
"""

from __future__ import annotations

import random
from typing import Any, Callable
from zlib import crc32

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.bridge.client import ClientError, RemoteLimits
from gateway.bridge.topics import TopicRule, remap_in, remap_out
from gateway.bridge.transport import Dialer, RemoteProtocol
from gateway.config.bridges import Bridge
from gateway.hub.acks import DurableAcks
from gateway.hub.api import ClientInfo, Message, Reason, Subscription
from gateway.hub.hub import Hub
from gateway.hub.sessions import Session
from gateway.hub.topics import is_valid_topic_name
from gateway.logtext import clip
from gateway.mqtt import codes
from gateway.mqtt.codec import encode
from gateway.mqtt.packets import (
    Connect, Packet, PubAck, PubComp, Publish, PubRec, PubRel, Subscribe, Unsubscribe, Will,
)
from gateway.mqtt.reasons import PropertyId, ReasonCode

P = PropertyId
#: The local session's expiry: as Mosquitto's bridge contexts, it does not expire
#: (MQTT 5's "never", beyond persistent_client_expiration's reach).
NEVER = 0xFFFFFFFF
#: Seconds between attempts to return to the first address (round_robin false).
PRIMARY_RETRY = 5.0
#: Subscription options of the remote subscriptions at MQTT 5: No Local, Retain As
#: Published (retained messages are sent at every subscribe: retain handling 0).
REMOTE_OPTIONS = 0x04 | 0x08
STATE_UP, STATE_DOWN = b"1", b"0"


class BridgeLink:
    """One ``connection`` section's bridge; ``start()``, then ``stop()`` at shutdown."""

    log = Logger()

    def __init__(self, hub: Hub, settings: Bridge, dialer: Dialer, clock: Any = None,
                 receive_maximum: int = 20, jitter: Callable[[float, float], float] = random.uniform
                 ) -> None:
        self.hub = hub
        self.settings = settings
        self.name = settings.name
        self.clock = clock if clock is not None else hub.clock
        self.stats = hub.stats
        self.traffic = hub.stats.traffic_of("bridge")
        self.dialer = dialer
        self._jitter = jitter
        self.rules: list[TopicRule] = settings.topics
        self.local_clean = (settings.cleansession if settings.local_cleansession is None
                            else settings.local_cleansession)
        self.client = ClientInfo(settings.local_clientid or "", "bridge", "", settings.local_username,
                                 transport=f"bridge:{settings.name}",
                                 trusted=settings.local_username is None)
        self.receive_maximum = settings.receive_maximum or min(receive_maximum, 65535)
        self.level = settings.protocol_version
        self.try_private = settings.try_private
        self.session: Session | None = None
        self.proto: RemoteProtocol | None = None
        self.limits = RemoteLimits()
        self.up = False
        self.index = 0                     # the address being tried or used
        self.delay = float(settings.restart_base)
        self.connections = 0               # successful connections so far
        self.stopping = False
        self._timer: Any = None
        self._primary: Any = None
        self._failback = False
        self._explained = False            # the failure of this attempt is logged already
        self._own_pids: dict[int, str] = {}  # our SUBSCRIBE/UNSUBSCRIBE/state ids -> what
        self._dialing: defer.Deferred[Any] | None = None
        self._acks = DurableAcks(hub, self._write_ack)
        self._packet_limit = 0

    @property
    def address(self) -> str:
        host, port = self.settings.addresses[self.index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the local session (so messages queue from now on) and connect."""
        if self.settings.notifications:
            self._local_state(STATE_DOWN)
        if not self.local_clean:
            self._attach()
            self.hub.disconnect(self.session, graceful=True, endpoint=self)  # type: ignore[arg-type]
        self._dial()

    def stop(self) -> defer.Deferred[None]:
        """End the bridge: the remote hears the state ``0`` and a DISCONNECT; the local
        session stays (its queue waits for the next start)."""
        self.stopping = True
        for call in (self._timer, self._primary):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._primary = None
        if self._dialing is not None:
            self._dialing.cancel()
        proto = self.proto
        if proto is None:
            return defer.succeed(None)
        if self.up:
            self._remote_state(STATE_DOWN)
            proto.disconnect()
        else:
            proto.abort()
        return proto.lost

    def _dial(self) -> None:
        self._timer = None
        if self.stopping:
            return
        self.log.info("bridge {name} connecting to {address}", name=self.name, address=self.address)
        self._explained = False
        d = self._dialing = self.dialer.connect(self.index, self._new_protocol)
        d.addCallbacks(self._dialed, self._dial_failed)

    def _new_protocol(self) -> RemoteProtocol:
        proto = RemoteProtocol(self, self._connect_packet())
        self.proto = proto
        return proto

    def _dialed(self, proto: Any) -> None:
        self._dialing = None

    def _dial_failed(self, failure: Failure) -> None:
        self._dialing = None
        self.proto = None
        if self.stopping:
            return
        self.log.warn("bridge {name}: cannot connect to {address}: {reason}", name=self.name,
                      address=self.address, reason=failure.getErrorMessage())
        self._retry()

    def _retry(self) -> None:
        """After a failure: the next address, after the restart delay (Mosquitto's
        decorrelated jitter between restart_timeout's base and cap)."""
        if self.stopping:
            return
        settings = self.settings
        if settings.start_type == "once":
            self.log.warn("bridge {name} stopped: start_type once does not restart",
                          name=self.name)
            return
        self.index = (self.index + 1) % len(settings.addresses)
        base, cap = settings.restart_base, settings.restart_cap
        if cap is not None:
            self.delay = min(float(cap), self._jitter(base, self.delay * 3))
        else:
            self.delay = float(base)
        self._timer = self.clock.callLater(self.delay, self._dial)

    def _connect_packet(self) -> Connect:
        s = self.settings
        level = self.level
        will = None
        if s.notifications and not s.notifications_local_only:
            will = Will(s.state_topic, STATE_DOWN, 1, True)
        props: dict[int, int] = {}
        if level == 5:
            if s.session_expiry_interval:
                props[P.SESSION_EXPIRY_INTERVAL] = s.session_expiry_interval
            if self.receive_maximum:
                props[P.RECEIVE_MAXIMUM] = self.receive_maximum
        password = None if s.remote_password is None else s.remote_password.encode()
        # try_private: the bridge bit on the level, which a Mosquitto remote answers with
        # No Local and Retain As Published on our subscriptions (MQTT 5 has them itself).
        return Connect(s.remote_clientid or "", level, s.cleansession, s.keepalive,
                       s.remote_username, password, will, "MQIsdp" if level == 3 else "MQTT", props,
                       bridge=level < 5 and self.try_private)

    def connection_lost(self, proto: RemoteProtocol, reason: Failure | None) -> None:
        """The transport's end (ours or the remote's): detach, then retry or finish."""
        if proto is not self.proto:
            return
        self.proto = None
        if self._primary is not None and self._primary.active():
            self._primary.cancel()
        self._primary = None
        session = self.session
        for pid in self._own_pids:
            if session is not None:
                session.release_pid(pid)
        self._own_pids.clear()
        self._acks.drop()
        why = reason.getErrorMessage() if reason is not None else "closed"
        if not self.up and not self.stopping and not self._explained:
            self.log.warn("bridge {name}: connection to {address} failed: {reason}",
                          name=self.name, address=self.address, reason=why)
        if self.up:
            self.up = False
            log = self.log.info if self.stopping or self._failback else self.log.warn
            log("bridge {name} disconnected from {address}: {reason}", name=self.name,
                address=self.address, reason=why)
            if session is not None:
                self.hub.disconnect(session, graceful=True, endpoint=self)
            if self.settings.notifications:
                self._local_state(STATE_DOWN)
        if self.stopping:
            return
        if self._failback:
            self._failback = False
            self.index = 0
            self.delay = float(self.settings.restart_base)
            self._dial()
            return
        self._retry()

    def protocol_error(self, error: ClientError) -> None:
        self._explained = True
        self.log.warn("bridge {name}: {address} broke the protocol: {reason}", name=self.name,
                      address=self.address, reason=str(error))

    # --- the remote's answers (gateway.bridge.client.Handler) ------------------------------

    def connected(self, limits: RemoteLimits) -> None:
        proto = self.proto
        assert proto is not None
        self.up = True
        self.limits = limits
        sizes = [x for x in (self.settings.max_packet_size, limits.max_packet_size) if x]
        self._packet_limit = min(sizes) if sizes else 0
        self.connections += 1
        self.delay = float(self.settings.restart_base)
        self.log.info("bridge {name} connected to {address}", name=self.name, address=self.address)
        session, subscribed = self._attach()
        if limits.receive_maximum:
            session.receive_maximum = limits.receive_maximum
        if self.settings.notifications:
            self._remote_state(STATE_UP)
            self._local_state(STATE_UP)
        self._subscribe_remote(session, proto)
        session.resume(self)
        for done in subscribed:
            self.hub.deliver_retained(session, done)
        if not self.settings.round_robin and self.index != 0:
            self._primary = self.clock.callLater(PRIMARY_RETRY, self._try_primary)

    def refused(self, code: int, text: str) -> None:
        proto = self.proto
        self._explained = True
        if self.level == 5 and code == 1:
            # A CONNACK of MQTT 3.1.1's shape: the remote does not speak MQTT 5.
            self.log.warn("bridge {name}: {address} does not support MQTT 5; retrying with "
                          "MQTT 3.1.1", name=self.name, address=self.address)
            self.level = 4
        elif self.level < 5 and code == 1 and self.try_private:
            self.log.warn("bridge {name}: {address} refused the bridge flag (try_private); "
                          "retrying without it", name=self.name, address=self.address)
            self.try_private = False
        else:
            self.log.error("bridge {name}: {address} refused the connection: {reason}",
                           name=self.name, address=self.address, reason=text)
        if proto is not None:
            proto.abort()

    def message(self, p: Publish) -> None:
        session = self.session
        if session is None or session.endpoint is not self:
            return
        hub = self.hub
        topic = remap_in(self.rules, p.topic)
        if topic is not p.topic and not is_valid_topic_name(topic):
            # A prefix made it too long or too deep: dropped, acknowledged.
            self.traffic.dropped[p.qos] += 1
            if p.qos:
                self._ack((PubAck if p.qos == 1 else PubRec)(p.packet_id))  # type: ignore[arg-type]
            return
        message = codes.hub_message(topic, p, hub.now)
        qos = p.qos
        self.traffic.received[qos] += 1
        if qos < 2:
            result = hub.publish_from(session, message)
            if qos:
                self._ack(PubAck(p.packet_id, self._code(result)))  # type: ignore[arg-type]
            return
        # QoS 2, as the MQTT channel does: checked now, published at PUBREL.
        pid: int = p.packet_id  # type: ignore[assignment]
        fingerprint = crc32(p.payload, crc32(topic.encode()))
        if session.inbound_qos2_pending(pid, fingerprint):
            self._ack(PubRec(pid))
            return
        denied = hub.check_publish(session.client, message)
        if denied is None:
            session.inbound_qos2_received(pid, fingerprint, message)
        self._ack(PubRec(pid, self._code(denied)))

    def _code(self, result: Any) -> int:
        if self.level < 5 or result is None or type(result) is int:
            return 0
        return codes.v5_code(result.reason)

    def released(self, packet_id: int) -> None:
        session = self.session
        if session is not None and session.endpoint is self:
            _, held = session.inbound_qos2_released(packet_id)
            if held is not None:
                self.hub.publish(held, session)
        self._ack(PubComp(packet_id))

    def acked(self, packet_id: int, code: int) -> None:
        if self._own(packet_id) is None:
            self._finish(packet_id)

    def received(self, packet_id: int, code: int) -> None:
        session = self.session
        attached = session is not None and session.endpoint is self
        if code >= 0x80:
            if attached:
                session.acknowledge(packet_id)  # type: ignore[union-attr]
            return
        if not (attached and session.received_pubrec(packet_id)):  # type: ignore[union-attr]
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.level == 5 else 0
            self._send(PubRel(packet_id, code))
            return
        self._send(PubRel(packet_id))

    def completed(self, packet_id: int) -> None:
        self._finish(packet_id)

    def subscribed(self, packet_id: int, codes_: list[int]) -> None:
        what = self._own(packet_id)
        if what is not None and codes_ and codes_[0] >= 0x80:
            self.log.warn("bridge {name}: {address} refused the subscription to {topic} "
                          "(code {code:#04x})", name=self.name, address=self.address,
                          topic=clip(what), code=codes_[0])

    def unsubscribed(self, packet_id: int) -> None:
        self._own(packet_id)

    def server_disconnected(self, code: int) -> None:
        self.log.warn("bridge {name}: {address} sent DISCONNECT: {reason}", name=self.name,
                      address=self.address, reason=_reason_text(code))
        if self.proto is not None:
            self.proto.abort()

    def _finish(self, packet_id: int) -> None:
        session = self.session
        if session is not None and session.endpoint is self:
            session.acknowledge(packet_id)

    def _own(self, packet_id: int) -> str | None:
        """The answer to one of our own packets: release its id, say what it was."""
        what = self._own_pids.pop(packet_id, None)
        if what is not None and self.session is not None:
            self.session.release_pid(packet_id)
        return what

    # --- the hub's deliveries (gateway.hub.api.Endpoint) ---------------------------------

    def send_publish(self, message: Message, qos: int, packet_id: int | None, dup: bool,
                     retain: bool, sub_ids: tuple[int, ...]) -> bool:
        proto = self.proto
        if proto is None or not self.up:
            return True
        limits = self.limits
        if qos > limits.max_qos:
            qos = limits.max_qos
        if qos == 0 and not proto.qos0_fits(len(message.payload)):
            self.traffic.dropped[0] += 1
            return packet_id is None
        retain = retain and self.settings.outgoing_retain and limits.retain_available
        topic = remap_out(self.rules, message.topic)
        if topic is not message.topic and not is_valid_topic_name(topic):
            self.traffic.dropped[qos] += 1
            return False
        props: Any = {}
        if self.level == 5:
            props = codes.static_properties(message.props)
            remaining = codes.remaining_expiry(message, self.hub.now())
            if remaining is not None:
                props.append((P.MESSAGE_EXPIRY_INTERVAL, remaining))
        data = encode(Publish(topic, message.payload, qos, retain, dup and qos > 0,
                              packet_id if qos else None, props), self.level)
        limit = self._packet_limit
        if limit and len(data) > limit:
            self.traffic.dropped[qos] += 1
            return False
        proto.send_bytes(data)
        self.traffic.sent[qos] += 1
        # A delivery sent at QoS 0 (the remote's maximum) is finished now.
        return qos > 0 or packet_id is None

    def send_pubrel(self, packet_id: int) -> None:
        self._send(PubRel(packet_id))

    def close(self, reason: Reason) -> None:
        """The hub detached the local session (another client took its id over, or an
        administrator ended it): drop the remote connection too; it will reconnect."""
        self.log.warn("bridge {name}: local session {client_id} ended: {reason}", name=self.name,
                      client_id=self.client.client_id, reason=reason.value)
        if self.proto is not None:
            self.proto.abort()

    # --- helpers -----------------------------------------------------------------------

    def _attach(self) -> tuple[Session, list[Any]]:
        """Connect the local session, its subscriptions as the rules say (filters of a
        previous configuration removed)."""
        hub = self.hub
        session, _ = hub.connect(self.client, self, clean_start=self.local_clean,
                                 expiry=0 if self.local_clean else NEVER)
        self.session = session
        wanted = {r.local_topic: r for r in self.rules if r.outbound}
        for topic_filter in list(session.subscriptions):
            if topic_filter not in wanted:
                hub.unsubscribe(session, topic_filter)
        subscribed = []
        max_qos = self.limits.max_qos
        for topic_filter, rule in wanted.items():
            sub = Subscription(min(rule.qos, max_qos), no_local=True, retain_as_published=True)
            result = hub.subscribe(session, topic_filter, sub)
            if result:
                subscribed.append(result)
            else:
                self.log.warn("bridge {name}: local subscription to {topic} refused: {reason}",
                              name=self.name, topic=topic_filter, reason=result.reason.value)
        return session, subscribed

    def _subscribe_remote(self, session: Session, proto: RemoteProtocol) -> None:
        max_qos = self.limits.max_qos
        for rule in self.rules:
            if rule.inbound:
                options = min(rule.qos, max_qos)
                if self.level == 5:
                    options |= REMOTE_OPTIONS
                proto.send(Subscribe(self._own_pid(session, rule.remote_topic),
                                     [(rule.remote_topic, options)]))
            elif self.settings.attempt_unsubscribe:
                # An out-only topic: drop a subscription a previous configuration made.
                proto.send(Unsubscribe(self._own_pid(session, rule.remote_topic),
                                       [rule.remote_topic]))

    def _own_pid(self, session: Session, what: str) -> int:
        pid = session.reserve_pid()
        self._own_pids[pid] = what
        return pid

    def _local_state(self, state: bytes) -> None:
        message = Message(self.settings.state_topic, state, 1, True)
        message.source = self.client
        self.hub.publish(message, self.session)

    def _remote_state(self, state: bytes) -> None:
        if self.settings.notifications_local_only or self.proto is None or self.session is None:
            return
        limits = self.limits
        qos = 1 if limits.max_qos else 0
        pid = self._own_pid(self.session, self.settings.state_topic) if qos else None
        self.proto.send(Publish(self.settings.state_topic, state, qos, limits.retain_available,
                                False, pid))

    def _send(self, packet: Packet) -> None:
        if self.proto is not None:
            self.proto.send(packet)

    def _ack(self, packet: Any) -> None:
        """Acknowledge the remote once what we acknowledge is durable (persistence on),
        in order, on the connection it came from."""
        self._acks.send((packet, self.proto))

    def _write_ack(self, item: tuple[Any, Any]) -> None:
        packet, proto = item
        if proto is self.proto and proto is not None:
            proto.send(packet)

    def _try_primary(self) -> None:
        """Away from the first address (round_robin false): if it accepts connections
        again, leave this one and go back to it (Mosquitto probes every 5 s)."""
        self._primary = None
        if self.stopping or not self.up:
            return

        def reachable(_: Any) -> None:
            if self.up and self.proto is not None and not self.stopping:
                self.log.info("bridge {name}: first address is back; leaving {address}",
                              name=self.name, address=self.address)
                self._failback = True
                self.proto.disconnect()

        def unreachable(_: Failure) -> None:
            if self.up and not self.stopping:
                self._primary = self.clock.callLater(PRIMARY_RETRY, self._try_primary)

        self.dialer.probe(0).addCallbacks(reachable, unreachable)

    def status(self) -> dict[str, Any]:
        session = self.session
        return {
            "name": self.name, "address": self.address, "connected": self.up,
            "connections": self.connections,
            "queued": 0 if session is None else len(session.queue) + len(session.inflight),
        }


def _reason_text(code: int) -> str:
    try:
        return ReasonCode(code).name.lower().replace("_", " ")
    except ValueError:
        return f"reason code {code:#04x}"
