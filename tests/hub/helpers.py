"""A recording fake Endpoint and small helpers for driving the Hub as a channel does."""

from collections import namedtuple
from dataclasses import dataclass

from twisted.internet import task

from gateway.hub.api import ClientInfo, Message, Subscription
from gateway.hub.hub import Hub, HubSettings
from gateway.hub.sessions import Session

Delivery = namedtuple("Delivery", "topic payload qos pid dup retain")


class FakeEndpoint:
    """Records what the hub asks a channel to send."""

    def __init__(self, accepts=lambda message: True) -> None:
        self.deliveries: list[Delivery] = []
        self.messages: list[Message] = []
        self.sub_ids: list[tuple[int, ...]] = []
        self.pubrels: list[int] = []
        self.closed: list = []
        self.accepts = accepts

    def send_publish(self, message, qos, packet_id, dup, retain, sub_ids=()):
        if not self.accepts(message):
            return False
        self.messages.append(message)
        self.sub_ids.append(sub_ids)
        self.deliveries.append(Delivery(message.topic, message.payload, qos, packet_id, dup, retain))
        return True

    def send_pubrel(self, packet_id):
        self.pubrels.append(packet_id)

    def close(self, reason):
        self.closed.append(reason)

    @property
    def takeovers(self) -> int:
        return len(self.closed)

    def take(self) -> list[Delivery]:
        out, self.deliveries = self.deliveries, []
        return out

    def payloads(self) -> list[bytes]:
        return [d.payload for d in self.take()]


@dataclass
class Client:
    session: Session
    ep: FakeEndpoint
    present: bool


def make_hub(settings: HubSettings | None = None, clock=None) -> Hub:
    """A hub on a ``task.Clock`` (wall-clock time is the clock's)."""
    return Hub(settings, clock or task.Clock())


def join(hub, client_id, clean=True, will=None, subscribe=(), resume=True, ep=None,
         expiry=None, will_delay=0):
    """Connect as a channel does: connect, (send CONNACK,) resume, then subscribe.

    ``clean`` as in MQTT 3.1.1 (clean start, and the session ends with the
    connection) unless ``expiry`` is given.
    """
    ep = ep or FakeEndpoint()
    if expiry is None:
        expiry = 0 if clean else None
    elif expiry == "never":
        expiry = None
    session, present = hub.connect(ClientInfo(client_id), ep, clean, expiry, will, will_delay)
    if resume:
        session.resume(ep)
    for topic_filter, qos in subscribe:
        sub = qos if isinstance(qos, Subscription) else Subscription(qos)
        result = hub.subscribe(session, topic_filter, sub)
        assert result and result.qos == sub.qos
        hub.deliver_retained(session, result)
    return Client(session, ep, present)


def pub(hub, topic, payload=b"x", qos=0, retain=False, sender=None):
    return hub.publish(Message(topic, payload, qos, retain), sender)
