"""One MQTT-SN client's protocol state: messages in, hub calls out, deliveries back.

States (MQTT-SN v1.2 §6.14): CONNECTING (the will handshake), AUTHENTICATING, ACTIVE,
ASLEEP (DISCONNECT with a duration: deliveries are held, bounded), AWAKE (a PINGREQ
woke it: held messages go out, then PINGRESP and back to ASLEEP) and CLOSED (after a
DISCONNECT, a takeover, or *lost*: keepalive or sleep duration missed by 1.5 times, or
Nretry retransmissions unanswered; a lost client's will is published). A client asleep
in a stored session sleeps through a restart of the gateway (``resume_asleep``).

Deliveries to the client (REGISTER first, one QoS 1/2 message at a time, Tretry and
Nretry, the sleep buffer) are the channel's ``Delivery`` (``gateway.mqttsn.delivery``).

The channel writes through its ``network`` (``send(addr, bytes)``) and keeps time on the
context's shared timer heap, so tests drive it with a fake network and ``task.Clock``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.hub.acks import DurableAcks
from gateway.hub.api import ALLOWED, WRITE, AuthResult, ClientInfo, Denied, Message, Reason
from gateway.hub.sessions import SLEEP_KEY
from gateway.hub.topics import TopicError, validate_topic_name
from gateway.logtext import clip
from gateway.mqttsn.codec import (
    PROTOCOL_ID,
    Advertise,
    ConnAck,
    Connect,
    Disconnect,
    Encapsulated,
    GwInfo,
    MQTTSNError,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    RegAck,
    Register,
    ReturnCode,
    SearchGw,
    Subscribe,
    TopicIdType,
    Unsubscribe,
    WillMsg,
    WillMsgReq,
    WillMsgResp,
    WillMsgUpd,
    WillTopic,
    WillTopicReq,
    WillTopicResp,
    WillTopicUpd,
    decode,
    encode,
)
from gateway.mqttsn.context import Forwarded, MQTTSNContext, Network, Timer
from gateway.mqttsn import subscriptions
from gateway.mqttsn.delivery import Delivery
from gateway.mqttsn.reasons import return_code
from gateway.mqttsn.registry import EXTRA_KEY, incoming_topic, register, registry_of
from gateway.mqttsn.states import (
    ACTIVE,
    ASLEEP,
    AUTHENTICATING,
    AWAKE,
    CLOSED,
    CONNECTING,
    LIVE,
    SLEEPY,
)

if TYPE_CHECKING:
    from gateway.hub.sessions import Session

CONNACK_OK = encode(ConnAck(ReturnCode.ACCEPTED))
DISCONNECT = encode(Disconnect())
WILLTOPICREQ = encode(WillTopicReq())
WILLMSGREQ = encode(WillMsgReq())
PINGRESP = encode(PingResp())


_PUBACK = struct.Struct("!BBHHB")


class MQTTSNChannel:
    """Protocol state for one MQTT-SN client at one address of one network."""

    log = Logger()

    __slots__ = (
        "ctx", "network", "addr", "listener", "state", "client", "session", "keepalive",
        "sleep_duration", "last_rx", "delivery", "acks", "_timer", "_connect", "_will",
    )

    def __init__(self, ctx: MQTTSNContext, network: Network, addr: Any, listener: Any = None) -> None:
        self.ctx = ctx
        self.network = network
        self.addr = addr
        self.listener = listener
        self.state = CONNECTING
        self.client: ClientInfo | None = None
        self.session: Session | None = None
        self.keepalive = 0
        self.sleep_duration = 0
        self.last_rx = ctx.clock.seconds()
        self._timer: Timer | None = None  # the handshake or supervision deadline
        self._connect: tuple[Connect, str | None] | None = None
        self._will: list[Any] | None = None  # [topic or None, qos, retain, payload]
        self.delivery = Delivery(self)
        # PUBACK, PUBREC, PUBCOMP and REGACK wait for the store (with persistence on).
        self.acks = DurableAcks(ctx.hub, self.send)

    def __repr__(self) -> str:
        cid = self.client.client_id if self.client else None
        return f"<MQTTSNChannel {cid!r} at {self.addr!r} state={self.state}>"

    @property
    def sleeping(self) -> bool:
        return self.state in SLEEPY

    @property
    def peer(self) -> str:
        return self.network.describe(self.addr)

    # input -----------------------------------------------------------------------------

    def datagram(self, data: bytes) -> None:
        """One received message; undecodable ones are dropped and counted."""
        ctx = self.ctx
        self.last_rx = ctx.clock.seconds()
        stats = ctx.hub.stats
        stats.messages_received += 1
        n = len(data)
        stats.bytes_received += n
        if n >= 7 and data[1] == 0x0C and data[0] == n and self.state == ACTIVE:
            # The common case, a short PUBLISH from an active client, without building
            # a Publish object: flags (QoS bits 6-5, retain bit 4, id type bits 1-0).
            flags = data[2]
            q = (flags >> 5) & 3
            self._publish_in(flags & 3, (data[3] << 8) | data[4], (data[5] << 8) | data[6],
                             data[7:], -1 if q == 3 else q, bool(flags & 0x10))
            return
        try:
            msg = decode(data)
        except MQTTSNError:
            self.ctx.counters.frames_dropped += 1
            return
        self.handle(msg)

    def handle(self, msg: Any) -> None:
        state = self.state
        t = type(msg)
        if t is Connect:
            self._on_connect(msg)
        elif state in LIVE:
            handler = _HANDLERS.get(t)
            if handler is None:
                self._violation(f"unexpected {t.__name__.upper()}")
            else:
                handler(self, msg)
        elif state == CONNECTING:
            if t is WillTopic:
                self._on_willtopic(msg)
            elif t is WillMsg:
                self._on_willmsg(msg)
            # anything else waits for the handshake (the client retransmits)

    # CONNECT and the will handshake ----------------------------------------------------------

    def _on_connect(self, p: Connect) -> None:
        if self.state in LIVE:
            # Back from sleep, or a CONNECT again (its CONNACK may have been lost: UDP):
            # the client is evidently alive, so no will, unless another client id now
            # speaks from this address.
            keep = self.delivery.held_qos0() if (self.sleeping and not p.clean) else []
            same = self.client is not None and self.client.client_id == p.client_id
            self._detach(graceful=self.sleeping or same)
            self.delivery.hold(keep)
            self._set_state(CONNECTING)
        settings = self.ctx.settings
        if p.protocol_id != PROTOCOL_ID:
            self._refuse(ReturnCode.NOT_SUPPORTED, f"protocol id {p.protocol_id}")
            return
        if not p.client_id:
            self._refuse(ReturnCode.NOT_SUPPORTED, "empty client id")
            return
        network = self.network
        username = network.identity(self.addr)
        if username is None:
            if network.requires_identity:
                self._refuse(ReturnCode.NOT_SUPPORTED, "no identity from the DTLS handshake")
                return
            username = settings.clients.get(p.client_id, settings.default_username)
            if username is None and settings.clients and p.client_id not in settings.clients:
                self._refuse(ReturnCode.NOT_SUPPORTED, f"client id {clip(p.client_id)} not in the client list")
                return
        self._connect = (p, username)
        self.state = CONNECTING
        self._arm(settings.handshake_timeout, self._handshake_expired)
        self._will = None
        if p.will:
            self.send(WILLTOPICREQ)
        else:
            self._authenticate()

    def _on_willtopic(self, p: WillTopic) -> None:
        if self._connect is None:
            return
        if p.topic is None:  # empty WILLTOPIC: no will after all
            self._will = None
            self._authenticate()
            return
        try:
            validate_topic_name(p.topic)
        except TopicError as e:
            self._refuse(ReturnCode.NOT_SUPPORTED, f"will topic: {e}")
            return
        self._will = [p.topic, max(p.qos, 0), p.retain, b""]
        self.send(WILLMSGREQ)

    def _on_willmsg(self, p: WillMsg) -> None:
        if self._connect is None or self._will is None:
            return
        self._will[3] = p.payload
        self._authenticate()

    def _will_message(self) -> Message | None:
        w = self._will
        return None if w is None or w[0] is None else Message(w[0], w[3], w[1], w[2])

    def _handshake_expired(self) -> None:
        if self.state in (CONNECTING, AUTHENTICATING):
            self.log.info("MQTT-SN client at {peer}: CONNECT not completed in time", peer=self.peer)
            self._close()

    def _authenticate(self) -> None:
        assert self._connect is not None
        p, username = self._connect
        self.client = ClientInfo(p.client_id, "mqttsn", self.peer, username, self.listener,
                                 transport=self.network.transport_name)
        self.state = AUTHENTICATING
        if username is not None:
            # The client list, the default username or the DTLS identity is the credential
            # (MQTT-SN has no password), as a certificate is for use_identity_as_username.
            self._authenticated(ALLOWED)
            return
        result = self.ctx.hub.authenticate(self.client, None)
        if isinstance(result, Deferred):
            result.addCallbacks(self._authenticated, self._auth_failed)
            result.addErrback(self._internal_error)
        else:
            self._authenticated(result)

    def _auth_failed(self, failure: Failure) -> None:
        self.log.failure("authentication backend failed", failure)
        self._refuse(ReturnCode.CONGESTION, "authentication backend failed")

    def _internal_error(self, failure: Failure) -> None:
        self.log.failure("internal error while accepting {peer}", failure, peer=self.peer)
        self._close()

    def _authenticated(self, result: AuthResult) -> None:
        if self.state != AUTHENTICATING or self._connect is None:
            return
        hub = self.ctx.hub
        client = self.client
        assert client is not None
        if not result:
            assert isinstance(result, Denied)
            self._refuse(return_code(result), result.reason.value)
            return
        will = self._will_message()
        if will is not None and not hub.authorize(client, WRITE, will.topic):
            self._refuse(ReturnCode.NOT_SUPPORTED, "will topic not authorized")
            return
        p = self._connect[0]
        self._connect = None
        existing = hub.session(client.client_id)
        old = existing.endpoint if existing is not None else None
        if isinstance(old, MQTTSNChannel) and old is not self and old.sleeping:
            # The same sensor, back from sleep at another address: not a takeover. Its
            # held QoS 0 messages move here; QoS 1/2 ones come back from the session.
            if not p.clean:
                self.delivery.hold(old.delivery.held_qos0())
            old._detach(graceful=True)
            old._close()
        # MQTT-SN's clean flag is MQTT 3.1.1's: a clean session ends with the connection.
        session, _ = hub.connect(client, self, p.clean, 0 if p.clean else None, will)
        session.receive_maximum = 1  # one QoS 1/2 PUBLISH unacknowledged at a time
        if EXTRA_KEY in session.extra:
            registry_of(session, self.ctx.settings.max_topics)  # indexed again after a restart
        self.session = session
        self.keepalive = p.duration
        self.last_rx = self.ctx.clock.seconds()
        self._set_state(ACTIVE)
        self.send(CONNACK_OK)
        self._supervise_from_now()
        if self.ctx.settings.verbose:
            self.log.info(
                "MQTT-SN client {client_id} connected from {peer} (clean {clean}, keepalive {keepalive})",
                client_id=clip(client.client_id), peer=self.peer, clean=p.clean, keepalive=p.duration,
            )
        session.resume(self)
        self.delivery.pump()

    def _refuse(self, code: int, why: str) -> None:
        self.log.info("refused MQTT-SN client at {peer}: {why}", peer=self.peer, why=why)
        self.send(encode(ConnAck(code)))
        self._close()

    def refuse_congestion(self) -> None:
        """CONNACK congestion for a CONNECT beyond the listener's ``max_connections``."""
        self.send(encode(ConnAck(ReturnCode.CONGESTION)))
        self.state = CLOSED

    # will updates ------------------------------------------------------------------------

    def _on_willtopicupd(self, p: WillTopicUpd) -> None:
        session = self.session
        assert session is not None and self.client is not None
        if p.topic is None:
            self._will = None
        else:
            try:
                validate_topic_name(p.topic)
            except TopicError:
                self.send(encode(WillTopicResp(ReturnCode.NOT_SUPPORTED)))
                return
            if not self.ctx.hub.authorize(self.client, WRITE, p.topic):
                self.send(encode(WillTopicResp(ReturnCode.NOT_SUPPORTED)))
                return
            payload = self._will[3] if self._will else b""
            self._will = [p.topic, max(p.qos, 0), p.retain, payload]
        session.will = self._will_message()
        session.changed()  # a persistent session's will is stored with it
        self.acks.send(encode(WillTopicResp(ReturnCode.ACCEPTED)))

    def _on_willmsgupd(self, p: WillMsgUpd) -> None:
        session = self.session
        assert session is not None
        if self._will is None:
            self._will = [None, 0, False, p.payload]  # a WILLTOPICUPD may follow
        else:
            self._will[3] = p.payload
        session.will = self._will_message()
        session.changed()
        self.acks.send(encode(WillMsgResp(ReturnCode.ACCEPTED)))

    # REGISTER from the client --------------------------------------------------------------

    def _on_register(self, p: Register) -> None:
        try:
            validate_topic_name(p.topic_name)
        except TopicError:
            self.send(encode(RegAck(0, p.msg_id, ReturnCode.NOT_SUPPORTED)))
            return
        topic_id = register(self.session, self.ctx.settings.max_topics, p.topic_name)  # type: ignore[arg-type]
        if topic_id is None:
            self.send(encode(RegAck(0, p.msg_id, ReturnCode.CONGESTION)))
            return
        self.ctx.counters.registrations += 1
        self.acks.send(encode(RegAck(topic_id, p.msg_id, ReturnCode.ACCEPTED)))

    # PUBLISH from the client ---------------------------------------------------------------

    def _on_publish(self, p: Publish) -> None:
        self._publish_in(p.topic_type, p.topic_id, p.msg_id, p.data, p.qos, p.retain)

    def _publish_in(self, ttype: int, tid: int, mid: int, data: bytes, qos: int, retain: bool) -> None:
        """A PUBLISH from the client (``datagram`` calls this directly for short ones)."""
        ctx = self.ctx
        hub = ctx.hub
        ctx.traffic.received[qos] += 1
        session = self.session
        assert session is not None
        if ttype == TopicIdType.NORMAL:
            registry = session.extra.get(EXTRA_KEY)
            topic = registry.by_id.get(tid) if registry is not None else None
        else:
            topic = incoming_topic(ttype, tid, ctx.predefined, session.extra.get(EXTRA_KEY))
        if topic is None:
            code = ReturnCode.NOT_SUPPORTED if ttype == TopicIdType.RESERVED else ReturnCode.INVALID_TOPIC_ID
            self.send(encode(PubAck(tid, mid, code)))
            return
        limit = ctx.settings.message_size_limit
        if limit and len(data) > limit:
            self.send(encode(PubAck(tid, mid, ReturnCode.NOT_SUPPORTED)))
            return
        if qos <= 0:
            result = hub.publish_from(session, Message(topic, data, 0, retain))
            if type(result) is Denied:
                self.send(encode(PubAck(tid, mid, return_code(result))))
        elif qos == 1:
            result = hub.publish_from(session, Message(topic, data, 1, retain))
            code = return_code(result) if type(result) is Denied else ReturnCode.ACCEPTED
            self.acks.send(_PUBACK.pack(7, 0x0D, tid, mid, code))
        else:
            # As for MQTT: checked now, published at PUBREL, a resent one only
            # acknowledged again.
            pending = session.inbound_qos2
            if mid not in pending:
                window = hub.settings.limits.max_inflight
                if window and len(pending) >= window:
                    self.acks.send(encode(PubAck(tid, mid, ReturnCode.CONGESTION)))
                    return
                message = Message(topic, data, 2, retain)
                denied = hub.check_publish(session.client, message)
                if denied is not None:
                    self.acks.send(encode(PubAck(tid, mid, return_code(denied))))
                    return
                session.inbound_qos2_received(mid, 0, message)
            self.acks.send(encode(PubRec(mid)))

    def _on_pubrel(self, p: PubRel) -> None:
        session = self.session
        assert session is not None
        _, held = session.inbound_qos2_released(p.msg_id)
        if held is not None:
            self.ctx.hub.publish(held, session)
        self.acks.send(encode(PubComp(p.msg_id)))

    # PINGREQ, DISCONNECT, sleep -----------------------------------------------------------

    def _on_pingreq(self, p: PingReq) -> None:
        if self.state == ACTIVE:
            self.send(PINGRESP)
            return
        if p.client_id and self.client is not None and p.client_id != self.client.client_id:
            return
        # Awake: send what was held, then PINGRESP (all_delivered) and back to sleep.
        self._set_state(AWAKE)
        self.delivery.resend_outstanding()
        self.delivery.pump()

    def _on_disconnect(self, p: Disconnect) -> None:
        if p.duration:
            self.sleep_duration = p.duration
            self._set_state(ASLEEP)
            self._supervise_from_now()
            session = self.session
            if session is not None and session.journaled and session.extra.get(SLEEP_KEY) != p.duration:
                session.own_extra()[SLEEP_KEY] = p.duration
                session.changed()
            # Once the store knows, a restart of the gateway keeps the client asleep.
            self.acks.send(DISCONNECT)
            return
        self.send(DISCONNECT)
        if self.ctx.settings.verbose and self.client is not None:
            self.log.info("MQTT-SN client {client_id} disconnected", client_id=clip(self.client.client_id))
        self._detach(graceful=True)
        self._close()

    def _on_searchgw(self, p: SearchGw) -> None:
        self.network.answer_searchgw(self.addr, encode(GwInfo(self.ctx.settings.gateway_id)))

    def _on_encapsulated(self, p: Encapsulated) -> None:
        self.network.received(Forwarded(self.addr, p.node_id), p.message)

    def _ignore(self, p: Any) -> None:
        pass

    # acknowledgements of what the gateway sent go to the Delivery -----------------------------

    def _on_puback(self, p: PubAck) -> None:
        self.delivery.on_puback(p)

    def _on_pubrec(self, p: PubRec) -> None:
        self.delivery.on_pubrec(p)

    def _on_pubcomp(self, p: PubComp) -> None:
        self.delivery.on_pubcomp(p)

    def _on_regack(self, p: RegAck) -> None:
        self.delivery.on_regack(p)

    def all_delivered(self) -> None:
        """The awake client has everything that was held: PINGRESP, and back to sleep."""
        self.send(PINGRESP)
        self._set_state(ASLEEP)

    # supervision -------------------------------------------------------------------------

    def _period(self) -> float:
        return float(self.sleep_duration if self.state in SLEEPY else self.keepalive)

    def _arm(self, delay: float, fn: Callable[[], None]) -> None:
        """Make ``fn`` in ``delay`` seconds this channel's one deadline."""
        timers = self.ctx.timers
        timers.cancel(self._timer)
        self._timer = timers.schedule(delay, fn)

    def _supervise_from_now(self) -> None:
        period = self._period()
        if period:
            self._arm(period * 1.5, self._supervise)
        else:
            self.ctx.timers.cancel(self._timer)

    def _supervise(self) -> None:
        if self.state not in LIVE:
            return
        limit = self._period() * 1.5
        if not limit:
            return
        idle = self.ctx.clock.seconds() - self.last_rx
        if idle >= limit:
            what = "sleep duration" if self.state in SLEEPY else "keepalive"
            self.lost(f"{what} expired after {idle:.1f}s")
        else:
            self._arm(limit - idle, self._supervise)

    def lost(self, why: str) -> None:
        """The client stopped answering (keepalive, sleep duration, Nretry): its will goes out."""
        self.ctx.counters.clients_lost += 1
        self.log.info(
            "MQTT-SN client {client_id} at {peer} lost: {why}",
            client_id=clip(self.client.client_id) if self.client else None, peer=self.peer, why=why,
        )
        self._detach(graceful=False)
        self._close()

    def _violation(self, why: str) -> None:
        self.log.warn(
            "closing MQTT-SN client {client_id} at {peer}: {reason}",
            client_id=clip(self.client.client_id) if self.client else None, peer=self.peer, reason=why,
        )
        self.send(DISCONNECT)
        self._detach(graceful=False)
        self._close()

    # Endpoint (called by the hub and the session) -----------------------------------------

    def send_publish(self, message: Message, qos: int, packet_id: int | None, dup: bool, retain: bool,
                     sub_ids: tuple[int, ...] = ()) -> bool:
        return self.delivery.send_publish(message, qos, packet_id, dup, retain)

    def send_pubrel(self, packet_id: int) -> None:
        self.delivery.send_pubrel(packet_id)

    def close(self, reason: Reason) -> None:
        """The hub ended this connection (taken over, no longer authorized, shutting
        down) and already detached the session; MQTT-SN's DISCONNECT carries no reason."""
        session, self.session = self.session, None
        if session is not None:
            self.delivery.forget_unconfirmed(session)
        if self.ctx.settings.verbose and self.client is not None:
            self.log.info("MQTT-SN client {client_id} disconnected by the gateway: {reason}",
                          client_id=self.client.client_id, reason=reason.value)
        self.send(DISCONNECT)
        self._close()

    def shutdown(self) -> None:
        """The gateway stops: tell the client, detach as a lost connection (will published).
        A sleeping client whose session is stored sleeps on: the next start takes it up."""
        session = self.session
        if self.sleeping and session is not None and session.journaled:
            self._close()
            return
        if self.state in LIVE:
            self.send(DISCONNECT)
        self._detach(graceful=False)
        self._close()

    def resume_asleep(self, session: Session) -> None:
        """Take up a session whose client was asleep when the process stopped (restored
        from the store): asleep again and supervised from now, until the client wakes up
        (PINGREQ with its client id, at any address) or is lost (its will goes out)."""
        duration = session.extra[SLEEP_KEY]
        will = session.will
        if will is not None:
            self._will = [will.topic, will.qos, will.retain, will.payload]
        self.client = session.client
        self.client.peer = self.peer            # for status pages, until it wakes up
        session, _ = self.ctx.hub.connect(session.client, self, False, session.expiry, will,
                                          session.will_delay, session.will_expiry)
        session.receive_maximum = 1
        if EXTRA_KEY in session.extra:
            registry_of(session, self.ctx.settings.max_topics)
        session.own_extra()[SLEEP_KEY] = duration
        session.changed()
        self.session = session
        self.sleep_duration = duration
        self._set_state(ASLEEP)
        self._supervise_from_now()
        session.resume(self)

    def move(self, network: Network, addr: Any) -> None:
        """A sleeping client woke up at another address (PINGREQ with its client id)."""
        self.network.release(self.addr, self)
        self.network = network
        self.addr = addr
        network.attach(addr, self)
        if self.client is not None:
            self.client.peer = network.describe(addr)
            self.client.transport = network.transport_name

    # helpers -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write one message to the client (counted in ``$SYS``)."""
        stats = self.ctx.hub.stats
        stats.messages_sent += 1
        stats.bytes_sent += len(data)
        self.network.send(self.addr, data)

    def _set_state(self, new: int) -> None:
        old = self.state
        if old == new:
            return
        c = self.ctx.counters
        if old in LIVE:
            c.connected -= 1
        if old in SLEEPY:
            c.asleep -= 1
        if new in LIVE:
            c.connected += 1
        if new in SLEEPY:
            c.asleep += 1
        self.state = new

    def _detach(self, graceful: bool) -> None:
        """Leave the hub (the will is published unless ``graceful``); forget what is in flight."""
        session = self.session
        if session is not None:
            self.session = None
            self.delivery.forget_unconfirmed(session)
            self.ctx.hub.disconnect(session, graceful, self)
        self.delivery.reset()
        self._set_state(CONNECTING)

    def _close(self) -> None:
        if self.state != CLOSED:
            self._set_state(CLOSED)
        self.ctx.timers.cancel(self._timer)
        self._timer = None
        self.acks.drop()
        self._connect = None
        self.delivery.reset()
        self.network.release(self.addr, self)


_HANDLERS: dict[type, Callable[[MQTTSNChannel, Any], None]] = {
    Publish: MQTTSNChannel._on_publish,
    PubAck: MQTTSNChannel._on_puback,
    PubRec: MQTTSNChannel._on_pubrec,
    PubRel: MQTTSNChannel._on_pubrel,
    PubComp: MQTTSNChannel._on_pubcomp,
    Register: MQTTSNChannel._on_register,
    RegAck: MQTTSNChannel._on_regack,
    Subscribe: subscriptions.on_subscribe,
    Unsubscribe: subscriptions.on_unsubscribe,
    PingReq: MQTTSNChannel._on_pingreq,
    PingResp: MQTTSNChannel._ignore,
    Disconnect: MQTTSNChannel._on_disconnect,
    WillTopicUpd: MQTTSNChannel._on_willtopicupd,
    WillMsgUpd: MQTTSNChannel._on_willmsgupd,
    SearchGw: MQTTSNChannel._on_searchgw,
    Encapsulated: MQTTSNChannel._on_encapsulated,
    # A late WILLTOPIC/WILLMSG retransmission after CONNACK, other gateways: harmless.
    WillTopic: MQTTSNChannel._ignore,
    WillMsg: MQTTSNChannel._ignore,
    GwInfo: MQTTSNChannel._ignore,
    Advertise: MQTTSNChannel._ignore,
}
