"""MQTT-SN over DTLS against the real gateway: a pyOpenSSL DTLS client (PSK and
certificates) on one side of the hub, paho-mqtt on the other."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import free_udp_port
from tests.dtls.client import DTLSClient
from tests.e2e.clients import unique
from tests.mqttsn import wire as w
from tests.security.pki import make_pki

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ACL = """topic readwrite #
topic read $SYS/#

user sensor-1
topic readwrite sensors/sensor-1/#

user device-42
topic readwrite sensors/device-42/#
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def dtls_gateway(gateway, tmp_path: Path, *lines: str):
    psk = tmp_path / "psk"
    psk.write_text(f"# identity:key\nsensor-1:{KEY.hex()}\nsensor-2:{KEY.hex()}\n")
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    port = free_udp_port()
    gw = gateway(f"psk_file {psk}", f"acl_file {acl}", "sys_interval 1",
                 f"listener {port} 127.0.0.1", "protocol mqttsn", *lines)
    gw.sn_port = port
    return gw


def psk_gateway(gateway, tmp_path: Path):
    return dtls_gateway(gateway, tmp_path, "psk_hint mqttgateway", "use_identity_as_username true")


def sn_connect(client: DTLSClient, client_id: str, flags: int = w.CLEAN) -> bytes:
    client.send(w.connect(client_id, 60, flags))
    return client.recv()


def publish(client: DTLSClient, topic: str, payload: bytes, msg_id: int) -> int:
    """REGISTER then PUBLISH QoS 1; the PUBACK's return code."""
    client.send(w.register(0, msg_id, topic))
    regack = client.recv()
    topic_id = int.from_bytes(regack[2:4], "big")
    client.send(w.publish(topic_id, payload, qos=1, msg_id=msg_id + 1))
    return client.recv()[-1]


def test_psk_identity_is_the_username_and_the_acl_applies(gateway, paho, tmp_path: Path) -> None:
    gw = psk_gateway(gateway, tmp_path)
    mqtt = paho(gw.port, unique("sub"))
    mqtt.connect()
    mqtt.subscribe("sensors/#", 1)
    client = DTLSClient(gw.sn_port, psk=("sensor-1", KEY)).handshake()
    assert sn_connect(client, "s1") == w.connack(w.ACCEPTED)
    assert publish(client, "sensors/sensor-1/temp", b"21.5", 1) == w.ACCEPTED
    got = mqtt.next_message()
    assert (got.topic, got.payload, got.qos) == ("sensors/sensor-1/temp", b"21.5", 1)
    # The ACL is sensor-1's: another device's topic is refused (MQTT-SN: not supported).
    assert publish(client, "sensors/device-42/temp", b"x", 10) == w.NOT_SUPPORTED
    # And deliveries come back encrypted to it.
    client.send(w.subscribe(20, "sensors/sensor-1/cmd", qos=1))
    suback = client.recv()
    assert suback[1] == 0x13 and suback[-1] == w.ACCEPTED
    mqtt.publish("sensors/sensor-1/cmd", b"on", 1)
    delivered = client.recv()
    assert delivered[1] == 0x0C and delivered[3:5] == suback[3:5] and delivered.endswith(b"on")
    client.close()


@pytest.mark.parametrize("identity, key", [("sensor-1", b"not the key"), ("stranger", KEY)])
def test_a_wrong_key_or_unknown_identity_gets_no_session(gateway, tmp_path: Path,
                                                         identity: str, key: bytes) -> None:
    gw = psk_gateway(gateway, tmp_path)
    client = DTLSClient(gw.sn_port, psk=(identity, key))
    with pytest.raises((ConnectionRefusedError, TimeoutError)):
        client.handshake(timeout=3)
    client.close()
    good = DTLSClient(gw.sn_port, psk=("sensor-2", KEY)).handshake()
    assert sn_connect(good, "s2") == w.connack(w.ACCEPTED)
    good.close()


def test_plain_mqtt_sn_gets_no_answer(gateway, sn, tmp_path: Path) -> None:
    gw = psk_gateway(gateway, tmp_path)
    plain = sn(gw.sn_port)
    plain.send(w.connect("plain"))
    with pytest.raises(AssertionError, match="no datagram"):
        plain.recv(timeout=1)


def test_client_certificates_name_the_client(gateway, tmp_path: Path, pki: dict[str, str]) -> None:
    gw = dtls_gateway(gateway, tmp_path, f"certfile {pki['server']}", f"keyfile {pki['server_key']}",
                      f"cafile {pki['ca']}", "require_certificate true",
                      "use_identity_as_username true")
    client = DTLSClient(gw.sn_port, ca=pki["ca"], cert=pki["client"], key=pki["client_key"]).handshake()
    assert sn_connect(client, "d42") == w.connack(w.ACCEPTED)
    assert publish(client, "sensors/device-42/t", b"1", 1) == w.ACCEPTED
    assert publish(client, "sensors/sensor-1/t", b"1", 10) == w.NOT_SUPPORTED
    client.close()
    foreign = DTLSClient(gw.sn_port, ca=pki["ca"], cert=pki["foreign"], key=pki["foreign_key"])
    with pytest.raises(ConnectionRefusedError):
        foreign.handshake()
    foreign.close()


def test_close_notify_ends_the_client_and_publishes_its_will(gateway, paho, tmp_path: Path) -> None:
    gw = psk_gateway(gateway, tmp_path)
    mqtt = paho(gw.port, unique("sub"))
    mqtt.connect()
    mqtt.subscribe("sensors/#", 1)
    client = DTLSClient(gw.sn_port, psk=("sensor-1", KEY)).handshake()
    client.send(w.connect("will-1", 60, w.CLEAN | w.WILL))
    assert client.recv() == w.willtopicreq()
    client.send(w.willtopic("sensors/sensor-1/status", qos=1))
    assert client.recv() == w.willmsgreq()
    client.send(w.willmsg(b"gone"))
    assert client.recv() == w.connack(w.ACCEPTED)
    client.close()  # close_notify, no DISCONNECT
    got = mqtt.next_message()
    assert (got.topic, got.payload) == ("sensors/sensor-1/status", b"gone")


def test_garbage_and_truncated_records_hurt_nobody(gateway, paho, tmp_path: Path) -> None:
    gw = psk_gateway(gateway, tmp_path)
    client = DTLSClient(gw.sn_port, psk=("sensor-1", KEY)).handshake()
    assert sn_connect(client, "s1") == w.connack(w.ACCEPTED)
    hello = DTLSClient(gw.sn_port, psk=("sensor-1", KEY))
    first = hello.end.start()[0]
    hello.close()
    record = client.end.send(w.pingreq())[0]
    junk = [b"", b"\x16", b"\x16\xfe\xfd" + bytes(10), first[:30], first[:-5], bytes(2000),
            b"\x17\xfe\xfd\x00\x01" + bytes(6) + b"\xff\xff" + bytes(20), record[:-3],
            record[:13] + bytes(len(record) - 13), b"\x15\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x02\x02\x0a"]
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for data in junk:
        raw.sendto(data, ("127.0.0.1", gw.sn_port))  # from an address without a session
        client.sock.send(data)                       # into the established session
    raw.close()
    client.send(w.pingreq())
    assert client.recv() == w.pingresp()  # the session survived all of it
    assert publish(client, "sensors/sensor-1/t", b"still", 1) == w.ACCEPTED
    client.close()
    mqtt = paho(gw.port, unique("sys"))
    mqtt.connect()
    mqtt.subscribe("$SYS/broker/dtls/#")
    seen: dict[str, int] = {}
    # The first values may be retained ones from before the junk: wait for fresh ones.
    while seen.get("$SYS/broker/dtls/datagrams/dropped", 0) < 5:
        m = mqtt.next_message()
        seen[m.topic] = int(m.payload)
    assert seen["$SYS/broker/dtls/handshakes/completed"] >= 1
    assert "Traceback" not in gw.stderr
