"""The MQTT-SN channel driven with raw datagrams on a real Hub, a recording network and a Clock.

Bytes in come from ``tests.mqttsn.wire`` and the gateway's answers are compared with
bytes from there too. ``Rig.observe()`` attaches a hub endpoint that plays the MQTT
side; timers run on ``task.Clock``.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred

from gateway.hub.api import ClientInfo, Denied, Reason
from gateway.hub.sessions import Limits
from gateway.mqttsn.channel import ACTIVE
from tests.mqttsn import wire as w
from tests.mqttsn.helpers import Rig, connected

PRE = {10: "sensors/predef", 11: "actuators/valve"}


@pytest.fixture
def rig() -> Rig:
    return Rig(predefined=PRE)


# --- CONNECT and the will -------------------------------------------------------------------


def test_connect_is_acknowledged_and_counted(rig: Rig) -> None:
    c = connected(rig)
    assert c.channel.state == ACTIVE
    assert rig.hub.session("s1").endpoint is c.channel
    assert rig.ctx.counters.connected == 1
    assert rig.hub.stats.clients_connected == 1


def test_will_handshake_then_will_published_when_keepalive_expires(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    c = rig.client()
    assert c.ask(w.connect("s1", 10, w.CLEAN | w.WILL)) == [w.willtopicreq()]
    assert c.ask(w.willtopic("dead/s1", 1, True)) == [w.willmsgreq()]
    assert c.ask(w.willmsg(b"gone")) == [w.connack()]
    rig.advance(14.9)
    assert obs.got == []
    rig.advance(0.2)
    assert obs.got == [("dead/s1", b"gone", 1, False)]  # retain is not passed on to subscribers
    assert rig.hub.retained_message("dead/s1").payload == b"gone"
    assert c.channel is None
    assert rig.ctx.counters.clients_lost == 1
    assert rig.ctx.counters.connected == 0


def test_empty_willtopic_means_no_will(rig: Rig) -> None:
    obs = rig.observe("#")
    c = rig.client()
    assert c.ask(w.connect("s1", 10, w.CLEAN | w.WILL)) == [w.willtopicreq()]
    assert c.ask(w.willtopic(None)) == [w.connack()]
    rig.advance(16)
    assert obs.got == []


def test_connect_retransmitted_during_handshake_restarts_it(rig: Rig) -> None:
    c = rig.client()
    assert c.ask(w.connect("s1", 10, w.CLEAN | w.WILL)) == [w.willtopicreq()]
    assert c.ask(w.connect("s1", 10, w.CLEAN | w.WILL)) == [w.willtopicreq()]
    assert c.ask(w.willtopic("dead/s1")) == [w.willmsgreq()]
    assert c.ask(w.willmsg(b"x")) == [w.connack()]


def test_unfinished_handshake_is_dropped(rig: Rig) -> None:
    c = rig.client()
    c.ask(w.connect("s1", 10, w.CLEAN | w.WILL))
    rig.advance(rig.ctx.settings.handshake_timeout + 1)
    assert c.channel is None
    assert rig.hub.session("s1") is None


def test_traffic_resets_the_keepalive(rig: Rig) -> None:
    c = connected(rig, duration=10)
    rig.advance(10)
    assert c.ask(w.pingreq()) == [w.pingresp()]
    rig.advance(10)
    assert c.channel is not None
    rig.advance(5.1)
    assert c.channel is None


def test_keepalive_zero_is_not_supervised(rig: Rig) -> None:
    c = connected(rig, duration=0)
    rig.advance(100000)
    assert c.channel.state == ACTIVE


def test_disconnect_is_answered_and_no_will(rig: Rig) -> None:
    obs = rig.observe("#")
    c = connected(rig, duration=10, will=("dead/s1", b"gone"))
    assert c.ask(w.disconnect()) == [w.disconnect()]
    assert obs.got == [] and c.channel is None and rig.hub.session("s1") is None


def test_closed_channels_leave_no_timer_behind(rig: Rig) -> None:
    """A client that disconnects or is refused leaves nothing in the timer heap: its
    channel is not kept alive until a keepalive deadline that may be 27 hours away."""
    for i in range(200):
        c = connected(rig, cid=f"s{i}", port=40000 + i, duration=65535)
        c.ask(w.subscribe(1, f"t/{i}", qos=1))
        rig.publish(f"t/{i}", b"x", qos=1)  # REGISTER outstanding, Tretry armed
        assert c.ask(w.disconnect()) == [w.disconnect()]
    c = rig.client(port=39999)
    c.ask(w.connect("h", 10, w.CLEAN | w.WILL))  # handshake left unfinished, then DISCONNECT
    c.ask(w.disconnect())
    assert len(rig.ctx.timers) <= 1
    assert len(rig.ctx.timers._heap) < 100


def test_disconnect_with_zero_duration_is_a_plain_disconnect(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.disconnect(0)) == [w.disconnect()]
    assert c.channel is None


def test_willtopicupd_and_willmsgupd_change_the_will(rig: Rig) -> None:
    obs = rig.observe("#")
    c = connected(rig, duration=10, will=("dead/old", b"old"))
    assert c.ask(w.willtopicupd("dead/new", 1, False)) == [w.willtopicresp(w.ACCEPTED)]
    assert c.ask(w.willmsgupd(b"new")) == [w.willmsgresp(w.ACCEPTED)]
    assert c.ask(w.willtopicupd("bad/#")) == [w.willtopicresp(w.NOT_SUPPORTED)]
    rig.advance(16)
    assert obs.got == [("dead/new", b"new", 1, False)]


def test_empty_willtopicupd_deletes_the_will(rig: Rig) -> None:
    obs = rig.observe("#")
    c = connected(rig, duration=10, will=("dead/old", b"old"))
    assert c.ask(w.willtopicupd(None)) == [w.willtopicresp(w.ACCEPTED)]
    rig.advance(16)
    assert obs.got == []


def test_will_can_be_set_later_by_update(rig: Rig) -> None:
    obs = rig.observe("#")
    c = connected(rig, duration=10)
    assert c.ask(w.willmsgupd(b"late")) == [w.willmsgresp()]
    assert c.ask(w.willtopicupd("dead/late")) == [w.willtopicresp()]
    rig.advance(16)
    assert obs.got == [("dead/late", b"late", 0, False)]


# --- CONNACK return codes and authentication ------------------------------------------------


def test_wrong_protocol_id_is_not_supported(rig: Rig) -> None:
    c = rig.client()
    assert c.ask(w.connect("s1", protocol_id=2)) == [w.connack(w.NOT_SUPPORTED)]
    assert c.channel is None


def test_empty_client_id_is_not_supported(rig: Rig) -> None:
    assert rig.client().ask(w.connect("")) == [w.connack(w.NOT_SUPPORTED)]


def test_max_connections_gives_congestion() -> None:
    rig = Rig()

    class L:
        max_connections = 1

    rig.net.listener = L()
    connected(rig, "a", 1)
    c = rig.client(2)
    assert c.ask(w.connect("b")) == [w.connack(w.CONGESTION)]
    assert c.channel is None


def test_closed_client_list_refuses_others_and_names_the_user() -> None:
    rig = Rig(clients={"boiler": "heating", "pump": "pump"})
    seen = []
    rig.hub.set_security(lambda client, pw: seen.append(client) or False, None)
    c = connected(rig, "boiler")
    assert rig.hub.session("boiler").client.username == "heating"
    assert seen == []  # the list is the credential: no anonymous check
    assert rig.client(2).ask(w.connect("intruder")) == [w.connack(w.NOT_SUPPORTED)]
    assert c.channel.state == ACTIVE


def test_default_username_admits_everybody_under_that_name() -> None:
    rig = Rig(clients={"boiler": "heating"}, default_username="sensor")
    connected(rig, "other")
    assert rig.hub.session("other").client.username == "sensor"
    assert rig.hub.session("other").client.protocol == "mqttsn"


def test_anonymous_clients_go_through_hub_authentication() -> None:
    rig = Rig()
    rig.hub.set_security(lambda client, pw: False, None)
    assert rig.client().ask(w.connect("anon")) == [w.connack(w.NOT_SUPPORTED)]


@pytest.mark.parametrize("reason, code", [
    (Reason.BAD_CREDENTIALS, w.NOT_SUPPORTED),
    (Reason.NOT_AUTHORIZED, w.NOT_SUPPORTED),
    (Reason.BANNED, w.NOT_SUPPORTED),
    (Reason.SERVER_BUSY, w.CONGESTION),
    (Reason.SERVER_UNAVAILABLE, w.CONGESTION),
    (Reason.QUOTA_EXCEEDED, w.CONGESTION),
    (Reason.UNSPECIFIED, w.NOT_SUPPORTED),
])
def test_authentication_refusals_as_return_codes(reason: Reason, code: int) -> None:
    rig = Rig()
    rig.hub.set_security(lambda client, pw: Denied(reason), None)
    c = rig.client()
    assert c.ask(w.connect("anon")) == [w.connack(code)]
    assert c.channel is None


def test_deferred_authentication() -> None:
    rig = Rig()
    pending: list[Deferred[bool]] = []

    def later(client: ClientInfo, pw: bytes | None) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        pending.append(d)
        return d

    rig.hub.set_security(later, None)
    c = rig.client()
    assert c.ask(w.connect("slow")) == []
    pending[0].callback(True)
    assert c.take() == [w.connack()]


def test_will_topic_denied_by_acl_refuses_connect() -> None:
    rig = Rig(default_username="u")
    rig.hub.set_security(lambda c, p: True, lambda client, access, topic: not topic.startswith("forbidden"))
    c = rig.client()
    c.ask(w.connect("s1", 10, w.CLEAN | w.WILL))
    c.ask(w.willtopic("forbidden/will"))
    assert c.ask(w.willmsg(b"x")) == [w.connack(w.NOT_SUPPORTED)]


# --- REGISTER, PUBLISH from the client -----------------------------------------------------


def test_register_then_publish_at_each_qos(rig: Rig) -> None:
    obs = rig.observe("sensors/#")
    c = connected(rig)
    assert c.ask(w.register(0, 1, "sensors/t")) == [w.regack(1, 1, w.ACCEPTED)]
    assert c.ask(w.register(0, 2, "sensors/t")) == [w.regack(1, 2, w.ACCEPTED)]  # same id again
    assert c.ask(w.publish(1, b"q0")) == []
    assert c.ask(w.publish(1, b"q1", 1, 5)) == [w.puback(1, 5, w.ACCEPTED)]
    assert c.ask(w.publish(1, b"q2", 2, 6)) == [w.pubrec(6)]
    assert c.ask(w.publish(1, b"q2", 2, 6, dup=True)) == [w.pubrec(6)]  # not delivered twice
    assert c.ask(w.pubrel(6)) == [w.pubcomp(6)]
    assert obs.got == [("sensors/t", b"q0", 0, False), ("sensors/t", b"q1", 1, False),
                       ("sensors/t", b"q2", 2, False)]
    assert rig.ctx.counters.registrations == 2


def test_publish_to_unknown_topic_id_is_invalid_topic_id(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.publish(99, b"x", 1, 3)) == [w.puback(99, 3, w.INVALID_TOPIC_ID)]
    assert c.ask(w.publish(99, b"x")) == [w.puback(99, 0, w.INVALID_TOPIC_ID)]
    assert c.ask(w.publish(99, b"x", id_type=w.PREDEFINED)) == [w.puback(99, 0, w.INVALID_TOPIC_ID)]


def test_publish_with_reserved_topic_type_is_not_supported(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.publish(1, b"x", 1, 3, id_type=w.RESERVED)) == [w.puback(1, 3, w.NOT_SUPPORTED)]


def test_publish_denied_by_acl_is_not_supported() -> None:
    rig = Rig(default_username="u")
    rig.hub.set_security(lambda c, p: True, lambda client, access, topic: access != "write")
    obs = rig.observe("#")
    c = connected(rig)
    c.ask(w.register(0, 1, "a/b"))
    assert c.ask(w.publish(1, b"x", 1, 2)) == [w.puback(1, 2, w.NOT_SUPPORTED)]
    assert obs.got == []


def test_qos2_publish_denied_by_acl_is_not_supported_and_not_held() -> None:
    rig = Rig(default_username="u")
    rig.hub.set_security(lambda c, p: True, lambda client, access, topic: topic != "a/secret")
    obs = rig.observe("#")
    c = connected(rig)
    c.ask(w.register(0, 1, "a/secret"))
    c.ask(w.register(0, 2, "a/open"))
    assert c.ask(w.publish(1, b"x", 2, 7)) == [w.puback(1, 7, w.NOT_SUPPORTED)]
    assert rig.hub.stats.denied_publish == 1
    assert c.ask(w.publish(2, b"y", 2, 7)) == [w.pubrec(7)]  # the id was not taken
    assert c.ask(w.pubrel(7)) == [w.pubcomp(7)]
    assert obs.payloads() == [b"y"]


def test_qos2_publishes_beyond_the_window_are_congestion() -> None:
    rig = Rig(limits=Limits(max_inflight=1))
    c = connected(rig)
    c.ask(w.register(0, 1, "a/b"))
    assert c.ask(w.publish(1, b"x", 2, 1)) == [w.pubrec(1)]
    assert c.ask(w.publish(1, b"y", 2, 2)) == [w.puback(1, 2, w.CONGESTION)]
    c.ask(w.pubrel(1))
    assert c.ask(w.publish(1, b"y", 2, 2)) == [w.pubrec(2)]


def test_oversized_and_retained_when_unavailable_are_not_supported() -> None:
    rig = Rig(message_size_limit=4, retain_available=False)
    c = connected(rig)
    c.ask(w.register(0, 1, "a/b"))
    assert c.ask(w.publish(1, b"12345", 1, 1)) == [w.puback(1, 1, w.NOT_SUPPORTED)]
    assert c.ask(w.publish(1, b"1", 1, 2, retain=True)) == [w.puback(1, 2, w.NOT_SUPPORTED)]


def test_predefined_and_short_topics_need_no_register(rig: Rig) -> None:
    obs = rig.observe("#")
    c = connected(rig)
    assert c.ask(w.publish(10, b"p", 1, 1, id_type=w.PREDEFINED)) == [w.puback(10, 1, w.ACCEPTED)]
    assert c.ask(w.publish("ab", b"s", 1, 2, id_type=w.SHORT)) == [w.puback(w.short("ab"), 2)]
    assert obs.got == [("sensors/predef", b"p", 1, False), ("ab", b"s", 1, False)]


def test_register_errors(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.register(0, 1, "a/#")) == [w.regack(0, 1, w.NOT_SUPPORTED)]
    small = Rig(max_topics=1)
    c = connected(small)
    assert c.ask(w.register(0, 1, "a")) == [w.regack(1, 1, w.ACCEPTED)]
    assert c.ask(w.register(0, 2, "b")) == [w.regack(0, 2, w.CONGESTION)]


def test_retained_publish(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.publish(10, b"on", 0, id_type=w.PREDEFINED, retain=True))
    assert rig.hub.retained_message("sensors/predef").payload == b"on"


# --- QoS -1 and addresses without a connection ------------------------------------------------


def test_qos_minus_one_needs_no_connection(rig: Rig) -> None:
    obs = rig.observe("#")
    c = rig.client()
    assert c.ask(w.publish(10, b"a", -1, id_type=w.PREDEFINED)) == []
    assert c.ask(w.publish("xy", b"b", -1, id_type=w.SHORT)) == []
    assert c.ask(w.publish(10, b"c", -1, id_type=w.NORMAL)) == []  # a normal id means nothing here
    assert c.ask(w.publish(77, b"d", -1, id_type=w.PREDEFINED)) == []
    assert obs.got == [("sensors/predef", b"a", 0, False), ("xy", b"b", 0, False)]
    assert rig.ctx.counters.qos_minus_one == 2
    assert c.ask(w.disconnect()) == []  # mqtt_sn_pub -q -1 says goodbye anyway
    assert rig.net.channels == {}


def test_qos_minus_one_refused_for_anonymous_when_anonymous_is_refused() -> None:
    rig = Rig(predefined=PRE)
    rig.hub.set_security(lambda c, p: False, None)
    obs = rig.observe("#")
    rig.client().send(w.publish(10, b"a", -1, id_type=w.PREDEFINED))
    assert obs.got == []


def test_qos_minus_one_denied_by_acl_is_counted() -> None:
    rig = Rig(predefined=PRE, default_username="u")
    rig.hub.set_security(lambda c, p: True, lambda client, access, topic: access != "write")
    obs = rig.observe("#")
    rig.client().send(w.publish(10, b"a", -1, id_type=w.PREDEFINED))
    assert obs.got == [] and rig.hub.stats.denied_publish == 1


def test_qos_minus_one_retained_when_retain_is_unavailable_is_dropped() -> None:
    rig = Rig(predefined=PRE, retain_available=False)
    obs = rig.observe("#")
    rig.client().send(w.publish(10, b"a", -1, id_type=w.PREDEFINED, retain=True))
    assert obs.got == [] and rig.hub.retained_message("sensors/predef") is None


def test_unconnected_address_is_told_to_reconnect(rig: Rig) -> None:
    c = rig.client()
    assert c.ask(w.publish(1, b"x", 1, 1)) == [w.disconnect()]
    assert c.ask(w.pingreq()) == [w.disconnect()]
    assert c.ask(w.pingreq("nobody")) == [w.disconnect()]
    assert c.ask(w.subscribe(1, "a")) == [w.disconnect()]


def test_undecodable_datagrams_are_dropped_and_counted(rig: Rig) -> None:
    c = rig.client()
    assert c.ask(b"\x05\x0c\x00") == []
    c2 = connected(rig, "s2", 2)
    assert c2.ask(b"garbage") == []
    assert c2.ask(b"\x02\x03") == []
    assert rig.ctx.counters.frames_dropped == 3
    assert c2.channel.state == ACTIVE


def test_gateway_only_messages_from_a_client_close_it(rig: Rig) -> None:
    obs = rig.observe("#")
    c = connected(rig, duration=10, will=("dead/s1", b"x"))
    assert c.ask(w.connack()) == [w.disconnect()]
    assert c.channel is None
    assert obs.got == [("dead/s1", b"x", 0, False)]


def test_searchgw_is_answered_with_gwinfo() -> None:
    rig = Rig(gateway_id=42)
    assert rig.client().ask(w.searchgw(1)) == [w.gwinfo(42)]
    c = connected(rig, "s", 2)
    assert c.ask(w.searchgw(0)) == [w.gwinfo(42)]
    assert c.ask(w.advertise(3, 60)) == []
    assert c.ask(w.gwinfo(3)) == []


def test_advertise_every_interval() -> None:
    rig = Rig(gateway_id=5, advertise_interval=30)
    rig.advance(0)
    assert rig.net.broadcasts == [w.advertise(5, 30)]
    rig.advance(30)
    assert rig.net.broadcasts == [w.advertise(5, 30)] * 2


def test_forwarder_encapsulation(rig: Rig) -> None:
    obs = rig.observe("#")
    fwd = rig.client(5000)
    node = b"\x00\x13\xa2\x00\x41\x02"
    assert fwd.ask(w.encapsulated(node, w.connect("behind", 60))) == [w.encapsulated(node, w.connack())]
    assert fwd.ask(w.encapsulated(node, w.publish(10, b"v", 1, 4, id_type=w.PREDEFINED))) == [
        w.encapsulated(node, w.puback(10, 4))
    ]
    assert obs.got == [("sensors/predef", b"v", 1, False)]
    # the forwarder's own client at the same address is a separate client
    assert fwd.ask(w.connect("forwarder")) == [w.connack()]
    assert fwd.ask(w.encapsulated(node, w.pingreq())) == [w.encapsulated(node, w.pingresp())]


def test_connect_again_from_the_same_address_fires_no_will(rig: Rig) -> None:
    # The CONNACK may have been lost: a repeated CONNECT means the client is alive.
    obs = rig.observe("dead/#")
    c = connected(rig, duration=10, will=("dead/s1", b"gone"))
    assert c.ask(w.connect("s1", 10, w.CLEAN)) == [w.connack()]
    assert obs.got == []
    assert rig.ctx.counters.connected == 1


def test_another_client_id_at_the_same_address_replaces_the_first(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    c = connected(rig, duration=10, will=("dead/s1", b"gone"))
    assert c.ask(w.connect("s2", 10)) == [w.connack()]
    assert obs.got == [("dead/s1", b"gone", 0, False)]
    assert rig.hub.session("s1") is None and rig.hub.session("s2").endpoint is c.channel


def test_hub_closing_the_connection_sends_disconnect(rig: Rig) -> None:
    # As the security reload does for a client no longer allowed in.
    c = connected(rig, duration=10, will=("dead/s1", b"gone"))
    session = rig.hub.session("s1")
    rig.hub.disconnect(session, False, c.channel)
    c.channel.close(Reason.NOT_AUTHORIZED)
    assert c.take() == [w.disconnect()]
    assert c.channel is None and rig.ctx.counters.connected == 0
    assert c.ask(w.pingreq()) == [w.disconnect()]
