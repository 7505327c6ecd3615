"""MQTT 5 in the channel, with raw bytes: CONNACK properties, reason codes, expiry,
will delay, topic aliases, flow control, subscription options and identifiers."""

from __future__ import annotations

import pytest

from gateway.hub.api import WRITE, Reason
from gateway.hub.hub import allow_all_authenticate
from gateway.mqtt.channel import MQTTSettings
from tests import wire
from tests.mqtt.helpers import Broker

V5 = 5
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_CONTENT_TYPE = 0x03
P_RESPONSE_TOPIC = 0x08
P_CORRELATION = 0x09
P_SUB_ID = 0x0B
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_ID = 0x12
P_SERVER_KEEP_ALIVE = 0x13
P_PROBLEM_INFO = 0x17
P_WILL_DELAY = 0x18
P_REASON_STRING = 0x1F
P_RECEIVE_MAX = 0x21
P_ALIAS_MAX = 0x22
P_ALIAS = 0x23
P_MAX_QOS = 0x24
P_RETAIN_AVAILABLE = 0x25
P_USER = 0x26
P_MAX_PACKET = 0x27


def v5(broker: Broker, client_id: str, present: bool = False, props: bytes = b"", **kw: object):
    """Connect at level 5 and check the default CONNACK."""
    client = broker.open()
    client.send(wire.connect(client_id, proto_level=V5, properties=props, **kw))
    assert client.take() == wire.connack_v5(sp=present)
    return client


def sub5(client, topic_filter: str, options: int = 0, mid: int = 1, props: bytes = b"") -> None:
    client.send(wire.subscribe(mid, [(topic_filter, options)], proto_ver=V5, properties=props))
    assert client.take() == wire.suback(mid, [options & 3], proto_ver=V5)


def pub5(topic, payload=b"", qos=0, mid=None, retain=False, props=b"", dup=False):
    return wire.publish(topic, payload, qos=qos, mid=mid, retain=retain, dup=dup, proto_ver=V5, properties=props)


# --- CONNECT / CONNACK -----------------------------------------------------------------


def test_connack_announces_the_server_limits_in_mosquittos_order():
    broker = Broker(MQTTSettings(max_qos=1, retain_available=False, max_packet_size=5000,
                                 max_keepalive=30, receive_maximum=7, max_topic_alias=3))
    client = broker.open()
    client.send(wire.connect("c", proto_level=V5, keepalive=60))
    assert client.take() == wire.connack(0, proto_ver=V5, properties=(
        wire.prop_u16(P_ALIAS_MAX, 3) + wire.prop_u16(P_SERVER_KEEP_ALIVE, 30)
        + wire.prop_byte(P_RETAIN_AVAILABLE, 0) + wire.prop_u32(P_MAX_PACKET, 5000)
        + wire.prop_u16(P_RECEIVE_MAX, 7) + wire.prop_byte(P_MAX_QOS, 1)))


def test_empty_client_id_is_assigned_and_returned():
    client = Broker().open()
    client.send(wire.connect("", proto_level=V5))
    reply = client.take()
    assert reply[:2] == b"\x20" + bytes((len(reply) - 2,))
    props = reply[5:]
    assert props[:3] == wire.prop_u16(P_ALIAS_MAX, 10)
    assert props[3] == P_ASSIGNED_ID
    size = int.from_bytes(props[4:6], "big")
    assigned = props[6 : 6 + size].decode()
    assert assigned.startswith("auto-") and len(assigned) == 41


def test_level_5_refused_when_not_accepted():
    client = Broker(MQTTSettings(protocol_levels=frozenset({3, 4}))).open()
    client.send(wire.connect("c", proto_level=V5))
    assert client.take() == wire.connack(0x84, proto_ver=V5)
    assert client.closed


def test_refusals_carry_the_v5_reason_code():
    broker = Broker()
    broker.hub.set_security(lambda client, password: False, None)
    client = broker.open()
    client.send(wire.connect("c", proto_level=V5))
    assert client.take() == wire.connack(0x87, proto_ver=V5)
    assert client.closed


@pytest.mark.parametrize("problem_info", [True, False])
def test_a_refusal_with_a_reason_string_and_user_properties(problem_info):
    from gateway.hub.api import Denied

    broker = Broker()
    broker.hub.set_security(
        lambda client, password: Denied(Reason.BANNED, "go away", (("k", "v"),)), None)
    client = broker.open()
    props = b"" if problem_info else wire.prop_byte(P_PROBLEM_INFO, 0)
    client.send(wire.connect("c", proto_level=V5, properties=props))
    expected = (wire.prop_str(P_REASON_STRING, "go away") if problem_info else b"") \
        + wire.prop_pair(P_USER, "k", "v")
    assert client.take() == wire.connack(0x8A, proto_ver=V5, properties=expected)


def test_will_payload_format_invalid_is_refused():
    client = Broker().open()
    client.send(wire.connect("c", proto_level=V5, will_topic="w", will_payload=b"\xff",
                             will_properties=wire.prop_byte(P_PAYLOAD_FORMAT, 1)))
    assert client.take() == wire.connack(0x99, proto_ver=V5)


@pytest.mark.parametrize("settings, will, code", [
    (MQTTSettings(retain_available=False), {"will_retain": True}, 0x9A),
    (MQTTSettings(max_qos=0), {"will_qos": 1}, 0x9B),
    (MQTTSettings(message_size_limit=3), {"will_payload": b"toolong"}, 0x95),
])
def test_will_limits_refuse_with_their_code(settings, will, code):
    client = Broker(settings).open()
    client.send(wire.connect("c", proto_level=V5, will_topic="w", **will))
    assert client.take() == wire.connack(code, proto_ver=V5)


# --- sessions and expiry ---------------------------------------------------------------


def test_session_expiry_keeps_the_session_and_queued_messages():
    broker = Broker()
    keep = wire.prop_u32(P_SESSION_EXPIRY, 60)
    sub = v5(broker, "s", props=keep, clean=False)
    sub5(sub, "t", 1)
    sub.send(wire.disconnect(proto_ver=V5))
    sub.lost()
    pub = v5(broker, "p")
    pub.send(pub5("t", b"while away", 1, mid=1))
    assert pub.take() == wire.puback(1, proto_ver=V5)
    broker.clock.advance(59)
    back = broker.open()
    back.send(wire.connect("s", proto_level=V5, properties=keep, clean=False))
    assert back.take() == wire.connack_v5(sp=True) + pub5("t", b"while away", 1, mid=1)


def test_session_ends_after_its_expiry():
    broker = Broker()
    keep = wire.prop_u32(P_SESSION_EXPIRY, 10)
    sub = v5(broker, "s", props=keep, clean=False)
    sub.send(wire.disconnect(proto_ver=V5))
    sub.lost()
    broker.clock.advance(11)
    assert broker.hub.session("s") is None
    v5(broker, "s", props=keep, clean=False)  # present is False


def test_disconnect_may_change_the_session_expiry():
    broker = Broker()
    sub = v5(broker, "s", props=wire.prop_u32(P_SESSION_EXPIRY, 60), clean=False)
    sub.send(wire.disconnect(proto_ver=V5, properties=wire.prop_u32(P_SESSION_EXPIRY, 0)))
    sub.lost()
    assert broker.hub.session("s") is None


def test_disconnect_setting_an_expiry_after_zero_is_a_protocol_error():
    broker = Broker()
    sub = v5(broker, "s")
    sub.send(wire.disconnect(proto_ver=V5, properties=wire.prop_u32(P_SESSION_EXPIRY, 60)))
    assert sub.take() == wire.disconnect(0x82, proto_ver=V5)
    assert sub.closed


def test_will_delay_and_disconnect_with_will():
    broker = Broker()
    watcher = v5(broker, "w")
    sub5(watcher, "will/#")
    dying = v5(broker, "d", props=wire.prop_u32(P_SESSION_EXPIRY, 60), clean=False,
               will_topic="will/d", will_payload=b"gone",
               will_properties=wire.prop_u32(P_WILL_DELAY, 5))
    dying.send(wire.disconnect(0x04, proto_ver=V5))  # disconnect with will message
    dying.lost()
    broker.clock.advance(4)
    assert watcher.take() == b""
    broker.clock.advance(1)
    assert watcher.take() == pub5("will/d", b"gone")


def test_message_expiry_is_forwarded_as_what_remains():
    broker = Broker()
    keep = wire.prop_u32(P_SESSION_EXPIRY, 600)
    sub = v5(broker, "s", props=keep, clean=False)
    sub5(sub, "t", 1)
    sub.send(wire.disconnect(proto_ver=V5))
    sub.lost()
    pub = v5(broker, "p")
    pub.send(pub5("t", b"short", 1, mid=1, props=wire.prop_u32(P_MESSAGE_EXPIRY, 5)))
    pub.send(pub5("t", b"long", 1, mid=2, props=wire.prop_u32(P_MESSAGE_EXPIRY, 100)))
    broker.clock.advance(10)
    back = broker.open()
    back.send(wire.connect("s", proto_level=V5, properties=keep, clean=False))
    # Packet ids are given when messages are queued (as Mosquitto does): "short" had 1.
    assert back.take() == wire.connack_v5(sp=True) + pub5(
        "t", b"long", 1, mid=2, props=wire.prop_u32(P_MESSAGE_EXPIRY, 90))


# --- publish ---------------------------------------------------------------------------


def test_end_to_end_properties_reach_v5_subscribers_and_not_v4_ones():
    broker = Broker()
    s5 = v5(broker, "s5")
    sub5(s5, "t")
    s4 = broker.subscriber("s4", "t")
    props = (wire.prop_byte(P_PAYLOAD_FORMAT, 1) + wire.prop_str(P_CONTENT_TYPE, "text/plain")
             + wire.prop_str(P_RESPONSE_TOPIC, "reply/here") + wire.prop_str(P_CORRELATION, b"\x01\x02")
             + wire.prop_pair(P_USER, "b", "2") + wire.prop_pair(P_USER, "a", "1"))
    pub = v5(broker, "p")
    pub.send(pub5("t", b"hello", props=props))
    assert s5.take() == pub5("t", b"hello", props=props)
    assert s4.take() == wire.publish("t", b"hello")


def test_publisher_properties_go_out_unchanged_beside_each_subscribers_own():
    """The publisher's property bytes are forwarded as they came, the topic alias
    left out, each subscriber's identifiers added, each QoS 1 delivery its own id."""
    broker = Broker()
    plain = v5(broker, "plain")
    sub5(plain, "t/#", 1)
    one = v5(broker, "one")
    sub5(one, "t/#", 1, props=wire.prop_varint(P_SUB_ID, 1))
    both = v5(broker, "both")
    sub5(both, "t/+", 1, props=wire.prop_varint(P_SUB_ID, 200))
    sub5(both, "t/x", 1, mid=2, props=wire.prop_varint(P_SUB_ID, 3))
    users = (wire.prop_pair(P_USER, "z", "\u00e9") + wire.prop_byte(P_PAYLOAD_FORMAT, 7)
             + wire.prop_pair(P_USER, "z", "again"))
    pub = v5(broker, "p")
    pub.send(pub5("t/x", b"m", 1, mid=9, props=wire.prop_u16(P_ALIAS, 1) + users))
    pub.send(pub5("", b"n", 0, props=users + wire.prop_u16(P_ALIAS, 1)))
    assert plain.take() == pub5("t/x", b"m", 1, mid=1, props=users) + pub5("t/x", b"n", props=users)
    ids1 = wire.prop_varint(P_SUB_ID, 1)
    assert one.take() == pub5("t/x", b"m", 1, mid=1, props=users + ids1) + pub5("t/x", b"n", props=users + ids1)
    got = both.take()
    ids = {wire.prop_varint(P_SUB_ID, 200) + wire.prop_varint(P_SUB_ID, 3),
           wire.prop_varint(P_SUB_ID, 3) + wire.prop_varint(P_SUB_ID, 200)}
    assert any(got == pub5("t/x", b"m", 1, mid=1, props=users + i) + pub5("t/x", b"n", props=users + i)
               for i in ids)


def test_a_repeated_property_block_with_a_topic_alias_keeps_working():
    """The codec hands the same properties for the same bytes: the alias set by the
    first PUBLISH resolves the second's empty topic, and each goes out as it should."""
    broker = Broker()
    sub = v5(broker, "sub")
    sub5(sub, "t/#")
    props = wire.prop_u16(P_ALIAS, 1) + wire.prop_pair(P_USER, "k", "v")
    pub = v5(broker, "p")
    pub.send(pub5("t/x", b"1", props=props) + pub5("", b"2", props=props) + pub5("t/y", b"3", props=props))
    user = wire.prop_pair(P_USER, "k", "v")
    assert sub.take() == pub5("t/x", b"1", props=user) + pub5("t/x", b"2", props=user) + pub5("t/y", b"3", props=user)


def test_a_subscription_identifier_sent_by_a_publisher_is_not_forwarded():
    """A client may not send one (MQTT-3.3.4-6); like Mosquitto, the broker drops it
    and keeps the rest, so a subscriber sees only the identifiers it chose."""
    broker = Broker()
    plain = v5(broker, "plain")
    sub5(plain, "t")
    own = v5(broker, "own")
    sub5(own, "t", props=wire.prop_varint(P_SUB_ID, 5))
    user = wire.prop_pair(P_USER, "k", "v")
    v5(broker, "p").send(pub5("t", b"m", props=wire.prop_varint(P_SUB_ID, 9) + user))
    assert plain.take() == pub5("t", b"m", props=user)
    assert own.take() == pub5("t", b"m", props=user + wire.prop_varint(P_SUB_ID, 5))


def test_puback_reason_codes():
    broker = Broker()
    broker.hub.set_security(allow_all_authenticate, lambda c, access, topic: not (access == WRITE and topic == "no"))
    pub = v5(broker, "p")
    pub.send(pub5("nobody", b"x", 1, mid=1))
    assert pub.take() == wire.puback(1, 0x10, proto_ver=V5)  # no matching subscribers
    pub.send(pub5("no", b"x", 1, mid=2))
    assert pub.take() == wire.puback(2, 0x87, proto_ver=V5)  # not authorized
    pub.send(pub5("no", b"x", 2, mid=3))
    assert pub.take() == wire.pubrec(3, 0x87, proto_ver=V5)
    pub.send(pub5("t", b"\xff", 1, mid=4, props=wire.prop_byte(P_PAYLOAD_FORMAT, 1)))
    assert pub.take() == wire.puback(4, 0x99, proto_ver=V5)  # payload format invalid


def test_payload_over_message_size_limit_gets_0x95():
    broker = Broker(MQTTSettings(message_size_limit=2))
    pub = v5(broker, "p")
    pub.send(pub5("t", b"xyz", 1, mid=1))
    assert pub.take() == wire.puback(1, 0x95, proto_ver=V5)
    assert not pub.closed


def test_pubrel_for_an_unknown_id_is_completed():
    """As Mosquitto: a PUBREL repeated after a reconnect is normal, so PUBCOMP 0."""
    pub = v5(Broker(), "p")
    pub.send(wire.pubrel(9, proto_ver=V5))
    assert pub.take() == wire.pubcomp(9, proto_ver=V5)


def test_connack_larger_than_the_client_maximum_packet_size_closes():
    client = Broker().open()
    client.send(wire.connect("c", proto_level=V5, properties=wire.prop_u32(P_MAX_PACKET, 2)))
    assert client.take() == b""
    assert client.closed


@pytest.mark.parametrize("packet, code", [
    (pub5("t", b"x", 2, mid=1), 0x9B),                  # above max_qos
    (pub5("t", b"x", retain=True), 0x9A),               # retain not available
    (pub5("t", b"x", props=wire.prop_u16(P_ALIAS, 0)), 0x94),    # alias 0
    (pub5("t", b"x", props=wire.prop_u16(P_ALIAS, 11)), 0x94),   # above the maximum
    (pub5("", b"x", props=wire.prop_u16(P_ALIAS, 1)), 0x82),     # never defined
    (pub5("t", b"x", props=b"\x2a\x01"), 0x81),                  # property not for PUBLISH
    (pub5("t", b"x", props=b"\x7f\x01"), 0x81),                  # unknown property
    (pub5("t", b"x", props=wire.prop_u16(P_ALIAS, 1) * 2), 0x81),  # given twice
    (wire.subscribe(1, [("a/#/b", 0)], proto_ver=V5), 0x81),
    (wire.subscribe(1, [("$share/g/t", 0x04)], proto_ver=V5), 0x82),   # no local on a share
])
def test_violations_in_publish_and_subscribe_get_a_disconnect_with_the_reason(packet, code):
    broker = Broker(MQTTSettings(max_qos=1, retain_available=False))
    client = broker.open()
    client.send(wire.connect("c", proto_level=V5))
    client.take()
    client.send(packet)
    assert client.take() == wire.disconnect(code, proto_ver=V5)
    assert client.closed


def test_receive_maximum_exceeded_disconnects():
    broker = Broker(MQTTSettings(receive_maximum=2))
    client = broker.open()
    client.send(wire.connect("c", proto_level=V5))
    client.take()
    client.send(pub5("t", b"1", 2, mid=1), pub5("t", b"2", 2, mid=2))
    assert client.take() == wire.pubrec(1, proto_ver=V5) + wire.pubrec(2, proto_ver=V5)
    client.send(pub5("t", b"3", 2, mid=3))
    assert client.take() == wire.disconnect(0x93, proto_ver=V5)
    assert client.closed


def test_client_topic_aliases():
    broker = Broker()
    sub = v5(broker, "s")
    sub5(sub, "a/b")
    pub = v5(broker, "p")
    pub.send(pub5("a/b", b"1", props=wire.prop_u16(P_ALIAS, 3)))
    pub.send(pub5("", b"2", props=wire.prop_u16(P_ALIAS, 3)))
    assert sub.take() == pub5("a/b", b"1") + pub5("a/b", b"2")


def test_server_topic_aliases_towards_a_client_that_allows_them():
    broker = Broker()
    sub = broker.open()
    sub.send(wire.connect("s", proto_level=V5, properties=wire.prop_u16(P_ALIAS_MAX, 1)))
    sub.take()
    sub5(sub, "#")
    pub = v5(broker, "p")
    for topic in ("x/1", "x/1", "x/2", "x/2"):
        pub.send(pub5(topic, b"m"))
    alias = wire.prop_u16(P_ALIAS, 1)
    assert sub.take() == (pub5("x/1", b"m", props=alias) + pub5("", b"m", props=alias)
                          + pub5("x/2", b"m", props=alias) + pub5("", b"m", props=alias))


def test_client_maximum_packet_size_drops_larger_deliveries():
    broker = Broker()
    sub = broker.open()
    sub.send(wire.connect("s", proto_level=V5, properties=wire.prop_u32(P_MAX_PACKET, 20)))
    sub.take()
    sub5(sub, "t", 1)
    pub = v5(broker, "p")
    pub.send(pub5("t", b"x" * 30, 1, mid=1), pub5("t", b"ok", 1, mid=2))
    assert sub.take() == pub5("t", b"ok", 1, mid=2)
    assert broker.hub.stats.dropped == 1
    assert list(broker.hub.session("s").inflight) == [2]


def test_client_receive_maximum_limits_what_is_in_flight():
    broker = Broker()
    sub = broker.open()
    sub.send(wire.connect("s", proto_level=V5, properties=wire.prop_u16(P_RECEIVE_MAX, 1)))
    sub.take()
    sub5(sub, "t", 1)
    pub = v5(broker, "p")
    pub.send(pub5("t", b"1", 1, mid=1), pub5("t", b"2", 1, mid=2))
    assert sub.take() == pub5("t", b"1", 1, mid=1)
    sub.send(wire.puback(1, proto_ver=V5))
    assert sub.take() == pub5("t", b"2", 1, mid=2)


def test_pubrec_with_an_error_ends_the_flow():
    broker = Broker()
    sub = v5(broker, "s")
    sub5(sub, "t", 2)
    pub = v5(broker, "p")
    pub.send(pub5("t", b"m", 2, mid=1), wire.pubrel(1, proto_ver=V5))
    assert sub.take() == pub5("t", b"m", 2, mid=1)
    sub.send(wire.pubrec(1, 0x80, proto_ver=V5))
    assert sub.take() == b""
    assert broker.hub.session("s").inflight == {}


# --- subscriptions ---------------------------------------------------------------------


def test_no_local_and_retain_as_published():
    broker = Broker()
    me = v5(broker, "me")
    sub5(me, "t", 0x04 | 0x08 | 1)   # no local, retain as published, QoS 1
    other = v5(broker, "other")
    sub5(other, "t", 0x08)
    me.send(pub5("t", b"mine", retain=True))
    assert me.take() == b""
    assert other.take() == pub5("t", b"mine", retain=True)


@pytest.mark.parametrize("handling, twice", [(0, True), (1, False), (2, False)])
def test_retain_handling(handling, twice):
    broker = Broker()
    pub = v5(broker, "p")
    pub.send(pub5("r", b"kept", retain=True))
    sub = v5(broker, "s")
    for mid in (1, 2):
        sub.send(wire.subscribe(mid, [("r", handling << 4)], proto_ver=V5))
        got = sub.take()
        assert got.startswith(wire.suback(mid, [0], proto_ver=V5))
        sent = got != wire.suback(mid, [0], proto_ver=V5)
        assert sent == (handling == 0 or (handling == 1 and mid == 1))
    assert twice == (handling == 0)


def test_subscription_identifiers_are_delivered():
    broker = Broker()
    sub = v5(broker, "s")
    sub5(sub, "a/+", props=wire.prop_varint(P_SUB_ID, 7), mid=1)
    sub5(sub, "a/#", props=wire.prop_varint(P_SUB_ID, 300), mid=2)
    pub = v5(broker, "p")
    pub.send(pub5("a/b", b"m"))
    got = sub.take()
    ids = {got.endswith(pub5("a/b", b"m", props=wire.prop_varint(P_SUB_ID, 7) + wire.prop_varint(P_SUB_ID, 300))),
           got.endswith(pub5("a/b", b"m", props=wire.prop_varint(P_SUB_ID, 300) + wire.prop_varint(P_SUB_ID, 7)))}
    assert True in ids


def test_shared_subscription_between_v4_and_v5_clients():
    broker = Broker()
    a = v5(broker, "a")
    sub5(a, "$share/g/jobs", 1)
    b = broker.subscriber("b", "$share/g/jobs", 1)
    pub = v5(broker, "p")
    for i in range(4):
        pub.send(pub5("jobs", b"%d" % i, 1, mid=i + 1))
    got_a, got_b = a.take(), b.take()
    assert got_a.count(b"jobs") == 2 and got_b.count(b"jobs") == 2


def test_suback_codes_for_refusals_and_unsuback_codes():
    broker = Broker()
    broker.hub.set_security(allow_all_authenticate,
                            lambda c, access, topic: not (access == "subscribe" and topic == "secret"))
    client = v5(broker, "c")
    client.send(wire.subscribe(1, [("open", 1), ("secret", 1)], proto_ver=V5))
    assert client.take() == wire.suback(1, [1, 0x80], proto_ver=V5)
    client.send(wire.unsubscribe(2, ["open", "never"], proto_ver=V5))
    assert client.take() == wire.unsuback(2, [0, 0x11], proto_ver=V5)


def test_v4_and_v5_subscribers_get_their_own_encoding_of_one_message():
    broker = Broker()
    s5 = v5(broker, "s5")
    sub5(s5, "t", 1)
    s4 = broker.subscriber("s4", "t", qos=1)
    pub = broker.connect("p")
    pub.send(wire.publish("t", b"same", qos=1, mid=1))
    assert s4.take() == wire.publish("t", b"same", qos=1, mid=1)
    assert s5.take() == pub5("t", b"same", 1, mid=1)


# --- server-initiated DISCONNECT -------------------------------------------------------


def test_keepalive_timeout_sends_0x8d():
    broker = Broker()
    client = broker.open()
    client.send(wire.connect("c", proto_level=V5, keepalive=2))
    client.take()
    broker.clock.advance(4)
    assert client.take() == wire.disconnect(0x8D, proto_ver=V5)
    assert client.closed


def test_takeover_sends_0x8e():
    broker = Broker()
    first = v5(broker, "dup")
    v5(broker, "dup")
    assert first.take() == wire.disconnect(0x8E, proto_ver=V5)
    assert first.closed


def test_shutdown_sends_0x8b():
    broker = Broker()
    client = v5(broker, "c")
    client.protocol.channel.shutdown()
    assert client.take() == wire.disconnect(0x8B, proto_ver=V5)
    assert client.closed


def test_server_disconnect_lingers_so_the_client_can_read_it():
    """After DISCONNECT the socket's write side closes at once; reads are drained for a
    moment before the full close, so the client's own packets meet no reset."""
    broker = Broker()
    client = v5(broker, "c")
    client.protocol.channel.shutdown()
    assert client.transport.write_closed and not client.transport.disconnecting
    client.send(wire.puback(1, proto_ver=V5))   # ignored, no error
    assert client.take() == wire.disconnect(0x8B, proto_ver=V5)
    broker.clock.advance(3)
    assert client.transport.disconnecting


def test_level_4_clients_are_closed_without_disconnect():
    broker = Broker()
    first = broker.connect("dup")
    broker.connect("dup")
    assert first.take() == b""
    assert first.closed
