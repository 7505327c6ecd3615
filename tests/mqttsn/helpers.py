"""In-process MQTT-SN test rig: a real Hub and context, a recording network, a fake clock."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from gateway.hub.api import ClientInfo, Message, Reason, Subscription
from gateway.hub.hub import Hub, HubSettings
from gateway.hub.persistence import Snapshot, restore
from gateway.hub.sessions import Limits
from gateway.mqttsn.channel import MQTTSNChannel
from gateway.mqttsn.context import MQTTSNContext, Network
from gateway.mqttsn.settings import MQTTSNSettings
from tests.mqttsn import wire as w


class RecordingNetwork(Network):
    """Keeps what the gateway sends, per address; ``broadcasts`` for ADVERTISE."""

    def __init__(self, ctx: MQTTSNContext, listener: Any = None) -> None:
        super().__init__(ctx, listener)
        self.sent: list[tuple[Any, bytes]] = []
        self.broadcasts: list[bytes] = []

    def write(self, addr: Any, data: bytes) -> None:
        self.sent.append((addr, data))

    def broadcast(self, data: bytes) -> None:
        self.broadcasts.append(data)

    def describe(self, addr: Any) -> str:
        return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


class Observer:
    """A hub endpoint standing in for an MQTT subscriber; acknowledges QoS 1/2 at once."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, int, bool]] = []
        self.session: Any = None

    def send_publish(self, message: Message, qos: int, packet_id: int | None, dup: bool, retain: bool,
                     sub_ids: tuple[int, ...] = ()) -> bool:
        self.got.append((message.topic, message.payload, qos, retain))
        if packet_id is not None:
            self.session.acknowledge(packet_id)
        return True

    def send_pubrel(self, packet_id: int) -> None:
        self.session.acknowledge(packet_id)

    def close(self, reason: Reason) -> None:
        pass

    def payloads(self) -> list[bytes]:
        return [g[1] for g in self.got]


class Rig:
    """A gateway core without sockets: ``client(addr)`` gives a raw-bytes client."""

    def __init__(self, limits: Limits | None = None, retain_available: bool = True,
                 journal: Any = None, clock: task.Clock | None = None,
                 snapshot: Snapshot | None = None, **settings: Any) -> None:
        """``snapshot``: what a store gave back, restored before the MQTT-SN context
        starts (as the service does before opening the listeners)."""
        self.clock = clock or task.Clock()
        self.hub = Hub(HubSettings(limits=limits or Limits(), retain_available=retain_available),
                       self.clock, journal)
        if snapshot is not None:
            restore(self.hub, snapshot, {})
        settings.setdefault("advertise_interval", 0)
        self.ctx = MQTTSNContext(self.hub, MQTTSNSettings(**settings), self.clock, MQTTSNChannel)
        self.net = RecordingNetwork(self.ctx)
        self.ctx.add_network(self.net)

    def client(self, port: int = 40000, host: str = "10.0.0.1") -> Client:
        return Client(self, (host, port))

    def observe(self, topic_filter: str = "#", qos: int = 2) -> Observer:
        obs = Observer()
        session, _ = self.hub.connect(ClientInfo(f"observer-{id(obs)}"), obs, True)
        obs.session = session
        self.hub.subscribe(session, topic_filter, Subscription(qos))
        return obs

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.hub.publish(Message(topic, payload, qos, retain))

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class Client:
    """Sends raw datagrams from one address and collects the answers to it."""

    def __init__(self, rig: Rig, addr: Any) -> None:
        self.rig = rig
        self.addr = addr

    def send(self, *datagrams: bytes) -> None:
        for d in datagrams:
            self.rig.net.received(self.addr, d)

    def take(self) -> list[bytes]:
        """Everything sent to this address since the last call."""
        net = self.rig.net
        mine = [d for a, d in net.sent if a == self.addr]
        net.sent = [(a, d) for a, d in net.sent if a != self.addr]
        return mine

    def ask(self, datagram: bytes) -> list[bytes]:
        self.take()
        self.send(datagram)
        return self.take()

    @property
    def channel(self) -> Any:
        return self.rig.net.channels.get(self.addr)


def connected(rig: Rig, cid: str = "s1", port: int = 40000, duration: int = 60, flags: int = w.CLEAN,
              will: tuple[str, bytes] | None = None) -> Client:
    """A client at ``port`` connected as ``cid``; with ``will=(topic, message)`` it went
    through the will handshake (WILLTOPICREQ, WILLMSGREQ, then the CONNACK)."""
    c = rig.client(port)
    if will is None:
        assert c.ask(w.connect(cid, duration, flags)) == [w.connack()]
        return c
    assert c.ask(w.connect(cid, duration, flags | w.WILL)) == [w.willtopicreq()]
    assert c.ask(w.willtopic(will[0])) == [w.willmsgreq()]
    assert c.ask(w.willmsg(will[1])) == [w.connack()]
    return c
