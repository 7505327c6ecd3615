"""With persistence on, what the broker tells a persistent session about its
subscriptions waits for the commit: a crash cannot take back a SUBACK or UNSUBACK
the client has seen. The retained messages a subscription brings come after its
SUBACK. A clean session (nothing stored) is answered at once."""

from __future__ import annotations

from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.transport import MQTTFactory
from tests import wire
from tests.hub.memory_journal import MemoryJournal
from tests.mqtt.helpers import Broker


def held_broker() -> tuple[Broker, MemoryJournal]:
    journal = MemoryJournal()
    broker = Broker()
    broker.hub = Hub(clock=broker.clock, journal=journal)
    broker.factory = MQTTFactory(broker.hub, MQTTSettings(), clock=broker.clock)
    return broker, journal


def test_a_persistent_suback_and_its_retained_messages_wait_for_the_commit() -> None:
    broker, journal = held_broker()
    publisher = broker.connect("pub")
    publisher.send(wire.publish("t", b"kept", qos=0, retain=True))
    journal.holding = True
    sub = broker.connect("sub", clean=False)
    sub.send(wire.subscribe(1, [("t", 1)]))
    assert sub.take() == b""
    journal.commit()
    assert sub.take() == wire.suback(1, [1]) + wire.publish("t", b"kept", retain=True)
    sub.send(wire.unsubscribe(2, ["t"]))
    assert sub.take() == b""
    journal.commit()
    assert sub.take() == wire.unsuback(2)


def test_a_clean_session_is_answered_at_once() -> None:
    broker, journal = held_broker()
    journal.holding = True
    sub = broker.connect("sub")
    sub.send(wire.subscribe(1, [("t", 1)]))
    assert sub.take() == wire.suback(1, [1])
    sub.send(wire.unsubscribe(2, ["t"]))
    assert sub.take() == wire.unsuback(2)


def test_a_connection_closed_meanwhile_gets_nothing() -> None:
    broker, journal = held_broker()
    journal.holding = True
    sub = broker.connect("sub", clean=False)
    sub.send(wire.subscribe(1, [("t", 1)]))
    sub.protocol.transport.loseConnection()
    sub.lost()
    sub.take()
    journal.commit()
    assert sub.take() == b""
