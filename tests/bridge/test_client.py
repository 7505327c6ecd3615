"""The bridge's sans-IO MQTT client: bytes from ``tests/wire.py`` in, calls and bytes out."""

from __future__ import annotations

import pytest

from gateway.bridge.client import ClientError, MQTTClient
from gateway.mqtt.packets import Connect, Publish, Subscribe, Will
from tests import wire


class Recorder:
    """A Handler that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *args: self.calls.append((name, *args))


def client(level: int = 4, keepalive: int = 60, **kwargs) -> tuple[MQTTClient, Recorder, list[bytes]]:
    out: list[bytes] = []
    handler = Recorder()
    c = MQTTClient(Connect("gw-a", level, False, keepalive, **kwargs), handler, out.append)
    c.start(0.0)
    return c, handler, out


def test_connect_with_the_bridge_bit_and_a_will():
    out: list[bytes] = []
    c = MQTTClient(Connect("gw-a", 4, False, 30, "u", b"p",
                           Will("$SYS/broker/connection/gw-a/state", b"0", 1, True), bridge=True),
                   Recorder(), out.append)
    c.start(0.0)
    assert out == [wire.connect("gw-a", clean=False, keepalive=30, username="u", password=b"p",
                                will_topic="$SYS/broker/connection/gw-a/state", will_payload=b"0",
                                will_qos=1, will_retain=True, proto_level=0x84)]
    assert c.level == 4


def test_mqtt_3_1_with_the_bridge_bit():
    out: list[bytes] = []
    MQTTClient(Connect("gw-a", 3, True, 60, bridge=True), Recorder(), out.append).start(0.0)
    assert out == [wire.connect("gw-a", proto_level=0x83, proto_name="MQIsdp")]


def test_connack_then_traffic_reaches_the_handler():
    c, h, out = client()
    c.feed(wire.connack(sp=True) + wire.publish("a/b", b"x", 1, mid=7) + wire.puback(3)
           + wire.pubrec(4) + wire.pubrel(5) + wire.pubcomp(6) + wire.suback(8, [1])
           + wire.unsuback(9) + wire.pingresp(), 1.0)
    names = [call[0] for call in h.calls]
    assert names == ["connected", "message", "acked", "received", "released", "completed",
                     "subscribed", "unsubscribed"]
    assert h.calls[0][1].session_present is True
    assert h.calls[1][1] == Publish("a/b", b"x", 1, False, False, 7, {})
    assert h.calls[2][1:] == (3, 0)
    assert h.calls[6][1:] == (8, [1])


def test_mqtt5_connack_limits():
    c, h, out = client(5)
    props = (wire.prop_byte(0x24, 1) + wire.prop_u16(0x21, 5) + wire.prop_byte(0x25, 0)
             + wire.prop_u32(0x27, 1000) + wire.prop_u16(0x13, 20))
    c.feed(wire.connack(proto_ver=5, properties=props), 1.0)
    limits = h.calls[0][1]
    assert (limits.max_qos, limits.receive_maximum, limits.retain_available,
            limits.max_packet_size, limits.keepalive) == (1, 5, False, 1000, 20)
    assert c.keepalive == 20


@pytest.mark.parametrize("level, code, text", [
    (4, 5, "not authorised"), (4, 1, "unacceptable protocol version"),
    (5, 0x87, "not authorized"), (5, 0x86, "bad user name or password"),
])
def test_refusal(level, code, text):
    c, h, out = client(level)
    c.feed(wire.connack(code, proto_ver=level), 1.0)
    assert h.calls == [("refused", code, text)]
    assert not c.active


@pytest.mark.parametrize("data, reason", [
    (wire.publish("a", b"x"), "Publish before CONNACK"),
    (wire.connack() + wire.connack(), "second CONNACK"),
    (wire.connack() + wire.subscribe(1, [("a", 0)]), "unexpected Subscribe"),
    (wire.connack() + wire.pingreq(), "unexpected PingReq"),
    (wire.connack() + b"\x32\x03\x00\x01a", "malformed packet"),
])
def test_protocol_errors(data, reason):
    c, h, out = client()
    with pytest.raises(ClientError) as e:
        c.feed(data, 1.0)
    assert str(e.value).startswith(reason)


def test_packets_before_a_malformed_one_are_handled():
    c, h, out = client()
    with pytest.raises(ClientError):
        c.feed(wire.connack() + wire.publish("a", b"1") + b"\x30\x03\x00\x05a", 1.0)
    assert [call[0] for call in h.calls] == ["connected", "message"]


def test_a_topic_alias_we_never_allowed_is_an_error():
    c, h, out = client(5)
    c.feed(wire.connack(proto_ver=5), 1.0)
    with pytest.raises(ClientError) as e:
        c.feed(wire.publish("a", b"x", proto_ver=5, properties=wire.prop_u16(0x23, 1)), 2.0)
    assert e.value.reason == 0x94


def test_server_disconnect_at_level_5():
    c, h, out = client(5)
    c.feed(wire.connack(proto_ver=5) + wire.disconnect(0x8B, proto_ver=5), 1.0)
    assert h.calls[-1] == ("server_disconnected", 0x8B)


def test_keepalive_pings_when_quiet_and_gives_up_without_an_answer():
    c, h, out = client(keepalive=10)
    c.feed(wire.connack(), 1.0)
    out.clear()
    assert c.tick(5.0) == 10.0                 # CONNECT went at 0: due at 10
    assert c.tick(10.0) == 20.0 and out == [wire.pingreq()]
    c.feed(wire.pingresp(), 12.0)
    assert c.tick(12.0) == 20.0                # quiet since the PINGREQ at 10
    c.send(Subscribe(1, [("a", 0)]), 15.0)
    assert c.tick(20.0) == 25.0 and out[-1] != wire.pingreq()
    assert c.tick(25.0) == 35.0 and out[-1] == wire.pingreq()
    with pytest.raises(ClientError) as e:
        c.tick(35.0)
    assert e.value.reason == 0x8D


def test_no_connack_within_the_keepalive():
    c, h, out = client(keepalive=10)
    assert c.tick(9.0) == 10.0
    with pytest.raises(ClientError):
        c.tick(10.0)


def test_keepalive_zero_never_ticks():
    c, h, out = client(keepalive=0)
    c.feed(wire.connack(), 1.0)
    assert c.tick(1e6) is None
