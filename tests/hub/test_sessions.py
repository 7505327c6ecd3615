"""Sessions through the hub API: clean and persistent, queue and inflight limits,
redelivery, takeover and wills, expiry."""

import pytest
from twisted.internet import task

from gateway.hub.api import WRITE, ClientInfo, Message, Subscription
from gateway.hub.hub import HubSettings, allow_all_authenticate
from gateway.hub.sessions import UNFILLED, Limits
from tests.hub.helpers import make_hub, Delivery, join, pub

# --- clean and persistent sessions --------------------------------------------------


def test_clean_session_is_discarded_on_disconnect():
    hub = make_hub()
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


def test_idle_sessions_share_one_empty_mapping_that_is_never_written():
    hub = make_hub()
    a, b = join(hub, "a").session, join(hub, "b", clean=False, subscribe=[("t", 1)]).session
    assert a.inflight is a.subscriptions is a.extra is b.inflight is UNFILLED
    with pytest.raises(TypeError):
        a.inflight[1] = None
    assert b.subscriptions == {"t": Subscription(1)} and UNFILLED == {}
    pub(hub, "t", qos=1)
    assert list(b.inflight) == [1] and UNFILLED == {}
    b.own_extra()["k"] = 1
    assert b.extra == {"k": 1} and a.extra == {}
    b.clear_state()
    assert b.inflight is b.subscriptions is b.extra is UNFILLED


def test_persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2_only():
    hub = make_hub()
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
    hub = make_hub()
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
    hub = make_hub()
    c = join(hub, "x", clean=True, subscribe=[("a", 1)])
    hub.disconnect(c.session, graceful=True)
    assert join(hub, "x", clean=False).present is False


def test_second_disconnect_is_a_no_op():
    hub = make_hub()
    c = join(hub, "p", clean=False)
    hub.disconnect(c.session, graceful=True)
    hub.disconnect(c.session, graceful=False)
    assert hub.stats.clients_connected == 0
    assert hub.session("p") is c.session


# --- queue and inflight limits -----------------------------------------------------


def test_queue_overflow_drops_the_newest_and_counts_them():
    hub = make_hub(HubSettings(limits=Limits(max_queued=3)))
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
    hub = make_hub(HubSettings(limits=Limits(max_queued=0, max_queued_bytes=10)))
    c = join(hub, "p", clean=False, subscribe=[("t", 1)])
    hub.disconnect(c.session, graceful=True)
    for payload in [b"aaaa", b"bbbb", b"cccc", b"dd"]:
        pub(hub, "t", payload, 1)
    assert hub.stats.dropped == 1
    back = join(hub, "p", clean=False)
    assert back.ep.payloads() == [b"aaaa", b"bbbb", b"dd"]


def test_queue_overflow_while_online_with_a_full_window():
    hub = make_hub(HubSettings(limits=Limits(max_inflight=1, max_queued=1)))
    c = join(hub, "c", subscribe=[("t", 1)])
    for i in range(3):
        pub(hub, "t", str(i).encode(), 1)
    assert c.ep.payloads() == [b"0"]
    assert c.session.queued == 1
    assert hub.stats.dropped == 1
    c.session.acknowledge(1)
    assert c.ep.take() == [Delivery("t", b"1", 1, 2, False, False)]


def test_inflight_window_holds_the_21st_message_until_an_acknowledge():
    hub = make_hub()
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
    hub = make_hub(HubSettings(limits=Limits(max_inflight=3)))
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
    hub = make_hub(HubSettings(limits=Limits(max_inflight=0, max_inflight_bytes=10)))
    c = join(hub, "c", subscribe=[("t", 1)])
    pub(hub, "t", b"x" * 50, 1)  # larger than the window, but nothing else is inflight
    pub(hub, "t", b"y", 1)
    assert c.ep.payloads() == [b"x" * 50]
    c.session.acknowledge(1)
    assert c.ep.payloads() == [b"y"]


def test_packet_ids_wrap_and_skip_ids_still_inflight():
    hub = make_hub()
    c = join(hub, "c", subscribe=[("t", 1)])
    pub(hub, "t", b"a", 1)  # pid 1 stays inflight
    c.session._next_pid = 65534
    pub(hub, "t", b"b", 1)
    pub(hub, "t", b"c", 1)
    assert [d.pid for d in c.ep.take()] == [1, 65535, 2]


# --- redelivery -------------------------------------------------------------------


def test_inflight_messages_are_redelivered_with_dup_on_resume():
    hub = make_hub()
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
    hub = make_hub()
    c = join(hub, "p", clean=False)
    hub.subscribe(c.session, "t", Subscription(1, retain_as_published=True))
    pub(hub, "t", b"r", 1, retain=True)
    hub.disconnect(c.session, graceful=False)
    back = join(hub, "p", clean=False)
    assert back.ep.take() == [Delivery("t", b"r", 1, 1, True, True)]


def test_qos2_outbound_resends_pubrel_after_pubrec():
    hub = make_hub()
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
    hub = make_hub()
    c = join(hub, "c", subscribe=[("t", 1)])
    pub(hub, "t", qos=1)
    assert c.session.received_pubrec(1) is False
    assert c.session.acknowledge(1) is True


def test_inbound_qos2_duplicate_detection():
    hub = make_hub()
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
    hub = make_hub()
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
    hub = make_hub()
    watcher = join(hub, "watcher", subscribe=[("will/#", 0)])
    old = join(hub, "dup", clean=False, will=Message("will/dup", b"gone"), subscribe=[("t", 1)])
    pub(hub, "t", b"unacked", 1)
    assert old.ep.payloads() == [b"unacked"]
    new = join(hub, "dup", clean=False, will=Message("will/dup", b"new will"))
    assert old.ep.takeovers == 1
    assert watcher.ep.payloads() == []  # the session goes on: no will (as Mosquitto)
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
    hub = make_hub()
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
    hub = make_hub()
    watcher = join(hub, "watcher", subscribe=[("will", 0)])
    p = join(hub, "p", clean=False, will=Message("will", b"first"))
    hub.disconnect(p.session, graceful=True)
    again = join(hub, "p", clean=False)  # no will this time
    hub.disconnect(again.session, graceful=False)
    assert watcher.ep.take() == []


def test_will_needs_write_permission():
    hub = make_hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: access != WRITE)
    watcher = join(hub, "watcher", subscribe=[("will", 0)])
    a = join(hub, "a", will=Message("will", b"x"))
    hub.disconnect(a.session, graceful=False)
    assert watcher.ep.take() == []


# --- expiry -----------------------------------------------------------------------


def test_persistent_client_expiration_ends_sessions_on_the_clock():
    clock = task.Clock()
    hub = make_hub(HubSettings(persistent_client_expiration=60), clock)
    gone = join(hub, "gone", clean=False, subscribe=[("a", 1)])
    online = join(hub, "online", clean=False, subscribe=[("a", 1)])
    join(hub, "clean", subscribe=[("a", 1)])
    hub.disconnect(gone.session, graceful=True)
    pub(hub, "a", qos=1)
    assert gone.session.disconnected_at == clock.seconds()
    clock.advance(59.5)
    assert hub.session("gone") is gone.session
    clock.advance(1)
    assert hub.session("gone") is None
    assert gone.session.queued == 0
    assert hub.trie.count == 2
    clock.advance(10**6)
    assert hub.session("online") is online.session  # connected sessions never expire


def test_no_expiry_without_a_configured_expiration():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    p = join(hub, "p", clean=False)
    hub.disconnect(p.session, graceful=True)
    clock.advance(10**9)
    assert hub.session("p") is p.session
    assert len(hub.deadlines) == 0


def test_reconnecting_resets_the_expiry_clock():
    clock = task.Clock()
    hub = make_hub(HubSettings(persistent_client_expiration=60), clock)
    p = join(hub, "p", clean=False)
    hub.disconnect(p.session, graceful=True)
    clock.advance(30)
    join(hub, "p", clean=False)
    assert p.session.disconnected_at is None
    clock.advance(1000)
    assert hub.session("p") is p.session


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

    def send_publish(self, message, qos, packet_id, dup, retain, sub_ids=()):
        self.sent += 1
        return True

    def send_pubrel(self, packet_id):
        pass

    def close(self, reason):
        pass


def test_exhausted_packet_ids_queue_instead_of_looping():
    hub = make_hub(HubSettings(limits=Limits(max_inflight=0)))
    ep = CountingEndpoint()
    session, _ = hub.connect(ClientInfo("slow"), ep, True, 0)
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
