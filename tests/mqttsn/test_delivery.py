"""Deliveries to MQTT-SN clients: SUBSCRIBE, the gateway's REGISTER, QoS 1/2 one at a time,
retransmission, sleeping clients, and sessions shared with the hub (raw bytes, Clock)."""

from __future__ import annotations

import pytest

from gateway.hub.api import ClientInfo
from gateway.mqttsn.channel import ACTIVE, ASLEEP
from tests.mqttsn import wire as w
from tests.mqttsn.helpers import Observer, Rig, connected

PRE = {10: "sensors/predef"}


@pytest.fixture
def rig() -> Rig:
    return Rig(predefined=PRE, retry_interval=10.0, retry_count=3)


# --- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------------


def test_subscribe_by_name_returns_a_topic_id_used_for_delivery(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.subscribe(1, "room/temp", 0)) == [w.suback(1, 1, w.ACCEPTED, 0)]
    rig.publish("room/temp", b"20")
    assert c.take() == [w.publish(1, b"20")]


def test_wildcard_match_is_registered_before_its_publish(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.subscribe(1, "sensors/#", 1)) == [w.suback(0, 1, w.ACCEPTED, 1)]
    rig.publish("sensors/a", b"1")
    rig.publish("sensors/a", b"2")
    assert c.take() == [w.register(1, 1, "sensors/a")]  # the PUBLISHes wait for REGACK
    c.send(w.regack(1, 1, w.ACCEPTED))
    assert c.take() == [w.publish(1, b"1"), w.publish(1, b"2")]
    rig.publish("sensors/a", b"3")
    assert c.take() == [w.publish(1, b"3")]
    rig.publish("sensors/b", b"4")
    assert c.take() == [w.register(2, 2, "sensors/b")]


def test_refused_registration_drops_what_waits_for_it(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "sensors/#", 0))
    rig.publish("sensors/a", b"1")
    rig.publish("sensors/b", b"2")
    assert c.take() == [w.register(1, 1, "sensors/a")]
    c.send(w.regack(1, 1, w.NOT_SUPPORTED))
    assert c.take() == [w.register(2, 2, "sensors/b")]
    c.send(w.regack(2, 2))
    assert c.take() == [w.publish(2, b"2")]
    assert rig.ctx.counters.messages_dropped == 1


def test_predefined_and_short_topics_are_delivered_without_register(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.subscribe(1, 10, 0, w.PREDEFINED)) == [w.suback(10, 1, w.ACCEPTED, 0)]
    assert c.ask(w.subscribe(2, "ab", 0, w.SHORT)) == [w.suback(0, 2, w.ACCEPTED, 0)]
    rig.publish("sensors/predef", b"p")
    rig.publish("ab", b"s")
    assert c.take() == [w.publish(10, b"p", id_type=w.PREDEFINED), w.publish("ab", b"s", id_type=w.SHORT)]


def test_subscribe_return_codes(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.subscribe(1, 99, 0, w.PREDEFINED)) == [w.suback(99, 1, w.INVALID_TOPIC_ID)]
    assert c.ask(w.subscribe(2, "a/#/b", 0)) == [w.suback(0, 2, w.NOT_SUPPORTED)]
    assert c.ask(w.subscribe(3, 5, 0, w.RESERVED)) == [w.suback(0, 3, w.NOT_SUPPORTED)]
    assert c.ask(w.subscribe(4, "a", -1)) == [w.suback(0, 4, w.NOT_SUPPORTED)]
    small = Rig(max_topics=1)
    c = connected(small)
    assert c.ask(w.subscribe(1, "x", 0)) == [w.suback(1, 1, w.ACCEPTED)]
    assert c.ask(w.subscribe(2, "y", 0)) == [w.suback(0, 2, w.CONGESTION)]


def test_subscribe_denied_by_acl_is_not_supported() -> None:
    rig = Rig(default_username="u")
    rig.hub.set_security(lambda c, p: True, lambda client, access, topic: access != "subscribe")
    c = connected(rig)
    assert c.ask(w.subscribe(1, "a", 0)) == [w.suback(0, 1, w.NOT_SUPPORTED)]


def test_retained_messages_follow_the_suback(rig: Rig) -> None:
    rig.publish("room/temp", b"19", 1, retain=True)
    c = connected(rig)
    assert c.ask(w.subscribe(7, "room/temp", 1)) == [w.suback(1, 7, w.ACCEPTED, 1), w.publish(1, b"19", 1, 1, retain=True)]


def test_unsubscribe(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "a/b", 0))
    c.ask(w.subscribe(2, 10, 0, w.PREDEFINED))
    assert c.ask(w.unsubscribe(3, "a/b")) == [w.unsuback(3)]
    assert c.ask(w.unsubscribe(4, 10, w.PREDEFINED)) == [w.unsuback(4)]
    assert c.ask(w.unsubscribe(5, 99, w.PREDEFINED)) == [w.unsuback(5)]
    rig.publish("a/b", b"x")
    rig.publish("sensors/predef", b"y")
    assert c.take() == []


# --- QoS 1 and 2 to the client ----------------------------------------------------------------


def test_one_qos1_message_at_a_time_with_retransmission(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t/1", 1))
    rig.publish("t/1", b"a", 1)
    rig.publish("t/1", b"b", 1)
    assert c.take() == [w.publish(1, b"a", 1, 1)]
    rig.advance(10)
    assert c.take() == [w.publish(1, b"a", 1, 1, dup=True)]
    assert rig.ctx.counters.retransmissions == 1
    c.send(w.puback(1, 1, w.ACCEPTED))
    assert c.take() == [w.publish(1, b"b", 1, 2)]
    c.send(w.puback(1, 2))
    rig.advance(30)
    assert c.take() == []
    assert rig.hub.session("s1").inflight == {}


def test_qos0_does_not_wait_for_an_unacknowledged_qos1(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t", 1))
    rig.publish("t", b"a", 1)
    rig.publish("t", b"b", 1)
    rig.publish("t", b"c", 0)
    assert c.take() == [w.publish(1, b"a", 1, 1), w.publish(1, b"c")]
    c.send(w.puback(1, 1))
    assert c.take() == [w.publish(1, b"b", 1, 2)]


def test_congestion_puback_means_try_again(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t/1", 1))
    rig.publish("t/1", b"a", 1)
    c.take()
    c.send(w.puback(1, 1, w.CONGESTION))
    rig.advance(10)
    assert c.take() == [w.publish(1, b"a", 1, 1, dup=True)]


def test_invalid_topic_id_puback_forgets_the_registration(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t/#", 1))
    rig.publish("t/x", b"a", 1)
    c.take()
    c.send(w.regack(1, 1))
    assert c.take() == [w.publish(1, b"a", 1, 1)]
    c.send(w.puback(1, 1, w.INVALID_TOPIC_ID))
    rig.publish("t/x", b"b", 1)
    assert c.take() == [w.register(2, 2, "t/x")]


def test_lost_after_nretry_unanswered_retransmissions(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    c = connected(rig, duration=0, will=("dead/s1", b"bye"))
    c.ask(w.subscribe(1, "t/1", 1))
    rig.publish("t/1", b"a", 1)
    c.take()
    for _ in range(3):
        rig.advance(10)
        assert c.take() == [w.publish(1, b"a", 1, 1, dup=True)]
    rig.advance(10)
    assert c.channel is None
    assert obs.got == [("dead/s1", b"bye", 0, False)]


def test_unanswered_register_is_retransmitted_too(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t/#", 0))
    rig.publish("t/x", b"a")
    assert c.take() == [w.register(1, 1, "t/x")]
    rig.advance(10)
    assert c.take() == [w.register(1, 1, "t/x")]


def test_qos2_to_the_client(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t/2", 2))
    rig.publish("t/2", b"x", 2)
    assert c.take() == [w.publish(1, b"x", 2, 1)]
    c.send(w.pubrec(1))
    assert c.take() == [w.pubrel(1)]
    rig.advance(10)
    assert c.take() == [w.pubrel(1)]
    c.send(w.pubrec(1))  # a retransmitted PUBREC: our PUBREL again
    assert c.take() == [w.pubrel(1)]
    c.send(w.pubcomp(1))
    assert rig.hub.session("s1").inflight == {}
    rig.advance(30)
    assert c.take() == []


# --- sleeping clients ------------------------------------------------------------------------


def test_sleeping_client_gets_held_messages_when_it_wakes(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t", 0))
    assert c.ask(w.disconnect(60)) == [w.disconnect()]
    assert c.channel.state == ASLEEP
    assert rig.ctx.counters.asleep == 1
    rig.publish("t", b"1")
    rig.publish("t", b"2")
    assert c.take() == []
    assert c.ask(w.pingreq("s1")) == [w.publish(1, b"1"), w.publish(1, b"2"), w.pingresp()]
    assert c.channel.state == ASLEEP
    assert c.ask(w.pingreq("s1")) == [w.pingresp()]


def test_sleep_buffer_is_bounded() -> None:
    rig = Rig(max_sleep_buffer=2)
    c = connected(rig)
    c.ask(w.subscribe(1, "t", 0))
    c.ask(w.disconnect(60))
    for i in range(4):
        rig.publish("t", b"%d" % i)
    assert c.ask(w.pingreq("s1")) == [w.publish(1, b"0"), w.publish(1, b"1"), w.pingresp()]
    assert rig.ctx.counters.messages_dropped == 2
    assert rig.hub.stats.dropped == 2


def test_awake_client_gets_pingresp_after_its_qos1_acknowledgement(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t", 1))
    c.ask(w.disconnect(60))
    rig.publish("t", b"a", 1)
    rig.publish("t", b"b", 1)
    assert c.ask(w.pingreq("s1")) == [w.publish(1, b"a", 1, 1)]
    assert c.ask(w.puback(1, 1)) == [w.publish(1, b"b", 1, 2)]
    assert c.ask(w.puback(1, 2)) == [w.pingresp()]


def test_sleep_duration_is_supervised(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    c = connected(rig, duration=10, will=("dead/s1", b"bye"))
    c.ask(w.disconnect(100))
    rig.advance(149)
    assert c.channel.state == ASLEEP and obs.got == []
    c.ask(w.pingreq("s1"))
    rig.advance(149)
    assert c.channel.state == ASLEEP
    rig.advance(2)
    assert c.channel is None
    assert obs.got == [("dead/s1", b"bye", 0, False)]


def test_connect_after_sleep_keeps_the_session_and_fires_no_will(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    c = connected(rig, duration=10, flags=0, will=("dead/s1", b"bye"))
    c.ask(w.subscribe(1, "t", 0))
    c.ask(w.disconnect(100))
    rig.publish("t", b"held")
    assert c.ask(w.connect("s1", 10, 0)) == [w.connack(), w.publish(1, b"held")]
    assert c.channel.state == ACTIVE
    rig.publish("t", b"live")
    assert c.take() == [w.publish(1, b"live")]
    assert obs.got == []


def test_sleeping_client_waking_at_another_address(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.subscribe(1, "t", 0))
    c.ask(w.disconnect(60))
    rig.publish("t", b"x")
    moved = rig.client(40001)
    assert moved.ask(w.pingreq("s1")) == [w.publish(1, b"x"), w.pingresp()]
    assert c.channel is None and moved.channel.state == ASLEEP


def test_sleeping_client_connecting_from_another_address(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    c = connected(rig, duration=10, flags=0, will=("dead/s1", b"bye"))
    c.ask(w.subscribe(1, "t", 0))
    c.ask(w.disconnect(60))
    rig.publish("t", b"held")
    moved = rig.client(40001)
    assert moved.ask(w.connect("s1", 10, 0)) == [w.connack(), w.publish(1, b"held")]
    assert c.channel is None
    assert obs.got == []


# --- sessions: shared with MQTT, kept across addresses ------------------------------------------------


def test_active_client_reconnecting_from_a_new_address_keeps_its_session(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    old = connected(rig, duration=10, flags=0, will=("dead/s1", b"bye"))
    old.ask(w.subscribe(1, "t", 1))
    new = rig.client(41000)
    assert new.ask(w.connect("s1", 10, 0)) == [w.connack()]
    assert old.take() == [w.disconnect()]  # taken over
    assert old.channel is None
    # As Mosquitto: the session goes on with the new connection, so no will.
    assert obs.got == []
    rig.publish("t", b"x", 1)
    assert new.take() == [w.publish(1, b"x", 1, 1)]  # the topic id came with the session


def test_clean_connect_from_a_new_address_takes_over_and_publishes_the_will(rig: Rig) -> None:
    obs = rig.observe("dead/#")
    old = connected(rig, duration=10, flags=0, will=("dead/s1", b"bye"))
    new = rig.client(41000)
    assert new.ask(w.connect("s1", 10, w.CLEAN)) == [w.connack()]
    assert old.take() == [w.disconnect()]
    assert obs.got == [("dead/s1", b"bye", 0, False)]  # a takeover, as in MQTT


def test_register_unanswered_at_a_takeover_is_sent_again_on_the_new_connection(rig: Rig) -> None:
    old = connected(rig, flags=0)
    old.ask(w.subscribe(1, "t/#", 1))
    rig.publish("t/x", b"a", 1)
    assert old.take() == [w.register(1, 1, "t/x")]
    new = rig.client(41000)
    # The client may never have learnt id 1: the topic is registered again.
    assert new.ask(w.connect("s1", 10, 0)) == [w.connack(), w.register(2, 1, "t/x")]
    assert new.ask(w.regack(2, 1)) == [w.publish(2, b"a", 1, 1, dup=True)]


def test_queued_qos1_message_is_delivered_on_reconnect(rig: Rig) -> None:
    c = connected(rig, flags=0)
    c.ask(w.subscribe(1, "t", 1))
    c.ask(w.disconnect())
    assert rig.hub.session("s1").endpoint is None
    rig.publish("t", b"while away", 1)
    assert rig.hub.session("s1").queued == 1
    c2 = rig.client(40002)
    assert c2.ask(w.connect("s1", 60, 0)) == [w.connack(), w.publish(1, b"while away", 1, 1)]


def test_inflight_message_is_resent_with_dup_after_reconnect(rig: Rig) -> None:
    c = connected(rig, flags=0)
    c.ask(w.subscribe(1, "t", 1))
    rig.publish("t", b"x", 1)
    assert c.take() == [w.publish(1, b"x", 1, 1)]
    c.ask(w.disconnect())
    assert c.ask(w.connect("s1", 60, 0)) == [w.connack(), w.publish(1, b"x", 1, 1, dup=True)]


def test_mqtt_client_takes_over_an_mqttsn_client_id(rig: Rig) -> None:
    c = connected(rig, flags=0)
    obs = Observer()
    session, present = rig.hub.connect(ClientInfo("s1", "mqtt"), obs, False)
    obs.session = session
    assert present
    assert c.take() == [w.disconnect()]
    assert c.channel is None
    assert rig.ctx.counters.connected == 0


def test_shutdown_tells_clients(rig: Rig) -> None:
    c = connected(rig)
    d = connected(rig, "s2", 2)
    rig.ctx.remove_network(rig.net)
    assert c.take() == [w.disconnect()] and d.take() == [w.disconnect()]
    assert rig.hub.sessions == {}


def test_too_big_for_the_network_is_dropped(rig: Rig) -> None:
    rig.net.max_message = 50
    c = connected(rig)
    c.ask(w.subscribe(1, "t", 1))
    rig.publish("t", b"x" * 100, 1)
    rig.publish("t", b"small", 1)
    assert c.take() == [w.publish(1, b"small", 1, 2)]
    assert rig.ctx.counters.messages_dropped == 1


def test_sys_counters(rig: Rig) -> None:
    c = connected(rig)
    c.ask(w.register(0, 1, "a"))
    c.ask(w.disconnect(30))
    rig.client(2).send(b"junk")
    values = rig.hub.sys.values()
    assert values["mqttsn/clients/connected"] == 1
    assert values["mqttsn/clients/sleeping"] == 1
    assert values["mqttsn/registrations"] == 1
    assert values["mqttsn/frames/dropped"] == 1


# --- shared subscriptions ($share/GROUP/FILTER, handled by the hub for every protocol) ---------


def receive(c, ack: bool = True) -> list[bytes]:
    """Payloads of the PUBLISHes sent to ``c``, answering REGISTER (and, with ``ack``,
    acknowledging QoS 1) as a client would."""
    got: list[bytes] = []
    pending = c.take()
    while pending:
        d = pending.pop(0)
        if d[1] == 0x0A:  # REGISTER: topic id, msg id, name
            c.send(w.regack(int.from_bytes(d[2:4], "big"), int.from_bytes(d[4:6], "big")))
        elif d[1] == 0x0C:  # PUBLISH: flags, topic id, msg id, data
            got.append(d[7:])
            if d[2] & 0x60 and ack:
                c.send(w.puback(int.from_bytes(d[3:5], "big"), int.from_bytes(d[5:7], "big")))
        pending += c.take()
    return got


def test_shared_subscription_gives_each_message_to_one_member(rig: Rig) -> None:
    a, b = connected(rig, "a", 1), connected(rig, "b", 2)
    # A filter, not a topic name: no topic id in the SUBACK, none registered for it.
    assert a.ask(w.subscribe(1, "$share/g/t", 0)) == [w.suback(0, 1, w.ACCEPTED, 0)]
    assert b.ask(w.subscribe(1, "$share/g/t", 0)) == [w.suback(0, 1, w.ACCEPTED, 0)]
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    sent = [b"%d" % i for i in range(6)]
    for payload in sent:
        rig.publish("t", payload)
        got_a += receive(a)
        got_b += receive(b)
    assert sorted(got_a + got_b) == sorted(sent)
    assert got_a and got_b
    assert a.ask(w.unsubscribe(2, "$share/g/t")) == [w.unsuback(2)]
    rig.publish("t", b"after")
    assert receive(a) == [] and receive(b) == [b"after"]


def test_shared_qos1_skips_a_member_whose_one_message_is_unacknowledged(rig: Rig) -> None:
    a, b = connected(rig, "a", 1), connected(rig, "b", 2)
    a.ask(w.subscribe(1, "$share/g/t", 1))
    b.ask(w.subscribe(1, "$share/g/t", 1))
    rig.publish("t", b"0", 1)
    first, second = (a, b) if receive(a, ack=False) == [b"0"] else (b, a)
    # MQTT-SN takes one QoS 1/2 message at a time: while the first member has not
    # acknowledged, the group's messages go to the other one.
    got = []
    for payload in (b"1", b"2", b"3"):
        rig.publish("t", payload, 1)
        got += receive(second)
    assert got == [b"1", b"2", b"3"] and first.take() == []
    assert rig.hub.session(first.channel.client.client_id).inflight


def test_malformed_shared_filter_is_not_supported(rig: Rig) -> None:
    c = connected(rig)
    assert c.ask(w.subscribe(1, "$share/g", 0)) == [w.suback(0, 1, w.NOT_SUPPORTED)]
    assert c.ask(w.subscribe(2, "$share/+/t", 0)) == [w.suback(0, 2, w.NOT_SUPPORTED)]
