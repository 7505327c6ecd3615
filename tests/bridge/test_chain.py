"""Scale-out as the README draws it: two gateways bridged through a broker (Mosquitto
here, a cluster in production). An XBee sensor on gateway A reaches an MQTT
subscriber on gateway B: MQTT-SN over a serial line, A's hub, A's bridge, the
broker, B's bridge, B's hub, MQTT; so does a CoAP device on A."""

from __future__ import annotations

from tests.bridge.test_mosquitto import connected
from tests.coap.helpers import coap_client, coap_lines
from tests.conftest import free_udp_port
from tests.e2e.clients import unique
from tests.mqttsn import wire as w
from tests.mqttsn.radio import Coordinator

SENSOR = 0x0013A20040A1B2C3
SENSOR16 = 0x1234


def site(port: int, name: str, *topics: str) -> list[str]:
    return [f"connection {name}", f"address 127.0.0.1:{port}", f"remote_clientid gw-{name}",
            "restart_timeout 1", *topics]


def test_xbee_sensor_on_a_reaches_a_subscriber_on_b(gateway, mosquitto, paho, pty_pair):
    master, device = pty_pair
    broker = mosquitto()
    coap = free_udp_port()
    a = gateway(f"mqttsn_serial {device} 38400 xbee2",
                *site(broker.port, "site-a", 'topic sensors/# out 1 "" site-a/'), *coap_lines(coap))
    b = gateway(*site(broker.port, "site-b", "topic site-a/sensors/# in 1"))
    connected(a, "site-a")
    connected(b, "site-b")
    a.wait_for_log(f"MQTT-SN serial line {device} open")
    a.wait_for_log(f" on 127.0.0.1:{coap}\n")
    broker.wait_for_log("gw-site-b 1 site-a/sensors/#")
    reader = paho(b.port, unique("reader"))
    reader.connect()
    reader.subscribe("site-a/sensors/#", 1)

    radio = Coordinator(master, mode=2)

    def reply(payload: bytes):
        return radio.expect(lambda tx: tx.addr64 == SENSOR and tx.payload == payload)

    radio.send(SENSOR, SENSOR16, w.connect("sensor-7", 60))
    reply(w.connack())
    radio.send(SENSOR, SENSOR16, w.register(0, 1, "sensors/temperature"))
    reply(w.regack(1, 1))
    radio.send(SENSOR, SENSOR16, w.publish(1, b"21.5", 1, 2))
    reply(w.puback(1, 2))
    message = reader.next_message()
    assert (message.topic, message.payload, message.qos) == ("site-a/sensors/temperature", b"21.5", 1)

    done = coap_client("-m", "put", "-e", "40.5", f"coap://127.0.0.1:{coap}/ps/sensors/humidity")
    assert done.returncode == 0, done.stderr
    message = reader.next_message()
    assert (message.topic, message.payload, message.qos) == ("site-a/sensors/humidity", b"40.5", 1)


def test_a_gateway_bridged_to_another_gateway(gateway, paho):
    """The gateway as the remote, both ways without echo: MQTT 5 with No Local, MQTT
    3.1.1 with the bridge flag, which it honours as Mosquitto does."""
    b = gateway()
    a = gateway(*site(b.port, "v5", "bridge_protocol_version mqttv50", "topic five/# both 1"),
                *site(b.port, "v4", "topic four/# both 1"))
    connected(a, "v5")
    connected(a, "v4")
    on_a, on_b = paho(a.port, unique("on-a")), paho(b.port, unique("on-b"))
    for client in (on_a, on_b):
        client.connect()
        client.subscribe("five/#", 1)
        client.subscribe("four/#", 1)
    for prefix in ("five", "four"):
        def upto(client, topic):
            return [(m.topic[len(prefix) + 1:], m.payload) for m in client.wait_for(topic)
                    if m.topic.startswith(prefix)]

        # An echo would come back over the bridge before the next message.
        on_a.publish(f"{prefix}/1", b"from a", 1)
        assert upto(on_b, f"{prefix}/1") == [("1", b"from a")]
        on_b.publish(f"{prefix}/2", b"from b", 1)
        assert upto(on_a, f"{prefix}/2") == [("1", b"from a"), ("2", b"from b")]
        on_a.publish(f"{prefix}/3", b"again", 1)
        assert upto(on_b, f"{prefix}/3") == [("2", b"from b"), ("3", b"again")]
    assert "refused the bridge flag" not in a.stderr
