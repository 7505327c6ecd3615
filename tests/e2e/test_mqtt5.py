"""MQTT 5 end to end with paho-mqtt's v5 client against a running gateway: properties
between clients, request and response, subscription options and identifiers, shared
subscriptions, topic aliases, session and message expiry, will delay, and MQTT 3.1.1
clients on the same topics."""

from __future__ import annotations

import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.e2e.clients import unique


@pytest.fixture(scope="module")
def shared_gateway_config() -> list[str]:
    return ["max_topic_alias 5"]


@pytest.fixture
def port(shared_gateway) -> int:
    return shared_gateway.port


def v5(paho, port, prefix="c", clean=True, **kwargs):
    client = paho(port, unique(prefix), protocol=5, clean_session=clean, **kwargs)
    client.connect()
    return client


def publish_props(**values) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def test_properties_reach_v5_subscribers_in_order_and_not_v311_ones(paho, port):
    topic = unique("e2e/v5/props")
    s5 = v5(paho, port, "s5")
    s5.subscribe(topic, 1)
    s4 = paho(port, unique("s4"), protocol=4)
    s4.connect()
    s4.subscribe(topic, 1)
    pub = v5(paho, port, "p")
    props = publish_props(ContentType="application/json", ResponseTopic="reply/x",
                          CorrelationData=b"\x00\x01", PayloadFormatIndicator=1,
                          UserProperty=[("b", "2"), ("a", "1"), ("b", "3")])
    info = pub.client.publish(topic, b'{"t": 21.5}', 1, properties=props)
    info.wait_for_publish(10)
    got = s5.next_message()
    assert got.properties.ContentType == "application/json"
    assert got.properties.ResponseTopic == "reply/x"
    assert got.properties.CorrelationData == b"\x00\x01"
    assert got.properties.PayloadFormatIndicator == 1
    assert got.properties.UserProperty == [("b", "2"), ("a", "1"), ("b", "3")]
    plain = s4.next_message()
    assert (plain.topic, plain.payload, plain.qos) == (topic, b'{"t": 21.5}', 1)


def test_request_and_response_between_clients(paho, port):
    service_topic = unique("e2e/v5/service")
    service = v5(paho, port, "service")
    service.subscribe(service_topic, 1)
    requester = v5(paho, port, "requester")
    reply_topic = unique("e2e/v5/reply")
    requester.subscribe(reply_topic, 1)
    requester.client.publish(service_topic, b"ping", 1, properties=publish_props(
        ResponseTopic=reply_topic, CorrelationData=b"req-7")).wait_for_publish(10)
    request = service.next_message()
    service.client.publish(request.properties.ResponseTopic, b"pong", 1, properties=publish_props(
        CorrelationData=request.properties.CorrelationData)).wait_for_publish(10)
    reply = requester.next_message()
    assert (reply.payload, reply.properties.CorrelationData) == (b"pong", b"req-7")


def test_subscription_identifiers_and_no_local(paho, port):
    root = unique("e2e/v5/ids")
    client = v5(paho, port, "ids")
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 41
    client.client.subscribe(f"{root}/#", options=SubscribeOptions(1, noLocal=True), properties=props)
    other = v5(paho, port, "other")
    time.sleep(0.2)
    client.publish(f"{root}/mine", b"x", 1)        # no local: not echoed back
    other.publish(f"{root}/theirs", b"y", 1)
    got = client.next_message()
    assert (got.topic, got.properties.SubscriptionIdentifier) == (f"{root}/theirs", [41])


def test_shared_subscription_splits_the_messages(paho, port):
    topic = unique("e2e/v5/jobs")
    members = [v5(paho, port, f"worker{i}") for i in range(2)]
    for m in members:
        assert m.subscribe(f"$share/workers/{topic}", 1) == [1]
    pub = v5(paho, port, "boss")
    for i in range(10):
        pub.publish(topic, b"%d" % i, 1)
    got: list[list[bytes]] = [[], []]
    deadline = time.monotonic() + 10   # only to turn a hang into a failure
    while sum(map(len, got)) < 10 and time.monotonic() < deadline:
        for i, m in enumerate(members):
            while not m.messages.empty():
                got[i].append(m.messages.get().payload)
        time.sleep(0.01)
    assert sorted(got[0] + got[1]) == sorted(b"%d" % i for i in range(10))
    assert got[0] and got[1]      # each member got some, none twice


def test_session_expiry_keeps_queued_messages_then_ends(paho, port):
    topic = unique("e2e/v5/expiry")
    cid = unique("sleeper")

    def connect(expiry):
        c = paho(port, cid, protocol=5, clean_session=False)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
        c.client.connect("127.0.0.1", port, 60, clean_start=False, properties=props)
        c.client.loop_start()
        c._looping = True
        return c, c.connacks.get(timeout=10)

    first, _ = connect(3)
    first.subscribe(topic, 1)
    first.client.disconnect()
    first.client.loop_stop()
    pub = v5(paho, port, "p")
    pub.publish(topic, b"while away", 1)
    back, (present, code) = connect(3)
    assert (present, code) == (True, 0)
    assert back.next_message().payload == b"while away"
    back.client.disconnect()
    back.client.loop_stop()
    time.sleep(4.5)   # the session's own expiry, not a timing check of the gateway
    last, (present, code) = connect(3)
    assert present is False


def test_will_delay_and_v311_watcher(paho, port):
    topic = unique("e2e/v5/will")
    watcher = paho(port, unique("w"), protocol=4)
    watcher.connect()
    watcher.subscribe(topic, 1)
    dying = paho(port, unique("dying"), protocol=5)
    will_props = Properties(PacketTypes.WILLMESSAGE)
    will_props.WillDelayInterval = 1
    dying.client.will_set(topic, b"gone", 1, properties=will_props)
    dying.connect()
    dying.client.socket().close()      # no DISCONNECT
    msg = watcher.next_message(timeout=15)
    assert msg.payload == b"gone"


def test_server_topic_aliases_for_a_client_that_allows_them(paho, port):
    topic = unique("e2e/v5/alias")
    sub = paho(port, unique("alias"), protocol=5)
    props = Properties(PacketTypes.CONNECT)
    props.TopicAliasMaximum = 2
    sub.client.connect("127.0.0.1", port, 60, properties=props)
    sub.client.loop_start()
    sub._looping = True
    assert sub.connacks.get(timeout=10)[1] == 0
    sub.subscribe(topic, 0)
    pub = v5(paho, port, "p")
    for i in range(3):
        pub.publish(topic, b"%d" % i, 1)
    got = [sub.next_message() for _ in range(3)]
    # paho hands on what came: the topic with its alias first, then the alias alone.
    assert [(m.topic, m.payload, m.properties.TopicAlias) for m in got] == [
        (topic, b"0", 1), ("", b"1", 1), ("", b"2", 1)]


def test_message_expiry_is_counted_down(paho, port):
    topic = unique("e2e/v5/mexp")
    pub = v5(paho, port, "p")
    pub.client.publish(topic, b"short-lived", 1, retain=True,
                       properties=publish_props(MessageExpiryInterval=60)).wait_for_publish(10)
    time.sleep(1.2)
    late = v5(paho, port, "late")
    late.subscribe(topic, 1)
    got = late.next_message()
    assert got.retain and 55 <= got.properties.MessageExpiryInterval < 60


def test_connack_announces_the_limits(paho, port):
    client = paho(port, unique("limits"), protocol=5)
    seen = {}
    client.client.on_connect = lambda c, u, f, r, p: seen.update(reason=r.value, props=p)
    client.client.connect("127.0.0.1", port, 60)
    client.client.loop_start()
    client._looping = True
    deadline = time.monotonic() + 10
    while "props" not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen["reason"] == 0
    assert seen["props"].TopicAliasMaximum == 5
    assert seen["props"].ReceiveMaximum == 20
