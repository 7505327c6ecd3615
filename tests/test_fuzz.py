"""Fuzzing the byte-facing layers: arbitrary input is either decoded or refused with
the protocol's own error, and a connection fed garbage is closed, never the process."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.hub.hub import Hub
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.codec import Decoder, MQTTError
from gateway.mqttsn.codec import MQTTSNError
from gateway.mqttsn.codec import decode as decode_sn
from gateway.mqttsn.xbee import FrameDecoder
from tests import wire

VALID_MQTT = [
    wire.connect("fuzz", will_topic="w", will_payload=b"x", username="u", password=b"p"),
    wire.publish("a/b", b"payload", qos=1, mid=7),
    wire.subscribe(3, [("a/#", 1), ("+/b", 2)]),
    wire.unsubscribe(4, ["a/#"]),
    wire.pubrel(9),
    wire.pingreq(),
    wire.disconnect(),
]


def mutated(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Valid packets with a few bytes overwritten, cut short or extended: closer to
    real line noise than uniform random bytes, which rarely get past the header."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(valid)))
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        cut = draw(st.integers(1, len(data)))
        return bytes(data[:cut]) + draw(st.binary(max_size=8))

    return build()


ANY_BYTES = st.one_of(st.binary(max_size=300), mutated(VALID_MQTT))


@settings(max_examples=400, deadline=None)
@given(level=st.sampled_from([None, 3, 4, 5]), chunks=st.lists(ANY_BYTES, min_size=1, max_size=4))
def test_mqtt_decoder_raises_only_mqtt_error(level: int | None, chunks: list[bytes]) -> None:
    decoder = Decoder(1 << 16)
    decoder.protocol_level = level
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    except MQTTError as e:
        assert e.reason >= 0x80


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


VALID_SN = [
    bytes([7, 0x04, 0x04, 0x01, 0x00, 0x3C]) + b"c",  # CONNECT
    bytes([9, 0x0A, 0x00, 0x00, 0x00, 0x01]) + b"a/b",  # REGISTER
    bytes([9, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02]) + b"hi",  # PUBLISH QoS 1
    bytes([7, 0x12, 0x00, 0x00, 0x03]) + b"a/",  # SUBSCRIBE by name
    bytes([4, 0x18, 0x00, 0x1E]),  # DISCONNECT with duration
    bytes([1, 0x00, 0x08, 0x16]) + b"sleepy",  # PINGREQ, 3-byte length form
]


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), mutated(VALID_SN)))
def test_mqttsn_decode_raises_only_mqttsn_error(data: bytes) -> None:
    try:
        decode_sn(data)
    except MQTTSNError:
        pass


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from([1, 2]), chunks=st.lists(st.binary(max_size=200), max_size=6))
def test_xbee_frames_never_raise(mode: int, chunks: list[bytes]) -> None:
    decoder = FrameDecoder(mode)
    for chunk in chunks:
        decoder.feed(b"\x7e" + chunk)
