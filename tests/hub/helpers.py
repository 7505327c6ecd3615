"""A recording fake Endpoint and small helpers for driving the Hub as a channel does."""

from collections import namedtuple
from dataclasses import dataclass

from gateway.hub.api import ClientInfo, Message
from gateway.hub.sessions import Session

Delivery = namedtuple("Delivery", "topic payload qos pid dup retain")


class FakeEndpoint:
    """Records what the hub asks a channel to send."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.messages: list[Message] = []
        self.pubrels: list[int] = []
        self.takeovers = 0

    def send_publish(self, message, qos, packet_id, dup, retain):
        self.messages.append(message)
        self.deliveries.append(Delivery(message.topic, message.payload, qos, packet_id, dup, retain))

    def send_pubrel(self, packet_id):
        self.pubrels.append(packet_id)

    def takeover(self):
        self.takeovers += 1

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


def join(hub, client_id, clean=True, will=None, subscribe=(), resume=True, ep=None):
    """Connect as a channel does: connect, (send CONNACK,) resume, then subscribe."""
    ep = ep or FakeEndpoint()
    session, present = hub.connect(ClientInfo(client_id), ep, clean, will)
    if resume:
        session.resume(ep)
    for topic_filter, qos in subscribe:
        assert hub.subscribe(session, topic_filter, qos) == qos
    return Client(session, ep, present)


def pub(hub, topic, payload=b"x", qos=0, retain=False, sender=None):
    return hub.publish(Message(topic, payload, qos, retain), sender)
