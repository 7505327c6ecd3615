"""MQTTChannel behaviour at levels 3 and 4, driven through the transport with raw bytes
(``tests.mqtt.helpers``): packets go in as bytes from ``tests.wire`` and what the
broker writes back is compared with bytes from there too, so the codec is never
checked against itself."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred

from gateway.hub.auth import Policies, Policy, Security
from gateway.hub.hub import Hub, HubSettings
from gateway.hub.sessions import Limits
from gateway.mqtt.channel import MQTTSettings
from gateway.security.passwords import PasswordFile, make_hash, parse_hash
from tests import wire
from tests.mqtt.helpers import Broker


# --- CONNECT / CONNACK ------------------------------------------------------------


@pytest.mark.parametrize("level", [3, 4])
def test_connect_is_accepted_at_levels_3_and_4(level):
    broker = Broker()
    client = broker.open()
    client.send(wire.connect("c1", proto_level=level))
    assert client.take() == wire.connack(0)
    assert not client.closed
    assert broker.hub.session("c1").endpoint is client.protocol.channel


def test_unsupported_protocol_level_gets_connack_1_and_close():
    client = Broker().open()
    client.send(wire.connect("c1", proto_level=6))
    assert client.take() == wire.connack(0x01)
    assert client.closed


def test_level_5_connect_is_answered_in_a_form_a_level_5_client_can_read():
    client = Broker().open()
    client.send(wire.connect("v5", proto_level=5))
    reply = client.take()
    assert reply == wire.connack_v5()
    assert not client.closed


@pytest.mark.parametrize(
    "settings, connect_kw",
    [
        pytest.param(MQTTSettings(), dict(clean=False), id="empty-id-persistent"),
        pytest.param(MQTTSettings(), dict(proto_level=3), id="empty-id-level-3"),
        pytest.param(
            MQTTSettings(allow_zero_length_clientid=False), dict(), id="empty-id-not-allowed"
        ),
    ],
)
def test_zero_length_client_id_refused_with_connack_2(settings, connect_kw):
    broker = Broker(settings)
    client = broker.open()
    client.send(wire.connect("", **connect_kw))
    assert client.take() == wire.connack(0x02)
    assert client.closed
    assert broker.hub.sessions == {}


def test_client_id_over_23_characters_refused_at_level_3():
    client = Broker().open()
    client.send(wire.connect("x" * 24, proto_level=3))
    assert client.take() == wire.connack(0x02)
    assert client.closed


def test_client_id_of_23_characters_accepted_at_level_3_and_longer_at_level_4():
    broker = Broker()
    broker.connect("x" * 23, proto_level=3)
    broker.connect("y" * 64, proto_level=4)


def test_keepalive_above_max_keepalive_refused_with_connack_2():
    broker = Broker(MQTTSettings(max_keepalive=60))
    client = broker.open()
    client.send(wire.connect("c1", keepalive=61))
    assert client.take() == wire.connack(0x02)
    assert client.closed
    broker.connect("c2", keepalive=60)


def test_zero_length_client_id_gets_an_assigned_id_with_the_prefix():
    broker = Broker(MQTTSettings(auto_id_prefix="gw-"))
    client = broker.connect("")
    (client_id,) = broker.hub.sessions
    assert client_id.startswith("gw-") and len(client_id) > len("gw-")
    assert client.protocol.channel.client.client_id == client_id


def test_anonymous_refused_with_connack_5_when_security_requires_a_username():
    broker = Broker()
    broker.hub.set_security(lambda client, password: client.username is not None, None)
    anonymous = broker.open()
    anonymous.send(wire.connect("anon"))
    assert anonymous.take() == wire.connack(0x05)
    assert anonymous.closed
    assert broker.hub.session("anon") is None
    broker.connect("named", username="alice", password="pw")


def test_deferred_authentication_queues_packets_until_connack():
    broker = Broker()
    pending = Deferred()
    broker.hub.set_security(lambda client, password: pending, None)
    client = broker.open()
    client.send(
        wire.connect("slow") + wire.subscribe(1, [("a/b", 1)]),
        wire.publish("a/b", b"hi", qos=1, mid=9),
        wire.pingreq(),
    )
    assert client.take() == b""
    assert not client.closed
    pending.callback(True)
    assert client.take() == (
        wire.connack(0)
        + wire.suback(1, [1])
        + wire.publish("a/b", b"hi", qos=1, mid=1)
        + wire.puback(9)
        + wire.pingresp()
    )
    assert not client.closed


def test_deferred_authentication_refusal_gets_connack_5():
    broker = Broker()
    pending = Deferred()
    broker.hub.set_security(lambda client, password: pending, None)
    client = broker.open()
    client.send(wire.connect("slow"), wire.pingreq())
    pending.callback(False)
    assert client.take() == wire.connack(0x05)
    assert client.closed


# --- PUBLISH in and out -----------------------------------------------------------


def test_inbound_qos0_publish_is_not_acknowledged_and_is_delivered():
    broker = Broker()
    sub = broker.subscriber("sub", "t/#")
    pub = broker.connect("pub")
    pub.send(wire.publish("t/1", b"zero"))
    assert pub.take() == b""
    assert sub.take() == wire.publish("t/1", b"zero")


def test_inbound_qos1_publish_gets_puback():
    broker = Broker()
    sub = broker.subscriber("sub", "t/#", qos=1)
    pub = broker.connect("pub")
    pub.send(wire.publish("t/1", b"one", qos=1, mid=7))
    assert pub.take() == wire.puback(7)
    assert sub.take() == wire.publish("t/1", b"one", qos=1, mid=1)


def test_inbound_qos2_publish_pubrec_then_pubrel_pubcomp():
    """As Mosquitto: the message is held at PUBREC and published at PUBREL."""
    broker = Broker()
    sub = broker.subscriber("sub", "t/#", qos=2)
    pub = broker.connect("pub")
    pub.send(wire.publish("t/1", b"two", qos=2, mid=300))
    assert pub.take() == wire.pubrec(300)
    assert sub.take() == b""
    pub.send(wire.pubrel(300))
    assert pub.take() == wire.pubcomp(300)
    assert sub.take() == wire.publish("t/1", b"two", qos=2, mid=1)
    assert broker.hub.session("pub").inbound_qos2 == {}


def test_duplicate_inbound_qos2_before_pubrel_is_delivered_once():
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=0)
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"once", qos=2, mid=5))
    pub.send(wire.publish("t", b"once", qos=2, mid=5, dup=True))
    pub.send(wire.publish("t", b"once", qos=2, mid=5, dup=True))
    assert pub.take() == wire.pubrec(5) * 3
    pub.send(wire.pubrel(5))
    assert pub.take() == wire.pubcomp(5)
    assert sub.take() == wire.publish("t", b"once")
    pub.send(wire.pubrel(5))  # a repeated PUBREL: completed again, nothing published
    assert pub.take() == wire.pubcomp(5)
    assert sub.take() == b""
    # After PUBREL the packet id is free: the same id is a new message.
    pub.send(wire.publish("t", b"again", qos=2, mid=5))
    assert pub.take() == wire.pubrec(5)
    pub.send(wire.pubrel(5))
    assert pub.take() == wire.pubcomp(5)
    assert sub.take() == wire.publish("t", b"again")


def test_reused_qos2_id_for_another_message_is_a_new_message():
    """As Mosquitto: the same id with other content before the PUBREL replaces the
    first message."""
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=0)
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"first", qos=2, mid=5))
    pub.send(wire.publish("t", b"second", qos=2, mid=5))
    assert pub.take() == wire.pubrec(5) * 2
    pub.send(wire.pubrel(5))
    assert sub.take() == wire.publish("t", b"second")


def test_outbound_qos1_is_finished_by_puback():
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=1)
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", qos=1, mid=1))
    assert sub.take() == wire.publish("t", b"m", qos=1, mid=1)
    assert list(broker.hub.session("sub").inflight) == [1]
    sub.send(wire.puback(1))
    assert sub.take() == b""
    assert broker.hub.session("sub").inflight == {}


def test_outbound_qos2_pubrec_pubrel_pubcomp():
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=2)
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", qos=2, mid=1))
    pub.send(wire.pubrel(1))  # published at PUBREL
    assert sub.take() == wire.publish("t", b"m", qos=2, mid=1)
    sub.send(wire.pubrec(1))
    assert sub.take() == wire.pubrel(1)
    assert list(broker.hub.session("sub").inflight) == [1]
    sub.send(wire.pubcomp(1))
    assert sub.take() == b""
    assert broker.hub.session("sub").inflight == {}


def test_delivery_is_downgraded_to_the_subscription_qos():
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=0)
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", qos=2, mid=1))
    pub.send(wire.pubrel(1))  # published at PUBREL
    assert sub.take() == wire.publish("t", b"m")


def test_live_delivery_clears_the_retain_flag():
    broker = Broker()
    sub = broker.subscriber("sub", "t")
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", retain=True))
    assert sub.take() == wire.publish("t", b"m", retain=False)


def test_inflight_window_holds_back_qos1_until_puback():
    broker = Broker(hub=Hub(HubSettings(limits=Limits(max_inflight=2))))
    sub = broker.subscriber("sub", "t", qos=1)
    pub = broker.connect("pub")
    for mid in (1, 2, 3):
        pub.send(wire.publish("t", b"m%d" % mid, qos=1, mid=mid))
    assert pub.take() == wire.puback(1) + wire.puback(2) + wire.puback(3)
    assert sub.take() == (
        wire.publish("t", b"m1", qos=1, mid=1) + wire.publish("t", b"m2", qos=1, mid=2)
    )
    assert len(broker.hub.session("sub").queue) == 1
    sub.send(wire.puback(1))
    assert sub.take() == wire.publish("t", b"m3", qos=1, mid=3)
    sub.send(wire.puback(2), wire.puback(3))
    assert sub.take() == b""
    assert broker.hub.session("sub").inflight == {}


def test_qos0_fan_out_writes_the_same_bytes_object_to_every_subscriber():
    broker = Broker()
    subs = [broker.subscriber(f"s{i}", "fan/#") for i in range(3)]
    pub = broker.connect("pub")
    pub.send(wire.publish("fan/out", b"payload"))
    writes = [s.transport.writes for s in subs]
    assert all(len(w) == 1 for w in writes)
    first = writes[0][0]
    assert first == wire.publish("fan/out", b"payload")
    assert all(w[0] is first for w in writes)


# --- keepalive and the connect timeout ----------------------------------------------


def test_keepalive_closes_after_one_and_a_half_periods_and_publishes_the_will():
    broker = Broker()
    watcher = broker.subscriber("watcher", "will/#")
    client = broker.connect("k", keepalive=10, will_topic="will/k", will_payload=b"gone")
    broker.clock.advance(14)
    assert not client.closed
    broker.clock.advance(1)
    assert client.closed
    client.lost()
    assert watcher.take() == wire.publish("will/k", b"gone")
    assert broker.hub.session("k") is None


def test_keepalive_is_reset_by_activity():
    broker = Broker()
    client = broker.connect("k", keepalive=10)
    broker.clock.advance(10)
    client.send(wire.pingreq())
    assert client.take() == wire.pingresp()
    broker.clock.advance(14)  # 24 s in, 14 s since the PINGREQ
    assert not client.closed
    broker.clock.advance(1)
    assert client.closed


def test_keepalive_zero_never_expires():
    broker = Broker()
    client = broker.connect("k", keepalive=0)
    broker.clock.advance(100_000)
    assert not client.closed


def test_no_connect_within_connect_timeout_closes():
    broker = Broker()
    client = broker.open()
    broker.clock.advance(9)
    assert not client.closed
    broker.clock.advance(1)
    assert client.closed
    assert client.take() == b""


def test_connect_timeout_does_not_apply_once_connected():
    broker = Broker()
    client = broker.connect("c1", keepalive=0)
    broker.clock.advance(60)
    assert not client.closed


# --- session takeover, wills, DISCONNECT --------------------------------------------


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "persistent"])
def test_takeover_closes_the_first_connection_and_keeps_the_second(clean):
    broker = Broker()
    watcher = broker.subscriber("watcher", "will/#")
    first = broker.connect("dev", clean=clean, will_topic="will/dev", will_payload=b"first gone")
    # A persistent session is handed over whole, so the late connectionLost of
    # the first connection would find the very Session the second one now uses.
    second = broker.connect("dev", clean=clean, present=not clean)
    assert first.closed
    # As Mosquitto: a persistent session taken over by a persistent connection goes
    # on, so its will is not published.
    assert watcher.take() == (wire.publish("will/dev", b"first gone") if clean else b"")
    first.lost()
    session = broker.hub.session("dev")
    assert session is not None
    assert session.endpoint is second.protocol.channel
    second.send(wire.subscribe(1, [("t", 0)]))
    assert second.take() == wire.suback(1, [0])
    watcher.send(wire.publish("t", b"still here"))
    assert second.take() == wire.publish("t", b"still here")
    assert first.take() == b""
    assert watcher.take() == b""  # the first connection's loss published nothing more


def test_clean_disconnect_does_not_publish_the_will():
    broker = Broker()
    watcher = broker.subscriber("watcher", "will/#")
    client = broker.connect("c1", will_topic="will/c1", will_payload=b"gone")
    client.send(wire.disconnect())
    assert client.closed
    client.lost()
    assert watcher.take() == b""
    assert broker.hub.session("c1") is None


def test_connection_lost_without_disconnect_publishes_the_will():
    broker = Broker()
    watcher = broker.subscriber("watcher", "will/#")
    client = broker.connect("c1", will_topic="will/c1", will_payload=b"gone", will_qos=1)
    client.lost()
    assert watcher.take() == wire.publish("will/c1", b"gone")


# --- protocol violations close the connection ---------------------------------------


def test_second_connect_closes():
    broker = Broker()
    client = broker.connect("c1")
    client.send(wire.connect("c1"))
    assert client.closed
    assert client.take() == b""


def test_protocol_error_publishes_the_will():
    broker = Broker()
    watcher = broker.subscriber("watcher", "will/#")
    client = broker.connect("c1", will_topic="will/c1", will_payload=b"gone")
    client.send(wire.connect("c1"))
    assert client.closed
    client.lost()
    assert watcher.take() == wire.publish("will/c1", b"gone")


def test_first_packet_not_connect_closes():
    client = Broker().open()
    client.send(wire.pingreq())
    assert client.closed
    assert client.take() == b""


def test_retained_publish_closes_when_retain_is_not_available():
    broker = Broker(MQTTSettings(retain_available=False))
    sub = broker.subscriber("sub", "t")
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"keep", retain=True))
    assert pub.closed
    assert sub.take() == b""
    assert broker.hub.retained_message("t") is None


def test_publish_above_message_size_limit_is_dropped_and_acknowledged():
    """As Mosquitto: the message goes nowhere, QoS 1/2 is still acknowledged, and the
    connection stays."""
    broker = Broker(MQTTSettings(message_size_limit=4))
    sub = broker.subscriber("sub", "t")
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"1234"))
    assert sub.take() == wire.publish("t", b"1234")
    pub.send(wire.publish("t", b"12345", qos=1, mid=1))
    assert pub.take() == wire.puback(1)
    pub.send(wire.publish("t", b"12345", qos=2, mid=2))
    assert pub.take() == wire.pubrec(2)
    pub.send(wire.publish("t", b"12345"))
    assert not pub.closed
    assert sub.take() == b""
    assert broker.hub.stats.dropped == 3


# --- SUBSCRIBE / UNSUBSCRIBE / PINGREQ ----------------------------------------------


def test_subscribe_to_a_denied_filter_gets_0x80():
    broker = Broker()
    broker.hub.set_security(
        lambda client, password: True,
        lambda client, access, topic: not topic.startswith("secret"),
    )
    client = broker.connect("c1")
    client.send(wire.subscribe(3, [("secret/#", 1), ("open/#", 2)]))
    assert client.take() == wire.suback(3, [0x80, 2])
    assert list(broker.hub.session("c1").subscriptions) == ["open/#"]


def test_retained_message_is_sent_after_suback_with_the_retain_flag():
    broker = Broker()
    pub = broker.connect("pub")
    pub.send(wire.publish("r/t", b"kept", qos=1, mid=1, retain=True))
    assert pub.take() == wire.puback(1)
    client = broker.connect("sub")
    client.send(wire.subscribe(1, [("r/#", 1)]))
    assert client.take() == wire.suback(1, [1]) + wire.publish(
        "r/t", b"kept", qos=1, mid=1, retain=True
    )


def test_retained_message_qos_is_limited_by_the_granted_qos():
    broker = Broker()
    pub = broker.connect("pub")
    pub.send(wire.publish("r/t", b"kept", qos=1, mid=1, retain=True))
    client = broker.connect("sub")
    client.send(wire.subscribe(1, [("r/t", 0)]))
    assert client.take() == wire.suback(1, [0]) + wire.publish("r/t", b"kept", retain=True)


def test_unsubscribe_gets_unsuback_and_stops_deliveries():
    broker = Broker()
    sub = broker.subscriber("sub", "t")
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"before"))
    assert sub.take() == wire.publish("t", b"before")
    sub.send(wire.unsubscribe(2, ["t"]))
    assert sub.take() == wire.unsuback(2)
    pub.send(wire.publish("t", b"after"))
    assert sub.take() == b""


def test_pingreq_gets_pingresp():
    client = Broker().connect("c1")
    client.send(wire.pingreq())
    assert client.take() == wire.pingresp()
    assert not client.closed


def test_connection_lost_while_authenticating_creates_no_session():
    broker = Broker()
    pending = Deferred()
    broker.hub.set_security(lambda client, password: pending, None)
    client = broker.open()
    client.send(wire.connect("slow"))
    client.lost()
    pending.callback(True)
    assert client.take() == b""
    assert broker.hub.session("slow") is None
    assert broker.hub.stats.clients_connected == 0


def test_authentication_still_pending_at_connect_timeout_closes():
    broker = Broker()
    pending = Deferred()
    broker.hub.set_security(lambda client, password: pending, None)
    client = broker.open()
    client.send(wire.connect("slow"))
    broker.clock.advance(10)
    assert client.closed
    pending.callback(True)
    assert client.take() == b""
    assert broker.hub.session("slow") is None


# --- persistent sessions --------------------------------------------------------------


def test_unacknowledged_qos1_is_resent_with_dup_on_reconnect():
    broker = Broker()
    sub = broker.connect("sub", clean=False)
    sub.send(wire.subscribe(1, [("t", 1)]))
    assert sub.take() == wire.suback(1, [1])
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", qos=1, mid=1))
    assert sub.take() == wire.publish("t", b"m", qos=1, mid=1)
    sub.lost()
    pub.send(wire.publish("t", b"queued", qos=1, mid=2))
    again = broker.open()
    again.send(wire.connect("sub", clean=False))
    assert again.take() == (
        wire.connack(0, sp=True)
        + wire.publish("t", b"m", qos=1, mid=1, dup=True)
        + wire.publish("t", b"queued", qos=1, mid=2)
    )


def test_pubrel_is_resent_on_reconnect_after_pubrec():
    broker = Broker()
    sub = broker.connect("sub", clean=False)
    sub.send(wire.subscribe(1, [("t", 2)]))
    sub.take()
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", qos=2, mid=1))
    pub.send(wire.pubrel(1))  # published at PUBREL
    assert sub.take() == wire.publish("t", b"m", qos=2, mid=1)
    sub.send(wire.pubrec(1))
    assert sub.take() == wire.pubrel(1)
    sub.lost()
    again = broker.open()
    again.send(wire.connect("sub", clean=False))
    assert again.take() == wire.connack(0, sp=True) + wire.pubrel(1)
    again.send(wire.pubcomp(1))
    assert broker.hub.session("sub").inflight == {}


# --- Mosquitto's semantics at 3.1 and 3.1.1 ------------------------------------------


def test_mqtt31_connack_has_no_session_present_flag():
    broker = Broker()
    first = broker.open()
    first.send(wire.connect("p31", proto_level=3, clean=False))
    assert first.take() == wire.connack(0)
    first.send(wire.disconnect())
    first.lost()
    again = broker.open()
    again.send(wire.connect("p31", proto_level=3, clean=False))
    assert again.take() == wire.connack(0)          # no flag, although the session is there
    again4 = broker.open()
    again4.send(wire.connect("p31", clean=False))
    assert again4.take() == wire.connack(0, sp=True)


@pytest.mark.parametrize("qos, wrong", [
    (1, wire.pubrec(1)), (1, wire.pubcomp(1)), (2, wire.puback(1)), (2, wire.pubcomp(1)),
], ids=["qos1-pubrec", "qos1-pubcomp", "qos2-puback", "qos2-pubcomp-before-pubrec"])
def test_wrong_acknowledgement_type_closes_the_connection(qos, wrong):
    """MQTT-4.8.0-1, as Mosquitto: the connection closes (no DISCONNECT, even at 5)."""
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=qos)
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", qos=qos, mid=9))
    if qos == 2:
        pub.send(wire.pubrel(9))
    assert sub.take() == wire.publish("t", b"m", qos=qos, mid=1)
    sub.send(wrong)
    assert sub.closed
    assert sub.take() == b""


def test_puback_after_pubrec_for_a_qos2_message_closes():
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=2)
    pub = broker.connect("pub")
    pub.send(wire.publish("t", b"m", qos=2, mid=9), wire.pubrel(9))
    sub.take()
    sub.send(wire.pubrec(1))
    assert sub.take() == wire.pubrel(1)
    sub.send(wire.puback(1))
    assert sub.closed


def test_acknowledgement_of_an_unknown_id_is_ignored():
    broker = Broker()
    sub = broker.subscriber("sub", "t", qos=1)
    sub.send(wire.puback(77), wire.pubcomp(78))
    assert not sub.closed


def test_max_qos_downgrades_subscriptions_and_refuses_higher_publishes():
    broker = Broker(MQTTSettings(max_qos=1))
    client = broker.connect("c")
    client.send(wire.subscribe(1, [("t", 2)]))
    assert client.take() == wire.suback(1, [1])
    client.send(wire.publish("t", b"x", qos=2, mid=3))
    assert client.closed


def test_mount_point_prefixes_what_clients_send_and_strips_what_they_receive():
    broker = Broker(MQTTSettings(mount_point="site-a/"))
    other = Broker(hub=broker.hub)          # a listener without a mount point, same hub
    watcher = other.subscriber("w", "#")
    client = broker.connect("c", will_topic="status", will_payload=b"gone")
    client.send(wire.subscribe(1, [("cmd/#", 0)]))
    assert client.take() == wire.suback(1, [0])
    client.send(wire.publish("temp", b"21"))
    assert watcher.take() == wire.publish("site-a/temp", b"21")
    watcher.send(wire.publish("site-a/cmd/reboot", b"now"))
    assert client.take() == wire.publish("cmd/reboot", b"now")
    watcher.send(wire.publish("cmd/reboot", b"not for site a"))
    assert client.take() == b""
    watcher.take()                          # its own messages, back through "#"
    client.lost()
    assert watcher.take() == wire.publish("site-a/status", b"gone")


def test_empty_password_counts_as_none():
    """Mosquitto's reading: a password-file entry for "" does not let "" in."""
    broker = Broker()
    passwords = PasswordFile({"nopw": parse_hash(make_hash(b""))})
    Security(Policies(False, Policy(False, passwords)), broker.clock).install(broker.hub)
    client = broker.open()
    client.send(wire.connect("c", username="nopw", password=""))
    assert client.take() == wire.connack(5)
