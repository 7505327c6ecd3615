"""Clients nobody here wrote (paho-mqtt, mosquitto_pub/sub) and raw bytes against a
running gateway, at MQTT 3.1 (level 3), 3.1.1 (level 4) and 5.

Most tests share one gateway (``sys_interval 1``) and keep apart by using unique
client ids and topics; tests that need other limits start their own. Where a test
must show that something did *not* arrive, it publishes a marker afterwards on the
same path and checks what came before it, instead of waiting for a while.
"""

from __future__ import annotations

import pytest
import paho.mqtt.client as mqtt

from tests import wire
from tests.conftest import HOST
from tests.e2e.clients import PAHO_PROTOCOLS, RawClient, mosquitto_pub, unique

LEVELS = pytest.mark.parametrize("protocol", [3, 4, 5], ids=["mqtt31", "mqtt311", "mqtt5"])
QOS = pytest.mark.parametrize("qos", [0, 1, 2], ids=["qos0", "qos1", "qos2"])


@pytest.fixture(scope="module")
def shared_gateway_config() -> list[str]:
    return ["sys_interval 1"]


@pytest.fixture
def port(shared_gateway) -> int:
    return shared_gateway.port


def connected(paho, port, prefix="c", **kwargs):
    client = paho(port, unique(prefix), **kwargs)
    client.connect()
    return client


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pub_level, sub_level",
    [(3, 3), (4, 4), (3, 4), (4, 3), (5, 5), (5, 4), (4, 5), (3, 5)],
    ids=["31-to-31", "311-to-311", "31-to-311", "311-to-31", "5-to-5", "5-to-311", "311-to-5", "31-to-5"],
)
@QOS
def test_paho_round_trip(paho, port, pub_level, sub_level, qos):
    topic = unique(f"e2e/paho/q{qos}")
    sub = connected(paho, port, "sub", protocol=sub_level)
    assert sub.subscribe(topic, 2) == [2]
    pub = connected(paho, port, "pub", protocol=pub_level)
    payload = bytes(range(256)) * 3  # binary, and longer than 127 bytes
    pub.publish(topic, payload, qos)
    msg = sub.next_message()
    assert (msg.topic, msg.payload, msg.qos, msg.retain, msg.dup) == (topic, payload, qos, False, False)


@LEVELS
@QOS
def test_mosquitto_round_trip(mosquitto_sub, port, protocol, qos):
    topic = unique(f"e2e/mosquitto/q{qos}")
    sub = mosquitto_sub(port, topic, qos=2, protocol=protocol)
    mosquitto_pub(port, topic, "hello gateway", qos=qos, protocol=protocol)
    msg = sub.next_message()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (topic, "hello gateway", qos, False)


@pytest.mark.parametrize("sub_qos", [0, 1, 2], ids=["sub-qos0", "sub-qos1", "sub-qos2"])
@QOS
def test_delivery_qos_is_the_lower_of_publish_and_subscription(paho, port, sub_qos, qos):
    topic = unique("e2e/downgrade")
    sub = connected(paho, port, "sub")
    assert sub.subscribe(topic, sub_qos) == [sub_qos]
    connected(paho, port, "pub").publish(topic, b"x", qos)
    assert sub.next_message().qos == min(sub_qos, qos)


def test_unsubscribe_stops_delivery(paho, port):
    root = unique("e2e/unsub")
    sub = connected(paho, port, "sub")
    sub.subscribe(f"{root}/a", 1)
    sub.subscribe(f"{root}/marker", 1)
    pub = connected(paho, port, "pub")
    pub.publish(f"{root}/a", b"1", 1)
    assert sub.next_message().payload == b"1"
    sub.unsubscribe(f"{root}/a")
    pub.publish(f"{root}/a", b"2", 1)
    pub.publish(f"{root}/marker", b"", 1)
    assert [m.topic for m in sub.wait_for(f"{root}/marker")] == [f"{root}/marker"]


def test_overlapping_subscriptions_deliver_one_copy_at_the_highest_qos(paho, port):
    root = unique("e2e/overlap")
    sub = connected(paho, port, "sub")
    sub.subscribe(f"{root}/#", 0)
    sub.subscribe(f"{root}/+", 2)
    # paho hands a QoS 2 message over on PUBREL: the marker is QoS 2 too, to keep order.
    sub.subscribe(f"{root}-marker", 2)
    pub = connected(paho, port, "pub")
    pub.publish(f"{root}/a", b"once", qos=2)
    pub.publish(f"{root}-marker", b"", qos=2)
    got = sub.wait_for(f"{root}-marker")
    assert [(m.topic, m.qos) for m in got] == [(f"{root}/a", 2), (f"{root}-marker", 2)]


def test_large_payload(paho, port):
    topic = unique("e2e/large")
    sub = connected(paho, port, "sub")
    sub.subscribe(topic, 1)
    payload = bytes(range(256)) * 4096  # 1 MiB: a 3-byte remaining length, many reads
    connected(paho, port, "pub").publish(topic, payload, qos=1)
    assert sub.next_message().payload == payload


@QOS
def test_burst_arrives_complete_and_in_order(paho, port, qos):
    """More messages than the inflight window, published without waiting."""
    topic = unique("e2e/burst")
    sub = connected(paho, port, "sub")
    sub.subscribe(topic, 2)
    pub = connected(paho, port, "pub")
    infos = [pub.client.publish(topic, b"%d" % i, qos) for i in range(300)]
    for info in infos:
        info.wait_for_publish(10)
    got = [sub.next_message().payload for _ in infos]
    assert got == [b"%d" % i for i in range(300)]


# --- retained messages ----------------------------------------------------------------


@LEVELS
def test_retained_message_reaches_later_subscribers_until_cleared(paho, port, protocol):
    root = unique("e2e/retain")
    topic = f"{root}/state"
    pub = connected(paho, port, "pub", protocol=protocol)
    pub.publish(topic, b"on", qos=1, retain=True)

    late = connected(paho, port, "late", protocol=protocol)
    late.subscribe(f"{root}/#", 1)
    msg = late.next_message()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (topic, b"on", 1, True)

    # To a subscription that already exists, a retained publish arrives with retain 0.
    pub.publish(topic, b"off", qos=1, retain=True)
    msg = late.next_message()
    assert (msg.payload, msg.retain) == (b"off", False)

    # An empty retained payload is delivered as usual and clears the topic.
    pub.publish(topic, b"", qos=1, retain=True)
    assert late.next_message().payload == b""
    after = connected(paho, port, "after", protocol=protocol)
    after.subscribe(f"{root}/#", 1)
    pub.publish(f"{root}/marker", b"", qos=1)
    assert [m.topic for m in after.wait_for(f"{root}/marker")] == [f"{root}/marker"]


def test_retained_message_with_mosquitto_clients(mosquitto_sub, port):
    root = unique("e2e/retain-mosq")
    mosquitto_pub(port, f"{root}/temp", "21.5", qos=1, retain=True)
    msg = mosquitto_sub(port, f"{root}/#", qos=1).next_message()
    assert (msg.topic, msg.payload, msg.retain) == (f"{root}/temp", "21.5", True)

    mosquitto_pub(port, f"{root}/temp", None, qos=1, retain=True)  # -n -r clears it
    sub = mosquitto_sub(port, f"{root}/#", qos=1)
    mosquitto_pub(port, f"{root}/marker", "m", qos=1)
    msg = sub.next_message()
    assert (msg.topic, msg.retain) == (f"{root}/marker", False)


# --- wildcards ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter, matching, other",
    [
        ("+/temp", ["a/temp", "b/temp", "/temp"], ["a/b/temp", "temp", "a/temp/x"]),
        ("a/+/c", ["a/b/c", "a//c"], ["a/c", "a/b/c/d", "b/b/c"]),
        ("a/#", ["a", "a/b", "a/b/c", "a/"], ["b/a", "ab"]),
        ("a/+/#", ["a/b", "a/b/c", "a/b/c/d"], ["a", "b/b"]),
        ("+/+", ["a/b", "x/y"], ["a", "a/b/c"]),
        ("#", ["a", "a/b/c", "z"], []),
    ],
    ids=["plus-first", "plus-middle", "hash-includes-parent", "plus-then-hash", "two-plus", "hash-only"],
)
def test_wildcard_subscription(paho, port, topic_filter, matching, other):
    root = unique("e2e/wild")
    sub = connected(paho, port, "sub")
    sub.subscribe(f"{root}/{topic_filter}", 1)
    sub.subscribe(f"{root}-marker", 1)
    pub = connected(paho, port, "pub")
    for topic in other + matching:
        pub.publish(f"{root}/{topic}", topic.encode(), qos=1)
    pub.publish(f"{root}-marker", b"", qos=1)
    seen = [m.payload.decode() for m in sub.wait_for(f"{root}-marker")[:-1]]
    assert seen == matching


# --- persistent sessions --------------------------------------------------------------


@LEVELS
def test_persistent_session_keeps_messages_while_away(paho, port, protocol):
    client_id = unique("persist")
    topic = unique("e2e/persist")
    first = paho(port, client_id, protocol=protocol, clean_session=False)
    assert first.connect() is False
    first.subscribe(topic, 1)
    first.disconnect()

    pub = connected(paho, port, "pub", protocol=protocol)
    payloads = [b"m%d" % i for i in range(5)]
    for payload in payloads:
        pub.publish(topic, payload, qos=1)

    again = paho(port, client_id, protocol=protocol, clean_session=False)
    assert again.connect() is (protocol != 3)  # session present (3.1 has no such flag)
    got = [again.next_message() for _ in payloads]
    assert [(m.topic, m.payload, m.qos) for m in got] == [(topic, p, 1) for p in payloads]
    # The subscription itself survived too.
    pub.publish(topic, b"live", qos=1)
    assert again.next_message().payload == b"live"


def test_clean_session_discards_the_stored_session(paho, raw, port):
    client_id = unique("discard")
    topic = unique("e2e/discard")
    first = paho(port, client_id, clean_session=False)
    first.connect()
    first.subscribe(topic, 1)
    first.disconnect()
    connected(paho, port, "pub").publish(topic, b"queued", qos=1)

    client = raw(port)
    assert client.connect(client_id, clean=True) == (False, 0)
    client.send(wire.pingreq())
    client.expect(wire.pingresp())  # nothing queued came first


def test_queue_overflow_is_counted_as_dropped(gateway, paho):
    gw = gateway("max_queued_messages 2", "sys_interval 1")
    client_id = unique("overflow")
    topic = unique("e2e/overflow")
    away = paho(gw.port, client_id, clean_session=False)
    away.connect()
    away.subscribe(topic, 1)
    away.disconnect()

    pub = connected(paho, gw.port, "pub")
    for i in range(5):
        pub.publish(topic, b"m%d" % i, qos=1)

    watcher = connected(paho, gw.port, "sys")
    watcher.subscribe("$SYS/broker/publish/messages/dropped")
    values = []
    while not values or values[-1] != b"3":
        values.append(watcher.next_message().payload)
        assert values[-1] in (b"0", b"1", b"2", b"3"), values

    back = paho(gw.port, client_id, clean_session=False)
    assert back.connect() is True
    pub.publish(topic, b"marker", qos=1)
    assert [back.next_message().payload for _ in range(3)] == [b"m0", b"m1", b"marker"]


# --- wills and lost connections -------------------------------------------------------


@pytest.fixture
def watcher(paho, port):
    """A client subscribed (QoS 2) to everything under a fresh root topic."""
    root = unique("e2e/will")
    client = connected(paho, port, "watch")
    client.subscribe(f"{root}/#", 2)
    client.root = root
    return client


@LEVELS
@QOS
def test_will_published_when_the_socket_is_closed(raw, port, watcher, protocol, qos):
    will = f"{watcher.root}/status"
    client = raw(port)
    assert client.connect(unique("dying"), proto_level=protocol, will_topic=will,
                          will_payload=b"offline", will_qos=qos) == (False, 0)
    client.close()  # no DISCONNECT
    msg = watcher.next_message()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (will, b"offline", qos, False)


def test_retained_will_reaches_later_subscribers(raw, paho, port, watcher):
    will = f"{watcher.root}/status"
    client = raw(port)
    client.connect(unique("dying"), will_topic=will, will_payload=b"lost", will_qos=1, will_retain=True)
    client.close()
    assert watcher.next_message().payload == b"lost"
    late = connected(paho, port, "late")
    late.subscribe(will, 1)
    msg = late.next_message()
    assert (msg.payload, msg.retain) == (b"lost", True)


def test_paho_will_published_when_its_socket_is_closed(port, watcher):
    will = f"{watcher.root}/paho"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("paho-dying"),
                         protocol=PAHO_PROTOCOLS[4])
    client.will_set(will, b"paho gone", qos=1)
    acks = []
    client.on_connect = lambda c, u, flags, reason, props: acks.append(reason.value)
    client.connect(HOST, port)
    for _ in range(200):  # no loop thread: it would reconnect after the close
        client.loop(0.05)
        if acks:
            break
    assert acks == [0]
    client.socket().close()
    msg = watcher.next_message()
    assert (msg.topic, msg.payload, msg.qos) == (will, b"paho gone", 1)


@LEVELS
def test_no_will_after_a_clean_disconnect(raw, paho, port, watcher, protocol):
    client = raw(port)
    client.connect(unique("leaving"), proto_level=protocol, will_topic=f"{watcher.root}/status",
                   will_payload=b"offline", will_qos=1)
    client.send(wire.disconnect())
    assert client.expect_closed() == b""
    marker = f"{watcher.root}/marker"
    connected(paho, port, "pub").publish(marker, b"", qos=1)
    assert [m.topic for m in watcher.wait_for(marker)] == [marker]


def test_keepalive_expiry_closes_and_publishes_the_will(raw, port, watcher):
    client = raw(port)
    will = f"{watcher.root}/status"
    client.connect(unique("silent"), keepalive=1, will_topic=will, will_payload=b"timed out")
    # Nothing more is sent: after 1.5 keepalive periods the gateway gives up.
    assert client.expect_closed(timeout=15) == b""
    msg = watcher.next_message(timeout=15)
    assert (msg.topic, msg.payload) == (will, b"timed out")


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "persistent"])
def test_takeover_closes_the_old_connection_and_publishes_its_will(raw, port, watcher, clean):
    """As Mosquitto: the will goes out unless a persistent session is taken over by a
    connection that resumes it (the session goes on)."""
    client_id = unique("twin")
    will = f"{watcher.root}/status"
    old = raw(port)
    assert old.connect(client_id, clean=clean, will_topic=will, will_payload=b"replaced") == (False, 0)
    new = raw(port)
    assert new.connect(client_id, clean=clean) == (not clean, 0)
    assert old.expect_closed() == b""
    if clean:
        msg = watcher.next_message()
        assert (msg.topic, msg.payload) == (will, b"replaced")
    new.send(wire.pingreq())
    new.expect(wire.pingresp())
    if not clean:
        # Anything published at the takeover would arrive before this marker.
        new.send(wire.publish(f"{watcher.root}/marker", b"m"))
        assert [m.topic for m in watcher.wait_for(f"{watcher.root}/marker")] == [f"{watcher.root}/marker"]


# --- $SYS -----------------------------------------------------------------------------

SYS_TOPICS = [
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/messages/received",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/load/bytes/received",
]


def test_sys_topics(paho, port):
    client = connected(paho, port, "sys")
    client.subscribe("$SYS/#")
    values: dict[str, bytes] = {}
    # The retained values may predate this client; the next interval counts it.
    while not set(SYS_TOPICS) <= values.keys() or values["$SYS/broker/clients/connected"] == b"0":
        msg = client.next_message()
        values[msg.topic] = msg.payload
    assert values["$SYS/broker/version"].startswith(b"mqttgateway version ")
    assert values["$SYS/broker/uptime"].endswith(b" seconds")
    for topic in SYS_TOPICS[2:]:
        assert values[topic].isdigit(), (topic, values[topic])


def test_leading_wildcards_do_not_match_sys_topics(paho, port):
    everything = connected(paho, port, "all")
    for topic_filter in ("#", "+/broker/uptime", "+/#"):
        everything.subscribe(topic_filter)
    # Wait until $SYS has been published twice more while these were subscribed.
    sys_client = connected(paho, port, "sys")
    sys_client.subscribe("$SYS/broker/uptime")
    live = 0
    while live < 2:
        live += not sys_client.next_message().retain
    marker = unique("e2e/hash-marker")
    connected(paho, port, "pub").publish(marker, b"", qos=1)
    seen = [m.topic for m in everything.wait_for(marker)]
    assert [t for t in seen if t.startswith("$")] == []


def test_clients_cannot_publish_into_sys(paho, port):
    custom = f"$SYS/{unique('e2e')}"
    sub = connected(paho, port, "sub")
    sub.subscribe("$SYS/broker/version")
    version = sub.next_message()  # the gateway's own, retained
    assert version.payload.startswith(b"mqttgateway version ")
    sub.subscribe(custom, 1)
    marker = unique("e2e/sys-marker")
    sub.subscribe(marker, 1)
    pub = connected(paho, port, "pub")
    pub.publish("$SYS/broker/version", b"forged", qos=1, retain=True)  # acknowledged, dropped
    pub.publish(custom, b"forged", qos=1)
    pub.publish(marker, b"", qos=1)
    assert [m.topic for m in sub.wait_for(marker)] == [marker]
    late = connected(paho, port, "late")
    late.subscribe("$SYS/broker/version")
    assert late.next_message().payload == version.payload


# --- client ids -----------------------------------------------------------------------


def test_paho_with_zero_length_client_id(paho, port):
    client = paho(port, "", protocol=4, clean_session=True)
    client.connect()
    topic = unique("e2e/anonymous-id")
    client.subscribe(topic, 1)
    client.publish(topic, b"me", 1)
    assert client.next_message().payload == b"me"


@pytest.mark.parametrize(
    "protocol, clean, code",
    [(4, True, 0), (4, False, 2), (3, True, 2), (3, False, 2)],
    ids=["311-clean-accepted", "311-persistent-rejected", "31-clean-rejected", "31-persistent-rejected"],
)
def test_zero_length_client_id(raw, port, protocol, clean, code):
    client = raw(port)
    assert client.connect("", clean=clean, proto_level=protocol) == (False, code)
    if code:
        assert client.expect_closed() == b""
    else:
        client.send(wire.pingreq())
        client.expect(wire.pingresp())


# --- limits ---------------------------------------------------------------------------


def test_max_connections_per_listener(gateway, raw):
    gw = gateway("max_connections 2")
    first, second = raw(gw.port), raw(gw.port)
    assert first.connect(unique("one")) == (False, 0)
    assert second.connect(unique("two")) == (False, 0)
    third = raw(gw.port)
    try:
        third.send(wire.connect(unique("three")))
    except OSError:
        pass  # already reset
    assert third.expect_closed() == b""
    # Once one leaves, a new connection fits again.
    first.send(wire.disconnect())
    first.expect_closed()
    assert raw(gw.port).connect(unique("four")) == (False, 0)


# --- QoS 2 and redelivery, byte by byte ------------------------------------------------


def publish_qos2(client: RawClient, topic: str, payload: bytes, mid: int) -> None:
    """The whole QoS 2 exchange from a raw client."""
    client.send(wire.publish(topic, payload, qos=2, mid=mid))
    client.expect(wire.pubrec(mid))
    client.send(wire.pubrel(mid))
    client.expect(wire.pubcomp(mid))


def test_inbound_qos2_duplicate_before_pubrel_is_delivered_once(raw, paho, port):
    root = unique("e2e/qos2dup")
    sub = connected(paho, port, "sub")
    sub.subscribe(f"{root}/#", 2)
    pub = raw(port)
    pub.connect(unique("dup-pub"))
    pub.send(wire.publish(f"{root}/once", b"exactly once", qos=2, mid=7))
    pub.expect(wire.pubrec(7))
    pub.send(wire.publish(f"{root}/once", b"exactly once", qos=2, mid=7, dup=True))
    pub.expect(wire.pubrec(7))
    pub.send(wire.pubrel(7))
    pub.expect(wire.pubcomp(7))
    # The packet id is free again: the same id now carries a new message.
    publish_qos2(pub, f"{root}/once", b"next", mid=7)
    # paho hands a QoS 2 message over on PUBREL, so the marker is QoS 2 as well.
    publish_qos2(pub, f"{root}/marker", b"", mid=8)
    assert [m.payload for m in sub.wait_for(f"{root}/marker")] == [b"exactly once", b"next", b""]


def test_inbound_qos2_resent_after_reconnect_is_delivered_once(raw, paho, port):
    """The publisher loses its connection between PUBREC and PUBREL and resends with DUP."""
    root = unique("e2e/qos2resume")
    sub = connected(paho, port, "sub")
    sub.subscribe(f"{root}/#", 2)
    client_id = unique("resume-pub")
    pub = raw(port)
    assert pub.connect(client_id, clean=False) == (False, 0)
    pub.send(wire.publish(f"{root}/once", b"exactly once", qos=2, mid=9))
    pub.expect(wire.pubrec(9))
    pub.close()

    again = raw(port)
    assert again.connect(client_id, clean=False) == (True, 0)
    again.send(wire.publish(f"{root}/once", b"exactly once", qos=2, mid=9, dup=True))
    again.expect(wire.pubrec(9))
    again.send(wire.pubrel(9))
    again.expect(wire.pubcomp(9))
    publish_qos2(again, f"{root}/marker", b"", mid=10)
    assert [m.payload for m in sub.wait_for(f"{root}/marker")] == [b"exactly once", b""]
    again.send(wire.disconnect())


@LEVELS
def test_unacknowledged_publish_is_redelivered_with_dup(raw, paho, port, protocol):
    client_id = unique("redeliver")
    topic = unique("e2e/redeliver")
    v = protocol
    kept = wire.prop_u32(0x11, 0xFFFFFFFF) if v == 5 else b""   # session expiry: never
    sub = raw(port)
    assert sub.connect(client_id, clean=False, proto_level=v, properties=kept) == (False, 0)
    sub.send(wire.subscribe(1, [(topic, 1)], proto_ver=v))
    sub.expect(wire.suback(1, [1], proto_ver=v))
    connected(paho, port, "pub").publish(topic, b"ack me", qos=1)
    first, body = sub.read_packet()
    assert first == 0x32  # QoS 1, DUP clear
    mid = int.from_bytes(body[2 + len(topic) : 4 + len(topic)], "big")
    assert body == wire.publish(topic, b"ack me", qos=1, mid=mid, proto_ver=v)[2:]
    sub.close()  # no PUBACK

    present = v != 3   # MQTT 3.1 has no session present flag
    again = raw(port)
    assert again.connect(client_id, clean=False, proto_level=v, properties=kept) == (present, 0)
    again.expect(wire.publish(topic, b"ack me", qos=1, mid=mid, dup=True, proto_ver=v))
    again.send(wire.puback(mid, proto_ver=v))
    again.send(wire.disconnect(proto_ver=v))
    again.expect_closed()

    # Acknowledged now: a third connection gets nothing more.
    last = raw(port)
    assert last.connect(client_id, clean=False, proto_level=v, properties=kept) == (present, 0)
    last.send(wire.pingreq())
    last.expect(wire.pingresp())
    last.send(wire.disconnect(proto_ver=v))


def test_unfinished_outbound_qos2_resumes_with_pubrel(raw, paho, port):
    client_id = unique("resume2")
    topic = unique("e2e/resume2")
    sub = raw(port)
    sub.connect(client_id, clean=False)
    sub.send(wire.subscribe(1, [(topic, 2)]))
    sub.expect(wire.suback(1, [2]))
    connected(paho, port, "pub").publish(topic, b"two", qos=2)
    first, body = sub.read_packet()
    assert first == 0x34
    mid = int.from_bytes(body[2 + len(topic) : 4 + len(topic)], "big")
    sub.send(wire.pubrec(mid))
    sub.expect(wire.pubrel(mid))
    sub.close()  # no PUBCOMP

    again = raw(port)
    assert again.connect(client_id, clean=False) == (True, 0)
    again.expect(wire.pubrel(mid))  # not the PUBLISH again
    again.send(wire.pubcomp(mid))
    again.send(wire.pingreq())
    again.expect(wire.pingresp())
