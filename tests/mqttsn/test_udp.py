"""MQTT-SN over UDP against the real gateway: mqtt-sn-12's CLIs and a raw client on one
side of the hub, paho-mqtt on the other."""

from __future__ import annotations

import select
import socket

import pytest

from tests.conftest import free_udp_port
from tests.e2e.clients import unique
from tests.mqttsn import wire as w
from tests.mqttsn.conftest import cli, setns

PREDEFINED = ["mqttsn_predefined_topic 10 sensors/predef", "mqttsn_predefined_topic 11 actuators/valve"]


def sn_gateway(gateway, *lines: str, host: str = "127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    port = free_udp_port(family, host)
    gw = gateway(f"listener {port} {host}", "protocol mqttsn", *PREDEFINED, *lines)
    gw.sn_port = port
    return gw


def test_mqtt_sn_pub_at_every_qos_reaches_an_mqtt_subscriber(gateway, paho) -> None:
    gw = sn_gateway(gateway)
    mqtt = paho(gw.port, unique("sub"))
    mqtt.connect()
    mqtt.subscribe("#", 2)
    port = str(gw.sn_port)
    cli("mqtt_sn_pub", "-p", port, "-t", "sensors/temp", "-m", "q0")
    cli("mqtt_sn_pub", "-p", port, "-t", "sensors/temp", "-m", "q1", "-q", "1")
    cli("mqtt_sn_pub", "-p", port, "-t", "sensors/temp", "-m", "q2", "-q", "2")
    cli("mqtt_sn_pub", "-p", port, "-T", "10", "-m", "minus-one", "-q", "-1")
    cli("mqtt_sn_pub", "-p", port, "-t", "ab", "-m", "short")
    cli("mqtt_sn_pub", "-p", port, "-t", "sensors/kept", "-m", "r", "-r", "-q", "1")
    got = [(m.topic, m.payload, m.qos) for m in mqtt.wait_for("sensors/kept")]
    assert got == [
        ("sensors/temp", b"q0", 0), ("sensors/temp", b"q1", 1), ("sensors/temp", b"q2", 2),
        ("sensors/predef", b"minus-one", 0), ("ab", b"short", 0), ("sensors/kept", b"r", 1),
    ]


def test_mqtt_sn_sub_gets_wildcard_and_predefined_messages(gateway, paho) -> None:
    gw = sn_gateway(gateway)
    mqtt = paho(gw.port, unique("pub"))
    mqtt.connect()
    mqtt.publish("sensors/deep/level", b"retained", 1, retain=True)
    mqtt.publish("actuators/valve", b"closed", 1, retain=True)
    port = str(gw.sn_port)
    # wildcard: the gateway REGISTERs sensors/deep/level before its PUBLISH
    out = cli("mqtt_sn_sub", "-p", port, "-t", "sensors/#", "-1").stdout
    assert out.strip() == "retained"
    out = cli("mqtt_sn_sub", "-p", port, "-T", "11", "-q", "1", "-1").stdout
    assert out.strip() == "closed"


def test_will_handshake_with_the_cli(gateway, paho) -> None:
    gw = sn_gateway(gateway)
    mqtt = paho(gw.port, unique("sub"))
    mqtt.connect()
    mqtt.subscribe("dead/#")
    mqtt.subscribe("sensors/#")
    cli("mqtt_sn_pub", "-p", str(gw.sn_port), "-t", "sensors/w", "-m", "x",
        "--will-topic", "dead/cli", "--will-payload", "gone")
    assert [m.topic for m in mqtt.wait_for("sensors/w")] == ["sensors/w"]  # clean DISCONNECT: no will


def test_raw_client_will_on_keepalive_expiry(gateway, paho, sn) -> None:
    gw = sn_gateway(gateway)
    mqtt = paho(gw.port, unique("sub"))
    mqtt.connect()
    mqtt.subscribe("dead/#", 1)
    c = sn(gw.sn_port)
    assert c.ask(w.connect("raw-will", 1, w.CLEAN | w.WILL)) == w.willtopicreq()
    assert c.ask(w.willtopic("dead/raw", 1)) == w.willmsgreq()
    assert c.ask(w.willmsg(b"lost")) == w.connack()
    msg = mqtt.next_message()  # after 1.5 s without a word
    assert (msg.topic, msg.payload, msg.qos) == ("dead/raw", b"lost", 1)
    assert c.ask(w.pingreq()) == w.disconnect()  # lost: told to connect again


def test_sleeping_client_wakes_up_for_its_messages(gateway, paho, sn) -> None:
    gw = sn_gateway(gateway)
    c = sn(gw.sn_port)
    assert c.ask(w.connect("sleepy", 60, 0)) == w.connack()
    assert c.ask(w.subscribe(1, "cmd/sleepy", 1)) == w.suback(1, 1, w.ACCEPTED, 1)
    assert c.ask(w.disconnect(600)) == w.disconnect()
    mqtt = paho(gw.port, unique("pub"))
    mqtt.connect()
    mqtt.publish("cmd/sleepy", b"a", 0)
    mqtt.publish("cmd/sleepy", b"b", 1)
    c.send(w.pingreq("sleepy"))
    got = [c.recv(), c.recv()]
    assert sorted(got) == sorted([w.publish(1, b"a"), w.publish(1, b"b", 1, 1)])
    assert c.ask(w.puback(1, 1)) == w.pingresp()


def test_session_follows_the_client_to_a_new_address(gateway, paho, sn) -> None:
    gw = sn_gateway(gateway)
    first = sn(gw.sn_port)
    assert first.ask(w.connect("roamer", 60, 0)) == w.connack()
    assert first.ask(w.subscribe(1, "cmd/roamer", 1)) == w.suback(1, 1, w.ACCEPTED, 1)
    second = sn(gw.sn_port)
    assert second.ask(w.connect("roamer", 60, 0)) == w.connack()
    assert first.recv() == w.disconnect()
    mqtt = paho(gw.port, unique("pub"))
    mqtt.connect()
    mqtt.publish("cmd/roamer", b"here", 1)
    assert second.recv() == w.publish(1, b"here", 1, 1)
    second.send(w.puback(1, 1))


def test_qos1_queued_for_an_absent_client_as_for_mqtt(gateway, paho, sn) -> None:
    gw = sn_gateway(gateway)
    c = sn(gw.sn_port)
    c.ask(w.connect("away", 60, 0))
    c.ask(w.subscribe(1, "cmd/away", 1))
    assert c.ask(w.disconnect()) == w.disconnect()
    mqtt = paho(gw.port, unique("pub"))
    mqtt.connect()
    mqtt.publish("cmd/away", b"queued", 1)
    c.send(w.connect("away", 60, 0))
    assert c.expect(w.publish(1, b"queued", 1, 1)) == [w.connack()]


def test_mqtt_and_mqttsn_share_one_client_id_namespace(gateway, paho, sn) -> None:
    gw = sn_gateway(gateway)
    c = sn(gw.sn_port)
    c.ask(w.connect("shared-id", 60, 0))
    mqtt = paho(gw.port, "shared-id", clean_session=False)
    assert mqtt.connect() is True  # session present: the MQTT-SN one
    assert c.recv() == w.disconnect()


def test_two_clients_sharing_a_subscription_get_each_message_once(gateway, paho, sn) -> None:
    gw = sn_gateway(gateway)
    members = {}
    for cid in ("worker-a", "worker-b"):
        c = sn(gw.sn_port)
        assert c.ask(w.connect(cid, 60)) == w.connack()
        assert c.ask(w.subscribe(1, "$share/workers/jobs", 1)) == w.suback(0, 1, w.ACCEPTED, 1)
        assert c.ask(w.subscribe(2, "jobs/done", 1)) == w.suback(1, 2, w.ACCEPTED, 1)
        members[c.sock] = (c, {1: "jobs/done"}, [])
    mqtt = paho(gw.port, unique("boss"))
    mqtt.connect()
    sent = [b"job %d" % i for i in range(10)]
    for payload in sent:
        mqtt.publish("jobs", payload, 1)
    mqtt.publish("jobs/done", b"", 1)  # behind every job in each member's queue

    done = 0
    while done < len(members):
        ready, _, _ = select.select(list(members), [], [], 10)
        assert ready, "no datagram within 10s"
        for sock in ready:
            c, names, got = members[sock]
            d = c.recv()
            topic_id, msg_id = int.from_bytes(d[3:5], "big"), int.from_bytes(d[5:7], "big")
            if d[1] == 0x0A:  # REGISTER
                names[int.from_bytes(d[2:4], "big")] = d[6:].decode()
                c.send(w.regack(int.from_bytes(d[2:4], "big"), int.from_bytes(d[4:6], "big")))
                continue
            assert d[1] == 0x0C, d
            c.send(w.puback(topic_id, msg_id))
            if names[topic_id] == "jobs/done":
                done += 1
            else:
                got.append(d[7:])
    got_a, got_b = (got for _, _, got in members.values())
    assert sorted(got_a + got_b) == sorted(sent)
    assert got_a and got_b


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_listener(gateway, paho, sn) -> None:
    try:
        gw = sn_gateway(gateway, host="::1")
    except OSError:
        pytest.skip("::1 not usable here")
    mqtt = paho(gw.port, unique("sub"))
    mqtt.connect()
    mqtt.subscribe("sensors/#")
    c = sn(gw.sn_port, "::1")
    assert c.ask(w.connect("v6", 60)) == w.connack()
    assert c.ask(w.publish(10, b"six", 1, 1, id_type=w.PREDEFINED)) == w.puback(10, 1)
    assert mqtt.next_message().payload == b"six"


def test_garbage_and_unknown_addresses(gateway, paho, sn) -> None:
    gw = sn_gateway(gateway, "sys_interval 1")
    mqtt = paho(gw.port, unique("sys"))
    mqtt.connect()
    c = sn(gw.sn_port)
    c.send(b"")
    c.send(b"\xff\xff\xff")
    assert c.ask(w.publish(1, b"x", 1, 1)) == w.disconnect()
    assert c.ask(w.searchgw()) == w.gwinfo(1)
    mqtt.subscribe("$SYS/broker/mqttsn/#")
    seen = {m.topic: m.payload for m in mqtt.wait_for("$SYS/broker/mqttsn/udp/kernel dropped", timeout=15)}
    assert int(seen["$SYS/broker/mqttsn/udp/kernel dropped"]) == 0
    while seen.get("$SYS/broker/mqttsn/frames/dropped") != b"2":  # $SYS is published every second
        msg = mqtt.next_message(timeout=15)
        seen[msg.topic] = msg.payload
    assert gw.running()


def test_multicast_discovery_in_a_private_network_namespace(gateway, netns) -> None:
    # SEARCHGW to the group is answered from the listener's unicast address; ADVERTISE
    # goes to the group. Multicast stays inside a namespace of its own (never the LAN).
    ns, ours = netns
    gw = gateway("listener 10000 127.0.0.1", "protocol mqttsn", "mqttsn_multicast 225.1.1.1 1883",
                 "mqttsn_gateway_id 7", "mqttsn_advertise_interval 1",
                 wait=False, preexec_fn=lambda: setns(ns))
    gw.wait_for_log("listening for mqttsn")
    setns(ns)
    try:
        group = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        group.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        group.bind(("", 1883))
        group.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                         socket.inet_aton("225.1.1.1") + socket.inet_aton("127.0.0.1"))
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
    finally:
        setns(ours)
    with group, client:
        client.settimeout(10)
        client.sendto(w.searchgw(1), ("225.1.1.1", 1883))
        reply, source = client.recvfrom(100)
        assert (reply, source) == (w.gwinfo(7), ("127.0.0.1", 10000))
        group.settimeout(10)
        while True:
            data, source = group.recvfrom(100)
            if data != w.searchgw(1):  # our own SEARCHGW comes back too
                break
        assert (data, source) == (w.advertise(7, 1), ("127.0.0.1", 10000))
        assert client.sendto(w.connect("found-it"), source) and client.recvfrom(100)[0] == w.connack()
