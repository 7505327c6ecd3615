"""persistence true for MQTT-SN and CoAP: what survives a restart (SIGTERM) and a crash
(SIGKILL at once after an acknowledgement).

As in ``test_persistence.py``, gateways run one after the other on one store; the
MQTT-SN and CoAP listeners keep their UDP ports (a sleeping sensor wakes up to the
address it knows). mqtt-sn-12's ``mqtt_sn_pub`` is the publisher that completes its
flow and leaves; raw datagrams (``tests/mqttsn/wire.py``) play the persistent and
sleeping clients; paho-mqtt the MQTT side, aiocoap the CoAP one.
"""

from __future__ import annotations

import signal
import struct
from typing import Callable

import pytest
from aiocoap.numbers.codes import (
    CHANGED, CONTENT, CREATED, DELETE, DELETED, GET, NOT_FOUND, POST, PUT,
)

from tests.coap.helpers import AioCoAP
from tests.conftest import closing, free_udp_port
from tests.e2e.conftest import Stores
from tests.mqttsn import wire as w
from tests.mqttsn.conftest import SNClient, cli

HOST = "127.0.0.1"
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
REGISTER, PUBLISH, PUBREL = 0x0A, 0x0C, 0x10


@pytest.fixture
def sn() -> Callable[..., SNClient]:
    yield from closing(SNClient)


@pytest.fixture
def stores(gateway, tmp_path) -> Stores:
    """Gateways on one store with an MQTT-SN listener (``stores.sn_port``) and a CoAP
    one (``stores.coap_port``), on the same ports at every start."""
    sn_port, coap_port = free_udp_port(), free_udp_port()
    s = Stores(gateway, tmp_path / "store", (
        f"listener {sn_port} {HOST}", "protocol mqttsn", "mqttsn_predefined_topic 10 sensors/predef",
        f"listener {coap_port} {HOST}", "protocol coap"))
    s.sn_port, s.coap_port = sn_port, coap_port
    return s


def connect(c: SNClient, client_id: str, flags: int = 0) -> None:
    """CONNECT with clean session off (``flags``: w.WILL is not handled here)."""
    assert c.ask(w.connect(client_id, 60, flags)) == w.connack()


def converse(c: SNClient, names: dict[int, str], until: bytes | str) -> list[tuple]:
    """Play a well-behaved client: REGACK each REGISTER, PUBACK or PUBREC each PUBLISH,
    PUBCOMP each PUBREL, until the datagram ``until`` or a PUBLISH on the topic
    ``until``. Returns what came: ("REGISTER", topic) and (topic, payload, QoS), DUP or
    not. ``names`` holds the client's topic ids, kept across calls."""
    got: list[tuple] = []
    while True:
        d = c.recv()
        if d == until:
            return got
        kind = d[1]
        if kind == REGISTER:
            topic_id, msg_id = struct.unpack("!HH", d[2:6])
            names[topic_id] = d[6:].decode()
            got.append(("REGISTER", names[topic_id]))
            c.send(w.regack(topic_id, msg_id))
        elif kind == PUBLISH:
            flags = d[2]
            topic_id, msg_id = struct.unpack("!HH", d[3:7])
            qos = (flags >> 5) & 3
            assert flags & 3 == w.NORMAL and topic_id in names, f"unknown topic id in {d!r}"
            got.append((names[topic_id], d[7:], qos))
            if qos == 1:
                c.send(w.puback(topic_id, msg_id))
            elif qos == 2:
                assert c.ask(w.pubrec(msg_id)) == w.pubrel(msg_id)
                c.send(w.pubcomp(msg_id))
            if names[topic_id] == until:
                return got
        elif kind == PUBREL:
            c.send(w.pubcomp(struct.unpack("!H", d[2:4])[0]))
        else:
            raise AssertionError(f"unexpected {d!r}")


def received(client, until: str) -> list[tuple[str, bytes, int]]:
    """A paho client's messages up to the first on ``until`` (QoS 2 ones are handed
    over at their PUBREL, so sorted)."""
    return sorted((m.topic, m.payload, m.qos) for m in client.wait_for(until))


# --- a persistent client: registrations, subscriptions, queued messages -----------------------


@SIGNALS
def test_registered_ids_subscriptions_and_queued_messages_survive(stores, sn, paho, sig):
    gw = stores.start()
    c = sn(stores.sn_port)
    connect(c, "sensor")
    assert c.ask(w.register(0, 1, "room/temp")) == w.regack(1, 1)
    assert c.ask(w.subscribe(2, "room/set", 1)) == w.suback(2, 2, w.ACCEPTED, 1)
    assert c.ask(w.subscribe(3, "alerts/#", 2)) == w.suback(0, 3, w.ACCEPTED, 2)
    assert c.ask(w.disconnect()) == w.disconnect()
    pub = paho(gw.port, "pub")
    pub.connect()
    pub.publish("room/set", b"21", 1)          # queued for the absent client
    pub.publish("alerts/fire", b"!", 2)
    stores.restart(sig)                        # with SIGKILL at once after the PUBCOMP

    watcher = paho(stores.port, "watcher")
    watcher.connect()
    watcher.subscribe("room/#", 1)
    c = sn(stores.sn_port)                     # another address, as a sensor may have
    c.send(w.connect("sensor", 60, 0))
    assert c.recv() == w.connack()
    # room/set keeps the id its SUBSCRIBE gave; alerts/fire (a wildcard's) is registered.
    assert c.recv() == w.publish(2, b"21", 1, 1)
    c.send(w.puback(2, 1))
    names = {1: "room/temp", 2: "room/set"}
    assert converse(c, names, "alerts/fire") == [("REGISTER", "alerts/fire"), ("alerts/fire", b"!", 2)]
    # The id REGISTERed before the restart still names room/temp.
    assert c.ask(w.publish(1, b"19.5", 1, 7)) == w.puback(1, 7)
    m = watcher.next_message()
    assert (m.topic, m.payload) == ("room/temp", b"19.5")
    pub = paho(stores.port, "pub2")
    pub.connect()
    pub.publish("room/set", b"22", 1)          # the subscription came back too
    assert converse(c, names, "room/set") == [("room/set", b"22", 1)]


# --- a sleeping client -----------------------------------------------------------------------


@SIGNALS
def test_a_sleeping_client_wakes_after_a_restart_to_its_messages(stores, sn, paho, sig):
    gw = stores.start()
    wills = paho(gw.port, "wills", clean_session=False)
    wills.connect()
    wills.subscribe("wills/#", 1)
    c = sn(stores.sn_port)
    assert c.ask(w.connect("dozer", 60, w.WILL)) == w.willtopicreq()
    assert c.ask(w.willtopic("wills/dozer", 1)) == w.willmsgreq()
    assert c.ask(w.willmsg(b"lost")) == w.connack()
    assert c.ask(w.subscribe(1, "cmd/dozer", 1)) == w.suback(1, 1, w.ACCEPTED, 1)
    assert c.ask(w.subscribe(2, "cmd/all/#", 2)) == w.suback(0, 2, w.ACCEPTED, 2)
    assert c.ask(w.disconnect(3600)) == w.disconnect()     # asleep for up to an hour
    wills.disconnect()
    pub = paho(gw.port, "pub")
    pub.connect()
    pub.publish("cmd/dozer", b"one", 1)
    pub.publish("cmd/all/lights", b"two", 2)
    pub.publish("cmd/dozer", b"three", 1)
    stores.restart(sig)

    # The sensor never knew: it wakes up as usual, gets what waited, and sleeps again.
    c.send(w.pingreq("dozer"))
    names = {1: "cmd/dozer"}
    assert converse(c, names, w.pingresp()) == [
        ("cmd/dozer", b"one", 1), ("REGISTER", "cmd/all/lights"), ("cmd/all/lights", b"two", 2),
        ("cmd/dozer", b"three", 1)]
    # Its session and will are as they were: no will went out, and what is published
    # now waits for the next wake-up.
    pub = paho(stores.port, "pub2")
    pub.connect()
    pub.publish("cmd/all/lights", b"four", 2)
    pub.publish("wills/marker", b"", 1)
    wills = paho(stores.port, "wills", clean_session=False)
    assert wills.connect() is True
    assert [m.topic for m in wills.wait_for("wills/marker")] == ["wills/marker"]
    c.send(w.pingreq("dozer"))
    assert converse(c, names, w.pingresp()) == [("cmd/all/lights", b"four", 2)]
    # Back to active: a CONNECT keeps the session, without a will going out.
    assert c.ask(w.connect("dozer", 60, 0)) == w.connack()
    assert c.ask(w.disconnect()) == w.disconnect()
    pub.publish("wills/marker", b"", 1)
    assert [m.topic for m in wills.wait_for("wills/marker")] == ["wills/marker"]


def test_a_sleeping_client_whose_listener_left_the_config_is_lost(stores, sn, paho):
    gw = stores.start()
    wills = paho(gw.port, "wills", clean_session=False)
    wills.connect()
    wills.subscribe("wills/#", 1)
    wills.disconnect()
    c = sn(stores.sn_port)
    assert c.ask(w.connect("dozer", 60, w.WILL)) == w.willtopicreq()
    assert c.ask(w.willtopic("wills/dozer", 1)) == w.willmsgreq()
    assert c.ask(w.willmsg(b"lost")) == w.connack()
    assert c.ask(w.disconnect(3600)) == w.disconnect()
    stores.lines = tuple(line for line in stores.lines if line.startswith("persistence"))
    stores.restart()
    # No MQTT-SN listener to wake up to: the gateway loses the client at startup.
    stores.gw.wait_for_log("1 sleeping clients without their listener: lost")
    wills = paho(stores.port, "wills", clean_session=False)
    assert wills.connect() is True
    m = wills.next_message()
    assert (m.topic, m.payload) == ("wills/dozer", b"lost")


# --- acknowledged, then SIGKILL -----------------------------------------------------------


def test_a_puback_means_durable_for_offline_and_sleeping_subscribers(stores, sn, paho):
    gw = stores.start()
    keeper = paho(gw.port, "keeper", clean_session=False)
    keeper.connect()
    keeper.subscribe("sn/#", 1)
    keeper.disconnect()
    sleeper = sn(stores.sn_port)
    connect(sleeper, "sleeper")
    assert sleeper.ask(w.subscribe(1, "sn/#", 1)) == w.suback(0, 1, w.ACCEPTED, 1)
    assert sleeper.ask(w.disconnect(3600)) == w.disconnect()
    # mqtt_sn_pub exits once its PUBACK came: REGISTER, PUBLISH QoS 1, DISCONNECT.
    cli("mqtt_sn_pub", "-p", str(stores.sn_port), "-t", "sn/cli", "-m", "from the cli", "-q", "1")
    c = sn(stores.sn_port)
    connect(c, "raw-pub", w.CLEAN)
    assert c.ask(w.register(0, 1, "sn/raw")) == w.regack(1, 1)
    assert c.ask(w.publish(1, b"raw", 1, 2)) == w.puback(1, 2)
    stores.restart(signal.SIGKILL)

    keeper = paho(stores.port, "keeper", clean_session=False)
    assert keeper.connect() is True
    # A predefined topic id (config) works after the restart as before it.
    cli("mqtt_sn_pub", "-p", str(stores.sn_port), "-T", "10", "-m", "predefined", "-q", "1")
    marker = paho(stores.port, "marker")
    marker.connect()
    marker.publish("sn/end", b"", 1)
    assert received(keeper, "sn/end") == [("sn/cli", b"from the cli", 1), ("sn/end", b"", 1),
                                          ("sn/raw", b"raw", 1)]
    sleeper.send(w.pingreq("sleeper"))
    got = converse(sleeper, {}, w.pingresp())
    assert [g for g in got if g[0] != "REGISTER"] == [
        ("sn/cli", b"from the cli", 1), ("sn/raw", b"raw", 1), ("sn/end", b"", 1)]


def test_qos2_from_mqttsn_is_delivered_once_across_sigkill(stores, sn, paho):
    gw = stores.start()
    keeper = paho(gw.port, "keeper", clean_session=False)
    keeper.connect()
    keeper.subscribe("q2/#", 2)
    keeper.disconnect()
    c = sn(stores.sn_port)
    connect(c, "twice")
    assert c.ask(w.register(0, 1, "q2/rec")) == w.regack(1, 1)
    assert c.ask(w.register(0, 2, "q2/comp")) == w.regack(2, 2)
    # One message killed after its PUBREC, one after its PUBCOMP.
    assert c.ask(w.publish(2, b"completed", 2, 10)) == w.pubrec(10)
    assert c.ask(w.pubrel(10)) == w.pubcomp(10)
    assert c.ask(w.publish(1, b"received", 2, 11)) == w.pubrec(11)
    stores.restart(signal.SIGKILL)

    # The client lost its connection: it connects again and completes its flows,
    # resending what it cannot know arrived.
    c = sn(stores.sn_port)
    connect(c, "twice")
    assert c.ask(w.publish(1, b"received", 2, 11, dup=True)) == w.pubrec(11)
    assert c.ask(w.pubrel(11)) == w.pubcomp(11)
    assert c.ask(w.pubrel(11)) == w.pubcomp(11)         # again: completed, not published again
    assert c.ask(w.pubrel(10)) == w.pubcomp(10)
    # mqtt_sn_pub at QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP, DISCONNECT; then a crash.
    cli("mqtt_sn_pub", "-p", str(stores.sn_port), "-t", "q2/cli", "-m", "cli", "-q", "2")
    stores.restart(signal.SIGKILL)
    keeper = paho(stores.port, "keeper", clean_session=False)
    assert keeper.connect() is True
    marker = paho(stores.port, "marker")
    marker.connect()
    marker.publish("q2/end", b"", 2)
    assert received(keeper, "q2/end") == [("q2/cli", b"cli", 2), ("q2/comp", b"completed", 2),
                                          ("q2/end", b"", 2), ("q2/rec", b"received", 2)]


# --- CoAP --------------------------------------------------------------------------------


def test_a_coap_answer_means_durable(stores, paho):
    gw = stores.start()
    keeper = paho(gw.port, "keeper", clean_session=False)
    keeper.connect()
    keeper.subscribe("coap/#", 1)
    keeper.disconnect()
    base = f"coap://{HOST}:{stores.coap_port}/ps/coap"
    coap = AioCoAP()
    try:
        assert coap.request(PUT, f"{base}/one?qos=1", b"put").code == CHANGED
        assert coap.request(POST, f"{base}/kept?qos=1&retain=true", b"retained").code == CREATED
        stores.restart(signal.SIGKILL)
        keeper = paho(stores.port, "keeper", clean_session=False)
        assert keeper.connect() is True
        assert [(m.topic, m.payload, m.qos) for m in (keeper.next_message(), keeper.next_message())] == [
            ("coap/one", b"put", 1), ("coap/kept", b"retained", 1)]
        reader = paho(stores.port, "reader")
        reader.connect()
        reader.subscribe("coap/#", 1)
        m = reader.next_message()
        assert (m.topic, m.payload, m.retain) == ("coap/kept", b"retained", True)
        answer = coap.request(GET, f"{base}/kept")
        assert (answer.code, answer.payload) == (CONTENT, b"retained")
        # Deleting the retained message is as durable as setting it.
        assert coap.request(DELETE, f"{base}/kept").code == DELETED
        stores.restart(signal.SIGKILL)
        assert coap.request(GET, f"{base}/kept").code == NOT_FOUND
    finally:
        coap.close()
