"""The Hub's routing, retained messages, security hooks and $SYS, through the hub API."""

import pytest

from gateway.hub import sysinfo
from gateway.hub.api import (
    ALLOWED, READ, WRITE, Allowed, ClientInfo, Denied, Message, Reason, Subscription,
)
from gateway.hub.hub import Hub, HubSettings, allow_all_authenticate
from gateway.hub.sessions import Session
from gateway.hub.topics import topic_matches
from tests.hub.helpers import make_hub, Delivery, FakeEndpoint, join, pub

# --- QoS --------------------------------------------------------------------------


@pytest.mark.parametrize("granted", [0, 1, 2])
@pytest.mark.parametrize("published", [0, 1, 2])
def test_delivery_is_downgraded_to_the_granted_qos(granted, published):
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("a/b", granted)])
    assert pub(hub, "a/b", b"hi", published) == 1
    [d] = c.ep.take()
    assert d.qos == min(granted, published)
    assert (d.pid is None) is (d.qos == 0)
    assert d.dup is False and d.retain is False


def test_qos2_publish_to_qos1_subscription_is_delivered_at_qos1():
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("t", 1)])
    pub(hub, "t", qos=2)
    assert c.ep.take() == [Delivery("t", b"x", 1, 1, False, False)]


def test_qos0_publish_to_qos2_subscription_is_delivered_at_qos0():
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("t", 2)])
    pub(hub, "t", qos=0)
    assert c.ep.take() == [Delivery("t", b"x", 0, None, False, False)]
    assert c.session.inflight == {}


@pytest.mark.parametrize("granted", [0, 1, 2])
@pytest.mark.parametrize("published", [0, 1, 2])
def test_upgrade_outgoing_qos_delivers_at_the_granted_qos(granted, published):
    hub = make_hub(HubSettings(upgrade_outgoing_qos=True))
    c = join(hub, "sub", subscribe=[("a/b", granted)])
    pub(hub, "a/b", b"hi", published)
    [d] = c.ep.take()
    assert d.qos == granted
    assert (d.pid is None) is (granted == 0)


def test_overlapping_subscriptions_give_one_delivery_at_the_highest_qos():
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("a/+", 0), ("a/#", 2), ("a/b", 1), ("#", 0)])
    other = join(hub, "other", subscribe=[("a/b", 1)])
    assert pub(hub, "a/b", qos=2) == 2
    assert [(d.topic, d.qos) for d in c.ep.take()] == [("a/b", 2)]
    assert [(d.topic, d.qos) for d in other.ep.take()] == [("a/b", 1)]
    assert pub(hub, "a/b", qos=1) == 2
    assert [d.qos for d in c.ep.take()] == [1]


def test_one_message_object_is_handed_to_every_subscriber():
    """So ``message.cache`` lets a channel encode a fanned-out message once."""
    hub = make_hub()
    a = join(hub, "a", subscribe=[("t", 0)])
    b = join(hub, "b", subscribe=[("t", 1)])
    m = Message("t", b"x", 1)
    hub.publish(m)
    assert a.ep.messages == [m] and a.ep.messages[0] is m
    assert b.ep.messages[0] is m


def test_publish_returns_the_number_of_sessions_reached():
    hub = make_hub()
    join(hub, "a", subscribe=[("t/#", 0)])
    join(hub, "b", subscribe=[("t/+", 1), ("t/x", 2)])
    join(hub, "c", subscribe=[("other", 0)])
    assert pub(hub, "t/x") == 2
    assert pub(hub, "t") == 1
    assert pub(hub, "nothing") == 0


# --- retained ---------------------------------------------------------------------


def test_retain_flag_is_false_on_live_delivery():
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("a/b", 1)])
    pub(hub, "a/b", qos=1, retain=True)
    assert [d.retain for d in c.ep.take()] == [False]


def test_retain_as_published_option_keeps_the_flag():
    hub = make_hub()
    c = join(hub, "sub")
    hub.subscribe(c.session, "a/b", Subscription(1, retain_as_published=True))
    pub(hub, "a/b", qos=1, retain=True)
    pub(hub, "a/b", qos=1, retain=False)
    assert [d.retain for d in c.ep.take()] == [True, False]


def test_retained_message_is_stored_replaced_and_cleared_by_publish():
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("a/#", 0)])
    first = Message("a/b", b"one", 1, True)
    hub.publish(first)
    assert hub.retained_message("a/b") is first
    assert hub.retained("a/#") == [first]
    assert hub.retained("a/+") == [first]
    assert hub.retained("#") == [first]

    second = Message("a/b", b"two", 0, True)
    hub.publish(second)
    assert hub.retained("a/b") == [second]

    pub(hub, "a/b", b"live only")  # not retained: the stored copy stays
    assert hub.retained_message("a/b") is second

    assert pub(hub, "a/b", b"", retain=True) == 1  # clears, and is still delivered live
    assert hub.retained_message("a/b") is None
    assert hub.retained("#") == []
    assert len(hub.retained_store) == 0
    assert c.ep.payloads() == [b"one", b"two", b"live only", b""]


def test_retained_lookup_keeps_dollar_topics_from_leading_wildcards():
    hub = make_hub()
    pub(hub, "$SYS/x", b"s", retain=True)
    pub(hub, "a", b"a", retain=True)
    assert [m.topic for m in hub.retained("#")] == ["a"]
    assert hub.retained("+/x") == []
    assert [m.topic for m in hub.retained("$SYS/#")] == ["$SYS/x"]


def test_retain_not_available_means_nothing_is_stored():
    hub = make_hub(HubSettings(retain_available=False))
    c = join(hub, "sub", subscribe=[("a", 0)])
    assert pub(hub, "a", b"r", retain=True) == 1
    assert hub.retained("#") == []
    assert hub.retained_message("a") is None
    assert c.ep.payloads() == [b"r"]


# --- subscribe / unsubscribe --------------------------------------------------------


def test_subscribe_grants_and_rejects():
    hub = make_hub()
    c = join(hub, "sub")
    assert hub.subscribe(c.session, "a", Subscription(2)).qos == 2
    refused = hub.subscribe(c.session, "b", Subscription(3))
    assert isinstance(refused, Denied) and not refused
    assert c.session.subscriptions == {"a": Subscription(2)}
    assert hub.trie.count == 1


def test_resubscribing_replaces_the_qos():
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("a", 2)])
    hub.subscribe(c.session, "a", Subscription(0))
    assert hub.trie.count == 1
    assert c.session.subscriptions == {"a": Subscription(0)}
    pub(hub, "a", qos=2)
    assert [d.qos for d in c.ep.take()] == [0]


def test_unsubscribe():
    hub = make_hub()
    c = join(hub, "sub", subscribe=[("a/#", 1), ("b", 1)])
    assert hub.unsubscribe(c.session, "a/#") is True
    assert hub.unsubscribe(c.session, "a/#") is False
    assert hub.unsubscribe(c.session, "never") is False
    assert c.session.subscriptions == {"b": Subscription(1)}
    assert pub(hub, "a/x") == 0
    assert pub(hub, "b") == 1


def test_no_local_option_skips_the_sender():
    hub = make_hub()
    me = join(hub, "me")
    hub.subscribe(me.session, "t", Subscription(1, no_local=True))
    other = join(hub, "other", subscribe=[("t", 1)])
    pub(hub, "t", b"mine", 1, sender=me.session)
    pub(hub, "t", b"theirs", 1, sender=other.session)
    assert me.ep.payloads() == [b"theirs"]
    assert other.ep.payloads() == [b"mine", b"theirs"]


# --- security hooks ---------------------------------------------------------------


def test_default_security_allows_everything():
    hub = make_hub()
    who = ClientInfo("x")
    assert hub.authenticate(who, None) is ALLOWED
    assert hub.authorize(who, READ, "secret/a") is True


def test_authenticate_hook():
    hub = make_hub()
    hub.set_security(
        lambda client, password: ALLOWED if password == b"pw" else Denied(Reason.BAD_CREDENTIALS), None)
    assert isinstance(hub.authenticate(ClientInfo("x"), b"pw"), Allowed)
    assert hub.authenticate(ClientInfo("x"), b"no") == Denied(Reason.BAD_CREDENTIALS)


def test_authorizer_denying_read_stops_delivery():
    calls = []

    def authorize(client, access, topic):
        calls.append((client.client_id, access, topic))
        return not (access == READ and topic_matches("secret/#", topic))

    hub = make_hub()
    hub.set_security(allow_all_authenticate, authorize)
    c = join(hub, "c", subscribe=[("#", 1)])
    pub(hub, "public/x", b"ok", 1)
    pub(hub, "secret/x", b"hidden", 1)
    pub(hub, "secret", b"hidden too", 0)
    assert c.ep.payloads() == [b"ok"]
    assert ("c", READ, "secret/x") in calls
    assert hub.authorize(ClientInfo("c"), READ, "secret/y") is False
    assert hub.authorize(ClientInfo("c"), WRITE, "secret/y") is True


def test_authorizer_is_asked_per_subscriber():
    hub = make_hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: access != READ or client.client_id != "denied")
    ok = join(hub, "ok", subscribe=[("t", 0)])
    denied = join(hub, "denied", subscribe=[("t", 0)])
    pub(hub, "t")
    assert len(ok.ep.take()) == 1
    assert denied.ep.take() == []


# --- stats and $SYS -----------------------------------------------------------------


def test_client_counters():
    hub = make_hub()
    a = join(hub, "a")
    join(hub, "b", clean=False)
    c = join(hub, "c", clean=False)
    hub.disconnect(a.session, graceful=True)
    hub.disconnect(c.session, graceful=False)
    assert hub.stats.clients_connected == 1
    assert hub.stats.clients_maximum == 3
    v = hub.sys.values()
    assert v["clients/connected"] == v["clients/active"] == 1
    assert v["clients/total"] == 2  # b online, c persistent and away
    assert v["clients/disconnected"] == v["clients/inactive"] == 1
    assert v["clients/maximum"] == 3


MOSQUITTO_NAMES = {
    "version",
    "uptime",
    "clients/connected",
    "clients/active",
    "clients/total",
    "clients/disconnected",
    "clients/inactive",
    "clients/maximum",
    "messages/received",
    "messages/sent",
    "publish/messages/received",
    "publish/messages/sent",
    "publish/messages/dropped",
    "messages/stored",
    "store/messages/count",
    "subscriptions/count",
    "retained messages/count",
    "load/bytes/received",
    "load/bytes/sent",
}


def test_sys_values_use_mosquitto_names():
    hub = make_hub()
    v = hub.sys.values()
    assert MOSQUITTO_NAMES <= set(v)
    assert v["version"].startswith("mqttgateway version ")
    assert v["uptime"].endswith(" seconds")


def test_sys_values_follow_the_hub():
    hub = make_hub()
    c = join(hub, "p", clean=False, subscribe=[("a/#", 1), ("b", 0)])
    pub(hub, "a/r", b"r", retain=True)
    hub.disconnect(c.session, graceful=True)
    pub(hub, "a/q", b"q", 1)
    hub.stats.messages_received += 4
    hub.stats.bytes_sent += 100
    v = hub.sys.values()
    assert v["subscriptions/count"] == 2
    assert v["retained messages/count"] == 1
    assert v["messages/stored"] == v["store/messages/count"] == 2  # 1 retained + 1 queued
    assert v["messages/received"] == 4
    assert v["load/bytes/sent"] == 100


def test_extra_counter():
    hub = make_hub()
    hub.extra_counter("mqttsn/gateways", lambda: 3)
    assert hub.sys.values()["mqttsn/gateways"] == 3


class FakeTime:
    def __init__(self, now):
        self.now = now

    def monotonic(self):
        return self.now


def test_sys_publish_delivers_changed_values_to_sys_subscribers_only(monkeypatch):
    clock = FakeTime(1000.0)
    monkeypatch.setattr(sysinfo, "time", clock)
    hub = make_hub()
    sys_sub = join(hub, "sys", subscribe=[("$SYS/#", 0)])
    everything = join(hub, "all", subscribe=[("#", 0), ("+/broker/#", 0)])

    hub.sys.publish()
    first = sys_sub.ep.take()
    names = {f"$SYS/broker/{k}" for k in hub.sys.values()}
    assert {d.topic for d in first} == names
    assert len(first) == len(names)
    assert all(d.qos == 0 and d.retain is False for d in first)
    by_topic = {d.topic: d.payload for d in first}
    assert by_topic["$SYS/broker/uptime"] == b"0 seconds"
    assert by_topic["$SYS/broker/clients/connected"] == b"2"
    assert by_topic["$SYS/broker/subscriptions/count"] == b"3"
    assert everything.ep.take() == []
    assert hub.retained_message("$SYS/broker/version") is not None  # published retained

    # storing those retained messages moves the retained counts once, then all is quiet
    hub.sys.publish()
    assert {d.topic for d in sys_sub.ep.take()} <= {
        "$SYS/broker/retained messages/count",
        "$SYS/broker/messages/stored",
        "$SYS/broker/store/messages/count",
    }
    hub.sys.publish()
    assert sys_sub.ep.take() == []

    hub.stats.messages_received += 3
    hub.sys.publish()
    assert [(d.topic, d.payload) for d in sys_sub.ep.take()] == [("$SYS/broker/messages/received", b"3")]

    clock.now += 7
    hub.publish_sys()
    assert [(d.topic, d.payload) for d in sys_sub.ep.take()] == [("$SYS/broker/uptime", b"7 seconds")]
    assert everything.ep.take() == []


# --- bugs found ---------------------------------------------------------------------


def test_publish_count_leaves_out_subscribers_denied_read():
    hub = make_hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: access != READ or client.client_id != "denied")
    join(hub, "ok", subscribe=[("t", 0)])
    denied = join(hub, "denied", subscribe=[("t", 0)])
    assert pub(hub, "t") == 1
    assert denied.ep.take() == []


def test_publish_count_leaves_out_the_no_local_sender():
    hub = make_hub()
    me = join(hub, "me")
    hub.subscribe(me.session, "t", Subscription(1, no_local=True))
    assert pub(hub, "t", qos=1, sender=me.session) == 0


class DetachingEndpoint(FakeEndpoint):
    """A channel that closes synchronously while being written to (e.g. a slow consumer)."""

    hub: Hub
    session: Session

    def send_publish(self, message, qos, packet_id, dup, retain, sub_ids=()):
        super().send_publish(message, qos, packet_id, dup, retain, sub_ids)
        self.hub.disconnect(self.session, graceful=False, endpoint=self)
        return True


def test_fan_out_survives_a_subscriber_detaching_during_delivery():
    hub = make_hub()
    ep = DetachingEndpoint()
    ep.hub = hub
    leaving = join(hub, "leaving", ep=ep, subscribe=[("t", 0)])
    ep.session = leaving.session
    staying = join(hub, "staying", subscribe=[("t", 0)])
    pub(hub, "t", b"hello")
    assert ep.payloads() == [b"hello"]
    assert staying.ep.payloads() == [b"hello"]
    assert hub.session("leaving") is None
