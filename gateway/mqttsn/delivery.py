"""Deliveries to one MQTT-SN client: topic registration, one QoS 1/2 message at a time,
retransmission, and what waits while the client sleeps.

MQTT-SN v1.2 lets a client have one QoS 1/2 PUBLISH (or PUBREL) and one REGISTER
unacknowledged at a time (§6.13). What cannot go yet waits in ``_out``, in order,
except that QoS 0 entries pass QoS 1/2 ones waiting for their acknowledgement. QoS 1/2
entries there already count in the session's inflight window, which bounds them; QoS 0
entries are bounded by ``mqttsn_max_sleep_buffer``. A topic the client has no id for
is registered first (REGISTER, then the PUBLISH once REGACK comes back). Every
unacknowledged message is resent each Tretry seconds; after Nretry resends the client
is lost.

``Delivery`` is the outbound half of ``MQTTSNChannel``, kept apart so each file reads
as one concern; it uses the channel's state, session, ``_send`` and ``_lost``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from gateway.hub.api import Message
from gateway.mqttsn.codec import (
    DUP,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    RegAck,
    Register,
    ReturnCode,
    TopicIdType,
    encode,
    encode_publish,
    publish_size,
)
from gateway.mqttsn.registry import EXTRA_KEY, outgoing_topic, registry_of

if TYPE_CHECKING:
    from gateway.hub.sessions import Session
    from gateway.mqttsn.context import MQTTSNContext, Network

CONNECTING = 0
AUTHENTICATING = 1
ACTIVE = 2
ASLEEP = 3
AWAKE = 4
CLOSED = 5
LIVE = (ACTIVE, ASLEEP, AWAKE)
SLEEPY = (ASLEEP, AWAKE)

PUBLISH1, PUBLISH2, PUBREL, REGISTER = range(4)

PINGRESP = encode(PingResp())


def _set_dup(data: bytes) -> bytes:
    i = 2 if data[0] != 1 else 4
    return data[:i] + bytes((data[i] | DUP,)) + data[i + 1 :]


class _Pending:
    """An unacknowledged PUBLISH, PUBREL or REGISTER: what to resend, how often so far."""

    __slots__ = ("kind", "msg_id", "data", "tries", "gen", "topic", "topic_id", "topic_type")

    def __init__(self, kind: int, msg_id: int, data: bytes, topic: str = "", topic_id: int = 0,
                 topic_type: int = 0) -> None:
        self.kind = kind
        self.msg_id = msg_id
        self.data = data
        self.tries = 0
        self.gen = 0
        self.topic = topic
        self.topic_id = topic_id
        self.topic_type = topic_type


class Delivery:
    """The outbound half of ``MQTTSNChannel`` (which holds the slots)."""

    __slots__ = ()

    ctx: MQTTSNContext
    network: Network
    addr: Any
    state: int
    session: Session | None
    _out: deque[tuple[Message | None, int, int, bool, bool]] | None
    _flight: _Pending | None
    _reg: _Pending | None
    _reg_msg_id: int

    if TYPE_CHECKING:

        def _send(self, data: bytes) -> None: ...

        def _set_state(self, new: int) -> None: ...

        def _lost(self, why: str) -> None: ...

    # Endpoint (called by the hub and the session) -----------------------------------------

    def send_publish(self, message: Message, qos: int, packet_id: int | None, dup: bool, retain: bool,
                     sub_ids: tuple[int, ...] = ()) -> bool:
        """Send now, or after a REGISTER, the outstanding acknowledgement or the client's
        sleep; False (counted) when it can never fit in one message of the network."""
        if publish_size(len(message.payload)) > self.network.max_message:
            self.ctx.counters.messages_dropped += 1
            return False
        if self.state == ACTIVE and not self._out and (qos == 0 or self._flight is None):
            if self._try_send(message, qos, packet_id or 0, retain, dup):
                return True
        self._enqueue((message, qos, packet_id or 0, retain, dup))
        return True

    def send_pubrel(self, packet_id: int) -> None:
        self._enqueue((None, 2, packet_id, False, True))

    # acknowledgements of our PUBLISH, PUBREL and REGISTER ------------------------------------

    def _on_puback(self, p: PubAck) -> None:
        rec = self._flight
        if rec is None or rec.msg_id != p.msg_id or rec.kind not in (PUBLISH1, PUBLISH2):
            return
        if p.return_code == ReturnCode.CONGESTION:
            return  # the client is busy: the retry timer sends it again
        self._flight = None
        if p.return_code != ReturnCode.ACCEPTED:
            self.ctx.counters.messages_dropped += 1
            if p.return_code == ReturnCode.INVALID_TOPIC_ID and rec.topic_type == TopicIdType.NORMAL:
                registry = self.session.extra.get(EXTRA_KEY)  # type: ignore[union-attr]
                if registry is not None:
                    registry.forget(rec.topic_id)  # registered again before the next one
        self.session.acknowledge(p.msg_id)  # type: ignore[union-attr]
        self._pump()

    def _on_pubrec(self, p: PubRec) -> None:
        rec = self._flight
        if rec is not None and rec.kind == PUBREL and rec.msg_id == p.msg_id:
            self._send(rec.data)  # our PUBREL was lost
            return
        if rec is None or rec.kind != PUBLISH2 or rec.msg_id != p.msg_id:
            return
        self.session.received_pubrec(p.msg_id)  # type: ignore[union-attr]
        self._start(_Pending(PUBREL, p.msg_id, encode(PubRel(p.msg_id))), flight=True)

    def _on_pubcomp(self, p: PubComp) -> None:
        rec = self._flight
        if rec is None or rec.kind != PUBREL or rec.msg_id != p.msg_id:
            return
        self._flight = None
        self.session.acknowledge(p.msg_id)  # type: ignore[union-attr]
        self._pump()

    def _on_regack(self, p: RegAck) -> None:
        rec = self._reg
        if rec is None or rec.msg_id != p.msg_id:
            return
        self._reg = None
        if p.return_code == ReturnCode.ACCEPTED:
            self.ctx.counters.registrations += 1
        else:
            registry = self.session.extra.get(EXTRA_KEY)  # type: ignore[union-attr]
            if registry is not None:
                registry.forget(rec.topic_id)
            self._drop_topic(rec.topic)
        self._pump()

    def _drop_topic(self, topic: str) -> None:
        """The client refused the topic: drop what waits for it (acknowledging QoS 1/2)."""
        out = self._out
        if not out:
            return
        dropped = [e for e in out if e[0] is not None and e[0].topic == topic]
        self._out = deque(e for e in out if e[0] is None or e[0].topic != topic)
        self.ctx.counters.messages_dropped += len(dropped)
        for _, qos, pid, _, _ in dropped:
            if qos:
                self.session.acknowledge(pid)  # type: ignore[union-attr]

    # outbound machinery ------------------------------------------------------------------

    def _enqueue(self, entry: tuple[Message | None, int, int, bool, bool]) -> None:
        out = self._out
        if out is None:
            out = self._out = deque()
        if entry[1] == 0 and len(out) >= self.ctx.settings.max_sleep_buffer:
            self.ctx.counters.messages_dropped += 1
            self.ctx.hub.stats.dropped += 1
            return
        out.append(entry)
        self._pump()

    def _try_send(self, message: Message, qos: int, pid: int, retain: bool, dup: bool) -> bool:
        """Send now if the client has an id for the topic; False: REGISTER first."""
        topic = message.topic
        reg = self._reg
        if reg is not None and reg.topic == topic:
            return False
        session = self.session
        found = outgoing_topic(topic, self.ctx.predefined, session.extra.get(EXTRA_KEY))  # type: ignore[union-attr]
        if found is None:
            return False
        ttype, tid = found
        if publish_size(len(message.payload)) > self.network.max_message:
            # Held while the client slept on a network that takes larger messages.
            self.ctx.counters.messages_dropped += 1
            if qos:
                session.acknowledge(pid)  # type: ignore[union-attr]
            return True
        data = encode_publish(tid, pid, message.payload, qos, retain, dup, ttype)
        stats = self.ctx.hub.stats
        stats.publish_sent += 1
        self._send(data)
        if qos:
            rec = _Pending(PUBLISH1 if qos == 1 else PUBLISH2, pid, data if dup else _set_dup(data), topic, tid, ttype)
            self._start(rec, flight=True, send=False)
        return True

    def _pump(self) -> None:
        if self.state != ACTIVE and self.state != AWAKE:
            return
        # In order, except that QoS 0 entries pass QoS 1/2 ones waiting for the
        # outstanding acknowledgement. Each entry leaves the queue before anything that
        # may re-enter (dropping a QoS 1/2 entry acknowledges it in the session, which
        # pumps the session, which calls send_publish); that only happens when nothing
        # waits before it, so the index stays right.
        out = self._out
        i = 0
        blocked = False
        while out and i < len(out):
            entry = out[i]
            message, qos, pid, retain, dup = entry
            if qos and (blocked or self._flight is not None):
                blocked = True
                i += 1
                continue
            del out[i]
            if message is None:
                self._start(_Pending(PUBREL, pid, encode(PubRel(pid))), flight=True)
            elif not self._try_send(message, qos, pid, retain, dup):
                if self._reg is not None or self._register(message.topic):
                    out.insert(i, entry)
                    break
                self.ctx.counters.messages_dropped += 1  # no room for another topic id
                if qos:
                    self.session.acknowledge(pid)  # type: ignore[union-attr]
            out = self._out
        if self.state == AWAKE and not self._out and self._flight is None and self._reg is None:
            self._send(PINGRESP)
            self._set_state(ASLEEP)

    def _register(self, topic: str) -> bool:
        registry = registry_of(self.session, self.ctx.settings.max_topics)  # type: ignore[arg-type]
        topic_id = registry.register(topic)
        if topic_id is None:
            return False
        self._reg_msg_id = self._reg_msg_id % 0xFFFF + 1
        mid = self._reg_msg_id
        self._start(_Pending(REGISTER, mid, encode(Register(topic_id, mid, topic)), topic, topic_id), flight=False)
        return True

    def _start(self, rec: _Pending, flight: bool, send: bool = True) -> None:
        """Make ``rec`` the outstanding PUBLISH/PUBREL (``flight``) or REGISTER; arm Tretry."""
        if flight:
            self._flight = rec
        else:
            self._reg = rec
        if send:
            self._send(rec.data)
        rec.gen += 1
        self.ctx.timers.schedule(self.ctx.settings.retry_interval, self._retry, rec, rec.gen)

    def _retry(self, rec: _Pending, gen: int) -> None:
        if gen != rec.gen or (rec is not self._flight and rec is not self._reg) or self.state == CLOSED:
            return
        if self.state == ASLEEP:
            return  # resent when it wakes up
        rec.tries += 1
        if rec.tries > self.ctx.settings.retry_count:
            self._lost(f"no answer after {rec.tries - 1} retransmissions")
            return
        self.ctx.counters.retransmissions += 1
        self._start(rec, flight=rec is self._flight)

    def _resend_outstanding(self) -> None:
        for rec in (self._reg, self._flight):
            if rec is not None:
                self._start(rec, flight=rec is self._flight)
