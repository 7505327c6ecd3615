"""Deliveries to one MQTT-SN client: topic registration, one QoS 1/2 message at a time,
retransmission, and what waits while the client sleeps.

MQTT-SN v1.2 lets a client have one QoS 1/2 PUBLISH (or PUBREL) and one REGISTER
unacknowledged at a time (§6.13). The channel tells the session so (a receive maximum
of 1): further QoS 1/2 messages wait in the session's queue, bounded and expired as
for any protocol. What the session has handed over but cannot go yet waits in
``out``, in order, except that QoS 0 entries pass QoS 1/2 ones waiting for their
acknowledgement: QoS 0 messages held for a sleeping client (bounded by
``mqttsn_max_sleep_buffer``), a message whose topic is being registered, the
messages a resumed session had in flight. A topic the client has no id for is
registered first (REGISTER, then the PUBLISH once REGACK comes back). Every
unacknowledged message is resent each Tretry seconds; after Nretry resends the client
is lost.

A ``Delivery`` belongs to one ``MQTTSNChannel``, which forwards the hub's deliveries
and the client's acknowledgements to it; it asks its owner (``Owner``) for the state
and session, to write, and to declare the client lost.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

from gateway.hub.api import Message
from gateway.mqttsn.codec import (
    DUP,
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
from gateway.mqttsn.registry import EXTRA_KEY, forget, outgoing_topic, register
from gateway.mqttsn.states import ACTIVE, ASLEEP, AWAKE, CLOSED

if TYPE_CHECKING:
    from gateway.hub.acks import DurableAcks
    from gateway.hub.sessions import Session
    from gateway.mqttsn.context import MQTTSNContext, Network, Timer

PUBLISH1, PUBLISH2, PUBREL, REGISTER = range(4)

#: A delivery waiting its turn: (message or None for a PUBREL, qos, packet id, retain, dup).
Entry = tuple[Message | None, int, int, bool, bool]


def _set_dup(data: bytes) -> bytes:
    i = 2 if data[0] != 1 else 4
    return data[:i] + bytes((data[i] | DUP,)) + data[i + 1 :]


class _Pending:
    """An unacknowledged PUBLISH, PUBREL or REGISTER: what to resend, how often so far."""

    __slots__ = ("kind", "msg_id", "data", "tries", "timer", "topic", "topic_id", "topic_type")

    def __init__(self, kind: int, msg_id: int, data: bytes, topic: str = "", topic_id: int = 0,
                 topic_type: int = 0) -> None:
        self.kind = kind
        self.msg_id = msg_id
        self.data = data
        self.tries = 0
        self.timer: Timer | None = None  # its Tretry deadline
        self.topic = topic
        self.topic_id = topic_id
        self.topic_type = topic_type


class Owner(Protocol):
    """What a ``Delivery`` uses of its channel."""

    ctx: MQTTSNContext
    network: Network
    state: int
    session: Session | None

    def send(self, data: bytes) -> None: ...

    @property
    def acks(self) -> DurableAcks:
        """Writes that wait for the store (with persistence on)."""

    def lost(self, why: str) -> None:
        """The client stopped answering: it is lost (its will is published)."""

    def all_delivered(self) -> None:
        """An awake client has everything that was held: it may sleep again."""


class Delivery:
    """What goes to one client, in order and one QoS 1/2 message at a time."""

    __slots__ = ("owner", "ctx", "out", "flight", "reg", "reg_msg_id")

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.ctx = owner.ctx
        self.out: deque[Entry] | None = None
        self.flight: _Pending | None = None  # the unacknowledged PUBLISH or PUBREL
        self.reg: _Pending | None = None  # the unacknowledged REGISTER
        self.reg_msg_id = 0

    # the channel's Endpoint calls -----------------------------------------------------

    def send_publish(self, message: Message, qos: int, packet_id: int | None, dup: bool,
                     retain: bool) -> bool:
        """Send now, or after a REGISTER, the outstanding acknowledgement or the client's
        sleep; False (counted) when it can never fit in one message of the network."""
        if publish_size(len(message.payload)) > self.owner.network.max_message:
            self.ctx.counters.messages_dropped += 1
            return False
        if self.owner.state == ACTIVE and not self.out and (qos == 0 or self.flight is None):
            if self._try_send(message, qos, packet_id or 0, retain, dup):
                return True
        self._enqueue((message, qos, packet_id or 0, retain, dup))
        return True

    def send_pubrel(self, packet_id: int) -> None:
        self._enqueue((None, 2, packet_id, False, True))

    # the connection's life -----------------------------------------------------------------

    def held_qos0(self) -> list[Entry]:
        """QoS 0 messages waiting for the client (QoS 1/2 ones stay with the session)."""
        return [e for e in self.out or () if e[1] == 0]

    def hold(self, entries: list[Entry]) -> None:
        """Take over messages held for the same client by an earlier connection."""
        if entries:
            if self.out is None:
                self.out = deque()
            self.out.extend(entries)

    def forget_unconfirmed(self, session: Session) -> None:
        """A REGISTER still unanswered: the client may not know that id, so the next
        connection with this session registers the topic again."""
        reg = self.reg
        if reg is not None:
            forget(session, reg.topic_id)

    def reset(self) -> None:
        """The connection ended: nothing waits or is outstanding any more."""
        for rec in (self.flight, self.reg):
            if rec is not None:
                self.ctx.timers.cancel(rec.timer)
        self.out = self.flight = self.reg = None

    # acknowledgements of our PUBLISH, PUBREL and REGISTER ------------------------------------

    def on_puback(self, p: PubAck) -> None:
        rec = self.flight
        if rec is None or rec.msg_id != p.msg_id or rec.kind not in (PUBLISH1, PUBLISH2):
            return
        if p.return_code == ReturnCode.CONGESTION:
            return  # the client is busy: the retry timer sends it again
        self.flight = None
        self.ctx.timers.cancel(rec.timer)
        if p.return_code != ReturnCode.ACCEPTED:
            self.ctx.counters.messages_dropped += 1
            if p.return_code == ReturnCode.INVALID_TOPIC_ID and rec.topic_type == TopicIdType.NORMAL:
                forget(self.owner.session, rec.topic_id)  # type: ignore[arg-type]  # registered again next time
        self.owner.session.acknowledge(p.msg_id)  # type: ignore[union-attr]
        self.pump()

    def on_pubrec(self, p: PubRec) -> None:
        rec = self.flight
        if rec is not None and rec.kind == PUBREL and rec.msg_id == p.msg_id:
            self.owner.send(rec.data)  # our PUBREL was lost
            return
        if rec is None or rec.kind != PUBLISH2 or rec.msg_id != p.msg_id:
            return
        self.owner.session.received_pubrec(p.msg_id)  # type: ignore[union-attr]
        self._start(_Pending(PUBREL, p.msg_id, encode(PubRel(p.msg_id))), flight=True)

    def on_pubcomp(self, p: PubComp) -> None:
        rec = self.flight
        if rec is None or rec.kind != PUBREL or rec.msg_id != p.msg_id:
            return
        self.flight = None
        self.ctx.timers.cancel(rec.timer)
        self.owner.session.acknowledge(p.msg_id)  # type: ignore[union-attr]
        self.pump()

    def on_regack(self, p: RegAck) -> None:
        rec = self.reg
        if rec is None or rec.msg_id != p.msg_id:
            return
        self.reg = None
        self.ctx.timers.cancel(rec.timer)
        if p.return_code == ReturnCode.ACCEPTED:
            self.ctx.counters.registrations += 1
        else:
            forget(self.owner.session, rec.topic_id)  # type: ignore[arg-type]
            self._drop_topic(rec.topic)
        self.pump()

    def _drop_topic(self, topic: str) -> None:
        """The client refused the topic: drop what waits for it (acknowledging QoS 1/2)."""
        out = self.out
        if not out:
            return
        dropped = [e for e in out if e[0] is not None and e[0].topic == topic]
        self.out = deque(e for e in out if e[0] is None or e[0].topic != topic)
        self.ctx.counters.messages_dropped += len(dropped)
        for _, qos, pid, _, _ in dropped:
            if qos:
                self.owner.session.acknowledge(pid)  # type: ignore[union-attr]

    # outbound machinery ------------------------------------------------------------------

    def _enqueue(self, entry: Entry) -> None:
        out = self.out
        if out is None:
            out = self.out = deque()
        if entry[1] == 0 and len(out) >= self.ctx.settings.max_sleep_buffer:
            self.ctx.counters.messages_dropped += 1
            self.ctx.traffic.dropped[0] += 1
            return
        out.append(entry)
        self.pump()

    def _try_send(self, message: Message, qos: int, pid: int, retain: bool, dup: bool) -> bool:
        """Send now if the client has an id for the topic; False: REGISTER first."""
        topic = message.topic
        reg = self.reg
        if reg is not None and reg.topic == topic:
            return False
        session = self.owner.session
        found = outgoing_topic(topic, self.ctx.predefined, session.extra.get(EXTRA_KEY))  # type: ignore[union-attr]
        if found is None:
            return False
        ttype, tid = found
        if publish_size(len(message.payload)) > self.owner.network.max_message:
            # Held while the client slept on a network that takes larger messages.
            self.ctx.counters.messages_dropped += 1
            if qos:
                session.acknowledge(pid)  # type: ignore[union-attr]
            return True
        data = encode_publish(tid, pid, message.payload, qos, retain, dup, ttype)
        self.ctx.traffic.sent[qos] += 1
        if qos == 2 and not session.clean:  # type: ignore[union-attr]
            # Exactly once across a crash: the client sees a QoS 2 message to its
            # persistent session only once the store knows its message id.
            self.owner.acks.send(data)
        else:
            self.owner.send(data)
        if qos:
            rec = _Pending(PUBLISH1 if qos == 1 else PUBLISH2, pid, data if dup else _set_dup(data), topic, tid, ttype)
            self._start(rec, flight=True, send=False)
        return True

    def pump(self) -> None:
        if self.owner.state != ACTIVE and self.owner.state != AWAKE:
            return
        # In order, except that QoS 0 entries pass QoS 1/2 ones waiting for the
        # outstanding acknowledgement. Each entry leaves the queue before anything that
        # may re-enter (dropping a QoS 1/2 entry acknowledges it in the session, which
        # pumps the session, which calls send_publish); that only happens when nothing
        # waits before it, so the index stays right.
        out = self.out
        i = 0
        blocked = False
        while out and i < len(out):
            entry = out[i]
            message, qos, pid, retain, dup = entry
            if qos and (blocked or self.flight is not None):
                blocked = True
                i += 1
                continue
            del out[i]
            if message is None:
                self._start(_Pending(PUBREL, pid, encode(PubRel(pid))), flight=True)
            elif not self._try_send(message, qos, pid, retain, dup):
                if self.reg is not None or self._register(message.topic):
                    out.insert(i, entry)
                    break
                self.ctx.counters.messages_dropped += 1  # no room for another topic id
                if qos:
                    self.owner.session.acknowledge(pid)  # type: ignore[union-attr]
            out = self.out
        if self.owner.state == AWAKE and not self.out and self.flight is None and self.reg is None:
            self.owner.all_delivered()

    def _register(self, topic: str) -> bool:
        topic_id = register(self.owner.session, self.ctx.settings.max_topics, topic)  # type: ignore[arg-type]
        if topic_id is None:
            return False
        self.reg_msg_id = self.reg_msg_id % 0xFFFF + 1
        mid = self.reg_msg_id
        self._start(_Pending(REGISTER, mid, encode(Register(topic_id, mid, topic)), topic, topic_id), flight=False)
        return True

    def _start(self, rec: _Pending, flight: bool, send: bool = True) -> None:
        """Make ``rec`` the outstanding PUBLISH/PUBREL (``flight``) or REGISTER; arm Tretry."""
        old = self.flight if flight else self.reg
        if old is not None and old is not rec:
            self.ctx.timers.cancel(old.timer)
        if flight:
            self.flight = rec
        else:
            self.reg = rec
        if send:
            if rec.kind == PUBREL and self.owner.session is not None and not self.owner.session.clean:
                # A PUBREL the store has not recorded could be followed, after a crash,
                # by the same PUBLISH again, which the client would take as new.
                self.owner.acks.send(rec.data)
            else:
                self.owner.send(rec.data)
        timers = self.ctx.timers
        timers.cancel(rec.timer)
        rec.timer = timers.schedule(self.ctx.settings.retry_interval, self._retry, rec)

    def _retry(self, rec: _Pending) -> None:
        if (rec is not self.flight and rec is not self.reg) or self.owner.state == CLOSED:
            return
        if self.owner.state == ASLEEP:
            return  # resent when it wakes up
        rec.tries += 1
        if rec.tries > self.ctx.settings.retry_count:
            self.owner.lost(f"no answer after {rec.tries - 1} retransmissions")
            return
        self.ctx.counters.retransmissions += 1
        self._start(rec, flight=rec is self.flight)

    def resend_outstanding(self) -> None:
        for rec in (self.reg, self.flight):
            if rec is not None:
                self._start(rec, flight=rec is self.flight)
