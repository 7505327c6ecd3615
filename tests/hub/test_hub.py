"""The Hub and its Sessions, driven through the hub API with a recording fake Endpoint."""

from collections import namedtuple
from dataclasses import dataclass

import pytest

from gateway.hub import sysinfo
from gateway.hub.api import READ, SUBSCRIBE_FAILED, WRITE, ClientInfo, Message
from gateway.hub.hub import Hub, HubSettings, allow_all_authenticate
from gateway.hub.sessions import Limits, Session
from gateway.hub.topics import topic_matches

Delivery = namedtuple("Delivery", "topic payload qos pid dup retain")


class FakeEndpoint:
    """Records what the hub asks a channel to send."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.messages: list[Message] = []
        self.pubrels: list[int] = []
        self.takeovers = 0

    def send_publish(self, message, qos, packet_id, dup, retain):
        self.messages.append(message)
        self.deliveries.append(Delivery(message.topic, message.payload, qos, packet_id, dup, retain))

    def send_pubrel(self, packet_id):
        self.pubrels.append(packet_id)

    def takeover(self):
        self.takeovers += 1

    def take(self) -> list[Delivery]:
        out, self.deliveries = self.deliveries, []
        return out

    def payloads(self) -> list[bytes]:
        return [d.payload for d in self.take()]


@dataclass
class Client:
    session: Session
    ep: FakeEndpoint
    present: bool


def join(hub, client_id, clean=True, will=None, subscribe=(), resume=True, ep=None):
    """Connect as a channel does: connect, (send CONNACK,) resume, then subscribe."""
    ep = ep or FakeEndpoint()
    session, present = hub.connect(ClientInfo(client_id), ep, clean, will)
    if resume:
        session.resume(ep)
    for topic_filter, qos in subscribe:
        assert hub.subscribe(session, topic_filter, qos) == qos
    return Client(session, ep, present)


def pub(hub, topic, payload=b"x", qos=0, retain=False, sender=None):
    return hub.publish(Message(topic, payload, qos, retain), sender)


# --- QoS --------------------------------------------------------------------------


@pytest.mark.parametrize("granted", [0, 1, 2])
@pytest.mark.parametrize("published", [0, 1, 2])
def test_delivery_is_downgraded_to_the_granted_qos(granted, published):
    hub = Hub()
    c = join(hub, "sub", subscribe=[("a/b", granted)])
    assert pub(hub, "a/b", b"hi", published) == 1
    [d] = c.ep.take()
    assert d.qos == min(granted, published)
    assert (d.pid is None) is (d.qos == 0)
    assert d.dup is False and d.retain is False


def test_qos2_publish_to_qos1_subscription_is_delivered_at_qos1():
    hub = Hub()
    c = join(hub, "sub", subscribe=[("t", 1)])
    pub(hub, "t", qos=2)
    assert c.ep.take() == [Delivery("t", b"x", 1, 1, False, False)]


def test_qos0_publish_to_qos2_subscription_is_delivered_at_qos0():
    hub = Hub()
    c = join(hub, "sub", subscribe=[("t", 2)])
    pub(hub, "t", qos=0)
    assert c.ep.take() == [Delivery("t", b"x", 0, None, False, False)]
    assert c.session.inflight == {}


@pytest.mark.parametrize("granted", [0, 1, 2])
@pytest.mark.parametrize("published", [0, 1, 2])
def test_upgrade_outgoing_qos_delivers_at_the_granted_qos(granted, published):
    hub = Hub(HubSettings(upgrade_outgoing_qos=True))
    c = join(hub, "sub", subscribe=[("a/b", granted)])
    pub(hub, "a/b", b"hi", published)
    [d] = c.ep.take()
    assert d.qos == granted
    assert (d.pid is None) is (granted == 0)


def test_overlapping_subscriptions_give_one_delivery_at_the_highest_qos():
    hub = Hub()
    c = join(hub, "sub", subscribe=[("a/+", 0), ("a/#", 2), ("a/b", 1), ("#", 0)])
    other = join(hub, "other", subscribe=[("a/b", 1)])
    assert pub(hub, "a/b", qos=2) == 2
    assert [(d.topic, d.qos) for d in c.ep.take()] == [("a/b", 2)]
    assert [(d.topic, d.qos) for d in other.ep.take()] == [("a/b", 1)]
    assert pub(hub, "a/b", qos=1) == 2
    assert [d.qos for d in c.ep.take()] == [1]


def test_one_message_object_is_handed_to_every_subscriber():
    """So ``message.cache`` lets a channel encode a fanned-out message once."""
    hub = Hub()
    a = join(hub, "a", subscribe=[("t", 0)])
    b = join(hub, "b", subscribe=[("t", 1)])
    m = Message("t", b"x", 1)
    hub.publish(m)
    assert a.ep.messages == [m] and a.ep.messages[0] is m
    assert b.ep.messages[0] is m


def test_publish_returns_the_number_of_sessions_reached():
    hub = Hub()
    join(hub, "a", subscribe=[("t/#", 0)])
    join(hub, "b", subscribe=[("t/+", 1), ("t/x", 2)])
    join(hub, "c", subscribe=[("other", 0)])
    assert pub(hub, "t/x") == 2
    assert pub(hub, "t") == 1
    assert pub(hub, "nothing") == 0


# --- retained ---------------------------------------------------------------------


def test_retain_flag_is_false_on_live_delivery():
    hub = Hub()
    c = join(hub, "sub", subscribe=[("a/b", 1)])
    pub(hub, "a/b", qos=1, retain=True)
    assert [d.retain for d in c.ep.take()] == [False]


def test_retain_as_published_option_keeps_the_flag():
    hub = Hub()
    c = join(hub, "sub")
    hub.subscribe(c.session, "a/b", 1, options=0x08)
    pub(hub, "a/b", qos=1, retain=True)
    pub(hub, "a/b", qos=1, retain=False)
    assert [d.retain for d in c.ep.take()] == [True, False]


def test_retained_message_is_stored_replaced_and_cleared_by_publish():
    hub = Hub()
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
    hub = Hub()
    pub(hub, "$SYS/x", b"s", retain=True)
    pub(hub, "a", b"a", retain=True)
    assert [m.topic for m in hub.retained("#")] == ["a"]
    assert hub.retained("+/x") == []
    assert [m.topic for m in hub.retained("$SYS/#")] == ["$SYS/x"]


def test_retain_not_available_means_nothing_is_stored():
    hub = Hub(HubSettings(retain_available=False))
    c = join(hub, "sub", subscribe=[("a", 0)])
    assert pub(hub, "a", b"r", retain=True) == 1
    assert hub.retained("#") == []
    assert hub.retained_message("a") is None
    assert c.ep.payloads() == [b"r"]


# --- subscribe / unsubscribe --------------------------------------------------------


def test_subscribe_grants_and_rejects():
    hub = Hub()
    c = join(hub, "sub")
    assert hub.subscribe(c.session, "a", 2) == 2
    assert hub.subscribe(c.session, "b", 3) == SUBSCRIBE_FAILED
    assert c.session.subscriptions == {"a": 2}
    assert hub.trie.count == 1


def test_resubscribing_replaces_the_qos():
    hub = Hub()
    c = join(hub, "sub", subscribe=[("a", 2)])
    hub.subscribe(c.session, "a", 0)
    assert hub.trie.count == 1
    assert c.session.subscriptions == {"a": 0}
    pub(hub, "a", qos=2)
    assert [d.qos for d in c.ep.take()] == [0]


def test_unsubscribe():
    hub = Hub()
    c = join(hub, "sub", subscribe=[("a/#", 1), ("b", 1)])
    assert hub.unsubscribe(c.session, "a/#") is True
    assert hub.unsubscribe(c.session, "a/#") is False
    assert hub.unsubscribe(c.session, "never") is False
    assert c.session.subscriptions == {"b": 1}
    assert pub(hub, "a/x") == 0
    assert pub(hub, "b") == 1


def test_no_local_option_skips_the_sender():
    hub = Hub()
    me = join(hub, "me")
    hub.subscribe(me.session, "t", 1, options=0x04)
    other = join(hub, "other", subscribe=[("t", 1)])
    pub(hub, "t", b"mine", 1, sender=me.session)
    pub(hub, "t", b"theirs", 1, sender=other.session)
    assert me.ep.payloads() == [b"theirs"]
    assert other.ep.payloads() == [b"mine", b"theirs"]


# --- clean and persistent sessions --------------------------------------------------


def test_clean_session_is_discarded_on_disconnect():
    hub = Hub()
    c = join(hub, "c", subscribe=[("a", 1)])
    assert c.present is False
    assert hub.session("c") is c.session
    hub.disconnect(c.session, graceful=True)
    assert hub.session("c") is None
    assert hub.trie.count == 0
    assert pub(hub, "a", qos=1) == 0
    again = join(hub, "c")
    assert again.present is False
    assert again.session is not c.session
    assert again.session.subscriptions == {}


def test_persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2_only():
    hub = Hub()
    c = join(hub, "p", clean=False, subscribe=[("a/#", 2)])
    assert c.present is False
    hub.disconnect(c.session, graceful=True)
    assert hub.session("p") is c.session
    assert hub.trie.count == 1

    assert pub(hub, "a/0", b"zero", 0) == 1
    pub(hub, "a/1", b"one", 1)
    pub(hub, "a/2", b"two", 2)
    assert c.session.queued == 2
    assert hub.queued_messages() == 2
    assert c.ep.take() == []

    back = join(hub, "p", clean=False, resume=False)
    assert back.present is True
    assert back.session is c.session
    assert back.ep.take() == []  # nothing before resume()
    back.session.resume(back.ep)
    assert back.ep.take() == [
        Delivery("a/1", b"one", 1, 1, False, False),
        Delivery("a/2", b"two", 2, 2, False, False),
    ]
    assert c.session.queued == 0
    assert set(c.session.inflight) == {1, 2}
    pub(hub, "a/3", b"three", 0)  # the subscription survived
    assert back.ep.payloads() == [b"three"]


def test_clean_connect_discards_a_persistent_session():
    hub = Hub()
    c = join(hub, "p", clean=False, subscribe=[("a", 1)])
    hub.disconnect(c.session, graceful=True)
    pub(hub, "a", qos=1)
    again = join(hub, "p", clean=True)
    assert again.present is False
    assert again.session is not c.session
    assert again.session.subscriptions == {} and again.session.queued == 0
    assert hub.trie.count == 0
    assert again.ep.take() == []
    assert c.session.queued == 0  # the old state was cleared


def test_persistent_reconnect_after_clean_session_is_not_present():
    hub = Hub()
    c = join(hub, "x", clean=True, subscribe=[("a", 1)])
    hub.disconnect(c.session, graceful=True)
    assert join(hub, "x", clean=False).present is False


def test_second_disconnect_is_a_no_op():
    hub = Hub()
    c = join(hub, "p", clean=False)
    hub.disconnect(c.session, graceful=True)
    hub.disconnect(c.session, graceful=False)
    assert hub.stats.clients_connected == 0
    assert hub.session("p") is c.session


# --- queue and inflight limits -----------------------------------------------------


def test_queue_overflow_drops_the_newest_and_counts_them():
    hub = Hub(HubSettings(limits=Limits(max_queued=3)))
    c = join(hub, "p", clean=False, subscribe=[("t", 1)])
    hub.disconnect(c.session, graceful=True)
    for i in range(5):
        pub(hub, "t", str(i).encode(), 1)
    assert c.session.queued == 3
    assert hub.stats.dropped == 2
    assert hub.sys.values()["publish/messages/dropped"] == 2
    back = join(hub, "p", clean=False)
    assert back.ep.payloads() == [b"0", b"1", b"2"]


def test_queue_byte_limit():
    hub = Hub(HubSettings(limits=Limits(max_queued=0, max_queued_bytes=10)))
    c = join(hub, "p", clean=False, subscribe=[("t", 1)])
    hub.disconnect(c.session, graceful=True)
    for payload in [b"aaaa", b"bbbb", b"cccc", b"dd"]:
        pub(hub, "t", payload, 1)
    assert hub.stats.dropped == 1
    back = join(hub, "p", clean=False)
    assert back.ep.payloads() == [b"aaaa", b"bbbb", b"dd"]


def test_queue_overflow_while_online_with_a_full_window():
    hub = Hub(HubSettings(limits=Limits(max_inflight=1, max_queued=1)))
    c = join(hub, "c", subscribe=[("t", 1)])
    for i in range(3):
        pub(hub, "t", str(i).encode(), 1)
    assert c.ep.payloads() == [b"0"]
    assert c.session.queued == 1
    assert hub.stats.dropped == 1
    c.session.acknowledge(1)
    assert c.ep.take() == [Delivery("t", b"1", 1, 2, False, False)]


def test_inflight_window_holds_the_21st_message_until_an_acknowledge():
    hub = Hub()
    assert hub.settings.limits.max_inflight == 20
    c = join(hub, "c", subscribe=[("t", 1)])
    for i in range(21):
        pub(hub, "t", str(i).encode(), 1)
    sent = c.ep.take()
    assert [d.pid for d in sent] == list(range(1, 21))
    assert c.session.queued == 1

    pub(hub, "t", b"qos0", 0)  # QoS 0 is not held by the window
    assert c.ep.payloads() == [b"qos0"]

    assert c.session.acknowledge(99) is False
    assert c.ep.take() == []
    assert c.session.acknowledge(1) is True
    assert c.ep.take() == [Delivery("t", b"20", 1, 21, False, False)]
    assert c.session.queued == 0

    pub(hub, "t", b"21", 1)  # window full again
    assert c.ep.take() == [] and c.session.queued == 1


def test_messages_leave_the_queue_in_order():
    hub = Hub(HubSettings(limits=Limits(max_inflight=3)))
    c = join(hub, "c", subscribe=[("t", 2)])
    for i in range(10):
        pub(hub, "t", str(i).encode(), 1)
    got = []
    while True:
        batch = c.ep.take()
        if not batch:
            break
        got += batch
        for d in batch:
            c.session.acknowledge(d.pid)
    assert [d.payload for d in got] == [str(i).encode() for i in range(10)]
    assert c.session.inflight == {} and c.session.queued == 0


def test_inflight_byte_window_always_admits_one_message():
    hub = Hub(HubSettings(limits=Limits(max_inflight=0, max_inflight_bytes=10)))
    c = join(hub, "c", subscribe=[("t", 1)])
    pub(hub, "t", b"x" * 50, 1)  # larger than the window, but nothing else is inflight
    pub(hub, "t", b"y", 1)
    assert c.ep.payloads() == [b"x" * 50]
    c.session.acknowledge(1)
    assert c.ep.payloads() == [b"y"]


def test_packet_ids_wrap_and_skip_ids_still_inflight():
    hub = Hub()
    c = join(hub, "c", subscribe=[("t", 1)])
    pub(hub, "t", b"a", 1)  # pid 1 stays inflight
    c.session._next_pid = 65534
    pub(hub, "t", b"b", 1)
    pub(hub, "t", b"c", 1)
    assert [d.pid for d in c.ep.take()] == [1, 65535, 2]


# --- redelivery -------------------------------------------------------------------


def test_inflight_messages_are_redelivered_with_dup_on_resume():
    hub = Hub()
    c = join(hub, "p", clean=False, subscribe=[("t", 1)])
    pub(hub, "t", b"one", 1)
    pub(hub, "t", b"two", 1)
    assert [(d.pid, d.dup) for d in c.ep.take()] == [(1, False), (2, False)]
    c.session.acknowledge(1)
    hub.disconnect(c.session, graceful=False)
    pub(hub, "t", b"three", 1)  # queued while away

    back = join(hub, "p", clean=False)
    assert back.present is True
    assert back.ep.take() == [
        Delivery("t", b"two", 1, 2, True, False),
        Delivery("t", b"three", 1, 3, False, False),
    ]
    assert back.session.acknowledge(2) and back.session.acknowledge(3)
    assert back.session.inflight == {}


def test_redelivery_keeps_the_retain_flag_it_was_sent_with():
    hub = Hub()
    c = join(hub, "p", clean=False)
    hub.subscribe(c.session, "t", 1, options=0x08)
    pub(hub, "t", b"r", 1, retain=True)
    hub.disconnect(c.session, graceful=False)
    back = join(hub, "p", clean=False)
    assert back.ep.take() == [Delivery("t", b"r", 1, 1, True, True)]


def test_qos2_outbound_resends_pubrel_after_pubrec():
    hub = Hub()
    c = join(hub, "p", clean=False, subscribe=[("t", 2)])
    pub(hub, "t", b"one", 2)
    pub(hub, "t", b"two", 2)
    pub(hub, "q1", b"", 1)
    assert [d.pid for d in c.ep.take()] == [1, 2]
    assert c.session.received_pubrec(1) is True
    assert c.session.received_pubrec(99) is False

    hub.disconnect(c.session, graceful=False)
    back = join(hub, "p", clean=False)
    assert back.ep.pubrels == [1]
    assert back.ep.take() == [Delivery("t", b"two", 2, 2, True, False)]

    assert back.session.acknowledge(1) is True  # PUBCOMP
    assert back.session.received_pubrec(2) is True
    assert back.session.acknowledge(2) is True
    assert back.session.inflight == {}


def test_pubrec_for_a_qos1_packet_id_is_refused():
    hub = Hub()
    c = join(hub, "c", subscribe=[("t", 1)])
    pub(hub, "t", qos=1)
    assert c.session.received_pubrec(1) is False
    assert c.session.acknowledge(1) is True


def test_inbound_qos2_duplicate_detection():
    hub = Hub()
    c = join(hub, "p", clean=False)
    s = c.session
    assert s.inbound_qos2_received(7) is True
    assert s.inbound_qos2_received(7) is False  # duplicate PUBLISH before PUBREL
    assert s.inbound_qos2_received(8) is True
    s.inbound_qos2_released(7)
    s.inbound_qos2_released(7)  # a second PUBREL is harmless
    assert s.inbound_qos2_received(7) is True

    hub.disconnect(s, graceful=False)
    back = join(hub, "p", clean=False)
    assert back.session.inbound_qos2_received(8) is False  # survives a reconnect

    hub.disconnect(back.session, graceful=True)
    fresh = join(hub, "p", clean=True)
    assert fresh.session.inbound_qos2_received(8) is True


# --- takeover and wills -------------------------------------------------------------


def test_takeover_of_a_clean_session():
    hub = Hub()
    watcher = join(hub, "watcher", subscribe=[("will/#", 1)])
    old = join(hub, "dup", will=Message("will/dup", b"gone", 1, False), subscribe=[("t", 0)])
    new = join(hub, "dup")
    assert old.ep.takeovers == 1
    assert new.ep.takeovers == 0
    assert watcher.ep.payloads() == [b"gone"]
    assert new.present is False
    assert hub.session("dup") is new.session
    assert new.session.subscriptions == {}
    assert hub.stats.clients_connected == 2

    # the old connection's transport closes afterwards: nothing happens
    hub.disconnect(old.session, graceful=False, endpoint=old.ep)
    assert hub.session("dup") is new.session
    assert new.session.endpoint is new.ep
    assert hub.stats.clients_connected == 2
    assert watcher.ep.take() == []
    pub(hub, "t")
    assert old.ep.take() == [] and new.ep.take() == []


def test_takeover_of_a_persistent_session():
    hub = Hub()
    watcher = join(hub, "watcher", subscribe=[("will/#", 0)])
    old = join(hub, "dup", clean=False, will=Message("will/dup", b"gone"), subscribe=[("t", 1)])
    pub(hub, "t", b"unacked", 1)
    assert old.ep.payloads() == [b"unacked"]
    new = join(hub, "dup", clean=False, will=Message("will/dup", b"new will"))
    assert old.ep.takeovers == 1
    assert watcher.ep.payloads() == [b"gone"]
    assert new.present is True
    assert new.session is old.session
    assert new.ep.take() == [Delivery("t", b"unacked", 1, 1, True, False)]

    # same Session object, so only the endpoint check keeps the successor attached
    hub.disconnect(old.session, graceful=False, endpoint=old.ep)
    assert new.session.endpoint is new.ep
    assert new.session.will is not None
    assert watcher.ep.take() == []
    assert hub.stats.clients_connected == 2
    pub(hub, "t", b"after", 1)
    assert old.ep.take() == []
    assert new.ep.payloads() == [b"after"]


def test_will_is_published_on_non_graceful_disconnect_only():
    hub = Hub()
    watcher = join(hub, "watcher", subscribe=[("will/+", 2)])
    a = join(hub, "a", will=Message("will/a", b"a died", 1, True))
    b = join(hub, "b", will=Message("will/b", b"b died", 1, False))
    hub.disconnect(b.session, graceful=True)
    assert watcher.ep.take() == []
    hub.disconnect(a.session, graceful=False)
    assert [(d.topic, d.payload, d.qos) for d in watcher.ep.take()] == [("will/a", b"a died", 1)]
    assert hub.retained_message("will/a").payload == b"a died"  # the will's retain flag
    hub.disconnect(a.session, graceful=False)  # already detached: no second will
    assert watcher.ep.take() == []


def test_will_of_a_persistent_session_is_not_kept_for_the_next_connection():
    hub = Hub()
    watcher = join(hub, "watcher", subscribe=[("will", 0)])
    p = join(hub, "p", clean=False, will=Message("will", b"first"))
    hub.disconnect(p.session, graceful=True)
    again = join(hub, "p", clean=False)  # no will this time
    hub.disconnect(again.session, graceful=False)
    assert watcher.ep.take() == []


def test_will_needs_write_permission():
    hub = Hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: access != WRITE)
    watcher = join(hub, "watcher", subscribe=[("will", 0)])
    a = join(hub, "a", will=Message("will", b"x"))
    hub.disconnect(a.session, graceful=False)
    assert watcher.ep.take() == []


# --- expiry -----------------------------------------------------------------------


def test_expire_sessions():
    hub = Hub(HubSettings(persistent_client_expiration=60))
    gone = join(hub, "gone", clean=False, subscribe=[("a", 1)])
    online = join(hub, "online", clean=False, subscribe=[("a", 1)])
    join(hub, "clean", subscribe=[("a", 1)])
    hub.disconnect(gone.session, graceful=True)
    pub(hub, "a", qos=1)
    t0 = gone.session.disconnected_at
    assert t0 is not None
    assert hub.expire_sessions(now=t0 + 60) == 0
    assert hub.expire_sessions(now=t0 + 61) == 1
    assert hub.session("gone") is None
    assert gone.session.queued == 0
    assert hub.trie.count == 2
    assert hub.session("online") is online.session
    assert hub.expire_sessions(now=t0 + 10**6) == 0  # connected sessions never expire


def test_no_expiry_without_a_configured_expiration():
    hub = Hub()
    p = join(hub, "p", clean=False)
    hub.disconnect(p.session, graceful=True)
    assert hub.expire_sessions(now=p.session.disconnected_at + 10**9) == 0
    assert hub.session("p") is p.session


def test_reconnecting_resets_the_expiry_clock():
    hub = Hub(HubSettings(persistent_client_expiration=60))
    p = join(hub, "p", clean=False)
    hub.disconnect(p.session, graceful=True)
    t0 = p.session.disconnected_at
    join(hub, "p", clean=False)
    assert p.session.disconnected_at is None
    assert hub.expire_sessions(now=t0 + 1000) == 0


# --- security hooks ---------------------------------------------------------------


def test_default_security_allows_everything():
    hub = Hub()
    who = ClientInfo("x")
    assert hub.authenticate(who, None) is True
    assert hub.authorize(who, READ, "secret/a") is True


def test_authenticate_hook():
    hub = Hub()
    hub.set_security(lambda client, password: password == b"pw", None)
    assert hub.authenticate(ClientInfo("x"), b"pw") is True
    assert hub.authenticate(ClientInfo("x"), b"no") is False


def test_authorizer_denying_read_stops_delivery():
    calls = []

    def authorize(client, access, topic):
        calls.append((client.client_id, access, topic))
        return not (access == READ and topic_matches("secret/#", topic))

    hub = Hub()
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
    hub = Hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: client.client_id != "denied")
    ok = join(hub, "ok", subscribe=[("t", 0)])
    denied = join(hub, "denied", subscribe=[("t", 0)])
    pub(hub, "t")
    assert len(ok.ep.take()) == 1
    assert denied.ep.take() == []


# --- stats and $SYS -----------------------------------------------------------------


def test_client_counters():
    hub = Hub()
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
    hub = Hub()
    v = hub.sys.values()
    assert MOSQUITTO_NAMES <= set(v)
    assert v["version"].startswith("mqttgateway version ")
    assert v["uptime"].endswith(" seconds")


def test_sys_values_follow_the_hub():
    hub = Hub()
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
    hub = Hub()
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
    hub = Hub()
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
    hub = Hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: client.client_id != "denied")
    join(hub, "ok", subscribe=[("t", 0)])
    denied = join(hub, "denied", subscribe=[("t", 0)])
    assert pub(hub, "t") == 1
    assert denied.ep.take() == []


def test_publish_count_leaves_out_the_no_local_sender():
    hub = Hub()
    me = join(hub, "me")
    hub.subscribe(me.session, "t", 1, options=0x04)
    assert pub(hub, "t", qos=1, sender=me.session) == 0


class DetachingEndpoint(FakeEndpoint):
    """A channel that closes synchronously while being written to (e.g. a slow consumer)."""

    hub: Hub
    session: Session

    def send_publish(self, message, qos, packet_id, dup, retain):
        super().send_publish(message, qos, packet_id, dup, retain)
        self.hub.disconnect(self.session, graceful=False, endpoint=self)


def test_fan_out_survives_a_subscriber_detaching_during_delivery():
    hub = Hub()
    ep = DetachingEndpoint()
    ep.hub = hub
    leaving = join(hub, "leaving", ep=ep, subscribe=[("t", 0)])
    ep.session = leaving.session
    staying = join(hub, "staying", subscribe=[("t", 0)])
    pub(hub, "t", b"hello")
    assert ep.payloads() == [b"hello"]
    assert staying.ep.payloads() == [b"hello"]
    assert hub.session("leaving") is None


class PidLoop(Exception):
    pass


class GuardedInflight(dict):
    """Session.inflight that stops a packet-id search running past every id."""

    probes = 0

    def __contains__(self, key):
        self.probes += 1
        if self.probes > 65536:
            raise PidLoop("packet id allocation probed more than 65535 ids")
        return dict.__contains__(self, key)

    def __setitem__(self, key, value):
        self.probes = 0
        dict.__setitem__(self, key, value)


class CountingEndpoint:
    def __init__(self):
        self.sent = 0

    def send_publish(self, message, qos, packet_id, dup, retain):
        self.sent += 1

    def send_pubrel(self, packet_id):
        pass

    def takeover(self):
        pass


def test_exhausted_packet_ids_queue_instead_of_looping():
    hub = Hub(HubSettings(limits=Limits(max_inflight=0)))
    ep = CountingEndpoint()
    session, _ = hub.connect(ClientInfo("slow"), ep, True)
    session.resume(ep)
    session.inflight = GuardedInflight()
    m = Message("t", b"x", 1)
    for _ in range(65535):
        session.deliver(m, 1, False)
    assert ep.sent == 65535 and len(session.inflight) == 65535
    session.deliver(m, 1, False)  # no free packet id left
    assert ep.sent == 65535
    assert session.queued == 1
    session.acknowledge(17)
    assert ep.sent == 65536
