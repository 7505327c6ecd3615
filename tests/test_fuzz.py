"""A connection fed garbage is closed, never the process, and leaves nothing behind.

The codecs and parsers on their own are fuzzed in ``test_fuzz_codecs.py`` and
``test_fuzz_parsers.py``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from tests import wire
from tests.strategies import mutated

VALID_MQTT = [
    wire.connect("fuzz", will_topic="w", will_payload=b"x", username="u", password=b"p"),
    wire.publish("a/b", b"payload", qos=1, mid=7),
    wire.subscribe(3, [("a/#", 1), ("+/b", 2)]),
    wire.unsubscribe(4, ["a/#"]),
    wire.pubrel(9),
    wire.pingreq(),
    wire.disconnect(),
]

ANY_BYTES = st.one_of(st.binary(max_size=300), mutated(st.sampled_from(VALID_MQTT)))


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(ANY_BYTES, min_size=1, max_size=4))
def test_mqtt_connection_fed_garbage_only_closes(chunks: list[bytes]) -> None:
    from gateway.mqtt.transport import MQTTFactory

    hub = Hub()
    factory = MQTTFactory(hub, MQTTSettings(), Clock())
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
    proto.makeConnection(transport)
    proto.dataReceived(wire.connect("fuzz", will_topic="will", will_payload=b"w"))
    for chunk in chunks:
        proto.dataReceived(chunk)
    proto.connectionLost(None)
    # Whatever happened, nothing of the connection stays behind in the hub.
    assert hub.stats.clients_connected == 0
    assert not factory.protocols
