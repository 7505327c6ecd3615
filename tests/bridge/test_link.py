"""A bridge's behaviour on a real hub, its remote played by the test (no sockets, a
``task.Clock``): queueing while away, resending, loops, backoff, failover, MQTT 5."""

from __future__ import annotations

from gateway.hub.api import ClientInfo, Message
from gateway.hub.hub import Hub, HubSettings
from gateway.hub.persistence import restore
from gateway.hub.sessions import Limits
from gateway.mqtt.packets import (
    Connect, Disconnect, PingReq, PubAck, PubComp, Publish, PubRec, PubRel, Subscribe,
    Unsubscribe,
)
from tests import wire
from tests.bridge.helpers import make_link
from tests.hub.helpers import join, make_hub, pub
from tests.hub.memory_journal import MemoryJournal

STATE = "$SYS/broker/connection/gw-a/state"


def publishes(packets, topic=None):
    return [p for p in packets if type(p) is Publish and (topic is None or p.topic == topic)]


def test_connect_subscribe_and_state():
    link, dialer, hub = make_link("topic sensors/# out 1", "topic cmd/# in 2", "keepalive_interval 30")
    watcher = join(hub, "watch", subscribe=[(STATE, 1)])
    link.start()
    assert watcher.ep.payloads() == [b"0"]
    remote = dialer.accept()
    c = remote.connect
    assert type(c) is Connect and (c.client_id, c.clean_session, c.keepalive) == ("gw-a", False, 30)
    assert c.protocol_level == 4 and remote.connect.bridge
    assert (c.will.topic, c.will.payload, c.will.qos, c.will.retain) == (STATE, b"0", 1, True)
    packets = remote.read()
    state, unsubscribe, subscribe = packets    # in the order of the topic lines
    assert (state.topic, state.payload, state.qos, state.retain) == (STATE, b"1", 1, True)
    assert type(subscribe) is Subscribe and subscribe.topics == [("cmd/#", 2)]
    assert type(unsubscribe) is Unsubscribe and unsubscribe.topics == ["sensors/#"]
    assert len({state.packet_id, subscribe.packet_id, unsubscribe.packet_id}) == 3
    assert watcher.ep.payloads() == [b"1"]
    assert link.up and hub.session("local.gw-a") is link.session


def test_out_messages_wait_for_the_remote_and_are_resent_after_a_drop():
    link, dialer, hub = make_link("topic sensors/# out 1", "restart_timeout 3")
    link.start()
    dialer.refuse()
    pub(hub, "sensors/a", b"1", qos=1)
    pub(hub, "sensors/b", b"2", qos=1)
    pub(hub, "sensors/c", b"3", qos=0)         # QoS 0 is not queued for an absent client
    pub(hub, "other", b"4", qos=1)
    assert hub.clock.getDelayedCalls()[0].getTime() == 3.0
    hub.clock.advance(3)
    remote = dialer.accept()
    sent = publishes(remote.read())[1:]        # after the state message
    assert [(p.topic, p.payload, p.qos, p.dup) for p in sent] == [
        ("sensors/a", b"1", 1, False), ("sensors/b", b"2", 1, False)]
    remote.send(wire.puback(sent[0].packet_id))
    remote.drop()
    hub.clock.advance(3)
    remote = dialer.accept()
    again = publishes(remote.read())[1:]
    assert [(p.topic, p.packet_id, p.dup) for p in again] == [("sensors/b", sent[1].packet_id, True)]
    remote.send(wire.puback(again[0].packet_id))
    assert not link.session.inflight and not link.session.queue


def test_messages_from_the_remote_are_published_locally_and_not_sent_back():
    link, dialer, hub = make_link('topic # both 1 "" site-a/')
    local = join(hub, "app", subscribe=[("#", 1)])
    link.start()
    remote = dialer.accept()
    remote.read()
    remote.send(wire.publish("site-a/cmd/open", b"yes", 1, mid=9) + wire.publish("elsewhere", b"no"))
    # A topic no rule remaps comes in as it is (Mosquitto filters nothing either).
    assert [(d.topic, d.payload) for d in local.ep.take() if not d.topic.startswith("$")] == [
        ("cmd/open", b"yes"), ("elsewhere", b"no")]
    assert remote.read() == [PubAck(9)]        # and no PUBLISH back out
    pub(hub, "cmd/close", b"x", qos=1)
    back = publishes(remote.read())
    assert [(p.topic, p.payload) for p in back] == [("site-a/cmd/close", b"x")]


def test_qos2_both_ways():
    link, dialer, hub = make_link("topic in/# in 2", "topic out/# out 2")
    local = join(hub, "app", subscribe=[("in/#", 2)])
    link.start()
    remote = dialer.accept()
    remote.read()
    remote.send(wire.publish("in/x", b"a", 2, mid=5))
    assert remote.read() == [PubRec(5)]
    remote.send(wire.publish("in/x", b"a", 2, mid=5, dup=True))   # resent before PUBREL
    assert remote.read() == [PubRec(5)]
    assert local.ep.take() == []               # published at PUBREL, as Mosquitto does
    remote.send(wire.pubrel(5))
    assert remote.read() == [PubComp(5)]
    assert [d.payload for d in local.ep.take()] == [b"a"]
    pub(hub, "out/y", b"b", qos=2)
    (p,) = publishes(remote.read())
    remote.send(wire.pubrec(p.packet_id))
    assert remote.read() == [PubRel(p.packet_id)]
    remote.send(wire.pubcomp(p.packet_id))
    assert not link.session.inflight


def test_backoff_and_failover_across_addresses():
    delays = []

    def jitter(low, high):
        delays.append((low, high))
        return high

    link, dialer, hub = make_link("address 127.0.0.1:1 127.0.0.1:2", jitter=jitter)
    link.start()
    assert dialer.refuse() == 0
    assert delays == [(5, 15.0)]               # decorrelated jitter from the base 5 s
    hub.clock.advance(15)
    assert dialer.refuse() == 1
    assert delays[-1] == (5, 45.0)
    hub.clock.advance(30)                      # the cap
    assert dialer.attempts[0][0] == 0
    dialer.accept()
    assert link.delay == 5.0                   # reset by the connection


def make_two(*lines):
    return make_link("address 127.0.0.1:1 127.0.0.1:2", "restart_timeout 1", *lines)


def test_back_to_the_first_address_once_it_answers():
    link, dialer, hub = make_two("topic a/# out 1")
    link.start()
    dialer.refuse()
    hub.clock.advance(1)
    second = dialer.accept()
    assert second.index == 1
    hub.clock.advance(5)
    index, probe = dialer.probes.pop()
    probe.errback(Exception("refused"))
    hub.clock.advance(5)
    index, probe = dialer.probes.pop()
    assert index == 0
    probe.callback(None)
    assert second.read()[-1] == Disconnect()   # a clean leave: no will on the second broker
    assert second.close_if_asked()
    first = dialer.accept()
    assert first.index == 0 and link.up


def test_round_robin_stays_where_it_is():
    link, dialer, hub = make_two("round_robin true")
    link.start()
    dialer.refuse()
    hub.clock.advance(1)
    dialer.accept()
    hub.clock.advance(60)
    assert dialer.probes == []


def test_start_type_once_does_not_restart():
    link, dialer, hub = make_link("start_type once")
    link.start()
    dialer.refuse()
    hub.clock.advance(3600)
    assert dialer.attempts == []


def test_local_cleansession_queues_nothing_while_away():
    link, dialer, hub = make_link("topic a/# out 1", "local_cleansession true", "restart_timeout 1")
    link.start()
    dialer.refuse()
    pub(hub, "a/1", b"lost", qos=1)
    hub.clock.advance(1)
    remote = dialer.accept()
    remote.read()
    pub(hub, "a/2", b"kept", qos=1)
    assert [p.payload for p in publishes(remote.read())] == [b"kept"]


def test_mqtt5_options_limits_and_properties():
    link, dialer, hub = make_link("topic in/# in 1", "topic out/# out 2", "bridge_protocol_version mqttv50",
                                  "bridge_session_expiry_interval 3600", "bridge_receive_maximum 7",
                                  "bridge_max_packet_size 100")
    link.start()
    limits = wire.prop_byte(0x24, 0) + wire.prop_u16(0x21, 3)
    remote = dialer.accept(wire.connack(proto_ver=5, properties=limits))
    c = remote.connect
    assert c.protocol_level == 5 and c.properties == {0x11: 3600, 0x21: 7}
    packets = remote.read()
    state, subscribe, _ = packets
    assert state.qos == 0                      # the remote's Maximum QoS 0
    assert subscribe.topics == [("in/#", 0x04 | 0x08 | 0)]   # No Local, Retain As Published
    assert link.session.receive_maximum == 3
    hub.publish(Message("out/x", b"big" * 40, 2))            # over 100 bytes: dropped
    sender = join(hub, "app")
    message = Message("out/y", b"small", 2, expires_at=hub.now() + 60)
    message.props = None
    hub.publish_from(sender.session, message)
    (p,) = publishes(remote.read())
    assert (p.topic, p.qos, p.properties) == ("out/y", 0, {0x02: 60})
    assert not link.session.inflight           # QoS 0 on the wire: finished at once


def test_falls_back_to_mqtt311_and_without_the_bridge_bit():
    link, dialer, hub = make_link("bridge_protocol_version mqttv50", "restart_timeout 1")
    link.start()
    remote = dialer.accept(wire.connack(1, proto_ver=4))      # a 3.1.1 broker's answer
    assert remote.close_if_asked()
    hub.clock.advance(1)
    remote = dialer.accept(wire.connack(1))
    assert remote.connect.protocol_level == 4 and remote.connect.bridge
    assert remote.transport.disconnecting
    remote.close_if_asked()
    hub.clock.advance(1)
    remote = dialer.accept()
    assert remote.connect.protocol_level == 4 and not remote.connect.bridge


def test_keepalive_ping_on_the_reactor_clock():
    link, dialer, hub = make_link("keepalive_interval 10")
    link.start()
    remote = dialer.accept()
    remote.read()
    hub.clock.advance(10)
    assert remote.read() == [PingReq()]
    hub.clock.advance(10)                      # unanswered: the connection is cut
    assert remote.close_if_asked()
    assert not link.up


def test_stop_says_goodbye():
    link, dialer, hub = make_link("topic a/# out 1")
    watcher = join(hub, "watch", subscribe=[(STATE, 1)])
    link.start()
    remote = dialer.accept()
    remote.read()
    done = link.stop()
    state, goodbye = remote.read()
    assert (state.topic, state.payload, state.retain) == (STATE, b"0", True)
    assert goodbye == Disconnect()
    assert not done.called
    remote.close_if_asked()
    assert done.called
    assert watcher.ep.payloads()[-1] == b"0"
    assert hub.session("local.gw-a") is not None     # kept, with its queue, for next time


def test_the_queue_is_durable_with_the_journal():
    journal = MemoryJournal()
    hub = Hub(HubSettings(limits=Limits(max_queued=2)), make_hub().clock, journal=journal)
    link, dialer, _ = make_link("topic a/# out 1", hub=hub)
    link.start()
    dialer.refuse()
    for n in range(3):
        pub(hub, f"a/{n}", str(n).encode(), qos=1)      # the third is over max_queued
    assert hub.stats.traffic_of("bridge").dropped[1] == 1
    restarted = make_hub()
    restore(restarted, journal.snapshot(), {})
    link2, dialer2, _ = make_link("topic a/# out 1", hub=restarted)
    link2.start()
    remote = dialer2.accept()
    assert [p.payload for p in publishes(remote.read())[1:]] == [b"0", b"1"]


def test_a_local_username_puts_the_bridge_under_the_acl():
    from gateway.hub.auth import Policies, Policy, Security
    from gateway.security.acl import AclFile

    link, dialer, hub = make_link("topic # both 1", "local_username bridge")
    acl = AclFile.parse("topic readwrite #\nuser bridge\ntopic write in/#\ntopic read out/#\n")
    Security(Policies(default=Policy(allow_anonymous=True, acl=acl))).install(hub)
    local = join(hub, "app", subscribe=[("#", 1)])
    link.start()
    remote = dialer.accept()
    remote.read()
    remote.send(wire.publish("in/ok", b"1", 1, mid=1) + wire.publish("nope", b"2", 1, mid=2))
    assert [d.topic for d in local.ep.take() if d.topic[0] != "$"] == ["in/ok"]
    pub(hub, "out/ok", b"3", qos=1, sender=local.session)
    pub(hub, "secret", b"4", qos=1, sender=local.session)
    assert [p.topic for p in publishes(remote.read())] == ["out/ok"]
    assert link.client.trusted is False and ClientInfo("x").trusted is False


def test_qos0_is_dropped_once_a_slow_remote_has_a_backlog():
    link, dialer, hub = make_link("topic a/# out 0")
    link.start()
    remote = dialer.accept()
    remote.read()
    remote.proto.pauseProducing()              # the transport's buffer is full
    for n in range(6):
        pub(hub, f"a/{n}", bytes(1 << 20))
    assert len(publishes(remote.read())) == 5  # 4 MiB of backlog, and the one crossing it
    assert hub.stats.traffic_of("bridge").dropped[0] == 1
    remote.proto.resumeProducing()
    pub(hub, "a/x", b"again")
    assert [p.payload for p in publishes(remote.read())] == [b"again"]


def test_state_on_a_topic_of_its_own_and_only_here():
    link, dialer, hub = make_link("notification_topic site/bridge", "notifications_local_only true")
    watcher = join(hub, "watch", subscribe=[("site/bridge", 1)])
    link.start()
    remote = dialer.accept()
    assert remote.connect.will is None
    assert publishes(remote.read()) == []
    assert watcher.ep.payloads() == [b"0", b"1"]
    assert hub.retained_message("site/bridge").payload == b"1"


def test_no_notifications():
    link, dialer, hub = make_link("notifications false")
    link.start()
    remote = dialer.accept()
    assert remote.connect.will is None and publishes(remote.read()) == []
    assert hub.retained_message(STATE) is None


def test_a_topic_a_prefix_makes_too_deep_is_dropped():
    deep = "l/" * 150
    link, dialer, hub = make_link(f'topic # in 1 {deep} ""')
    local = join(hub, "app", subscribe=[(f"{deep}#", 1)])
    link.start()
    remote = dialer.accept()
    remote.read()
    remote.send(wire.publish("r/" * 60 + "x", b"lost", 1, mid=3) + wire.publish("ok", b"kept", 1, mid=4))
    assert remote.read() == [PubAck(3), PubAck(4)]
    assert [d.topic for d in local.ep.take() if d.topic[0] != "$"] == [f"{deep}ok"]
    assert hub.stats.traffic_of("bridge").dropped[1] == 1
