"""Scale-out as the README draws it: two gateways bridged through a broker (Mosquitto
here, a cluster in production). An XBee sensor on gateway A reaches an MQTT
subscriber on gateway B: MQTT-SN over a serial line, A's hub, A's bridge, the
broker, B's bridge, B's hub, MQTT."""

from __future__ import annotations

from tests.bridge.test_mosquitto import connected
from tests.e2e.clients import unique
from tests.mqttsn import wire as w
from tests.mqttsn.conftest import pty_pair  # noqa: F401  (fixture)
from tests.mqttsn.radio import Coordinator

SENSOR = 0x0013A20040A1B2C3
SENSOR16 = 0x1234


def site(port: int, name: str, *topics: str) -> list[str]:
    return [f"connection {name}", f"address 127.0.0.1:{port}", f"remote_clientid gw-{name}",
            "restart_timeout 1", *topics]


def test_xbee_sensor_on_a_reaches_a_subscriber_on_b(gateway, mosquitto, paho, pty_pair):  # noqa: F811
    master, device = pty_pair
    broker = mosquitto()
    a = gateway(f"mqttsn_serial {device} 38400 xbee2",
                *site(broker.port, "site-a", 'topic sensors/# out 1 "" site-a/'))
    b = gateway(*site(broker.port, "site-b", "topic site-a/sensors/# in 1"))
    connected(a, "site-a")
    connected(b, "site-b")
    a.wait_for_log(f"MQTT-SN serial line {device} open")
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
