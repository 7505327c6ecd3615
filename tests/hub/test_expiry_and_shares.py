"""Session and message expiry, delayed wills, retain handling, subscription identifiers,
shared subscriptions and ACL results, through the hub API."""

from twisted.internet import task

from gateway.hub.api import (
    READ, SUBSCRIBE, WRITE, ClientInfo, Denied, Message, Reason, RetainHandling, Subscription,
)
from gateway.hub.hub import HubSettings, allow_all_authenticate
from gateway.hub.sessions import Limits
from tests.hub.helpers import FakeEndpoint, join, make_hub, pub

# --- session expiry ----------------------------------------------------------------


def test_session_expiry_interval_keeps_the_session_that_long():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    c = join(hub, "p", clean=False, expiry=30, subscribe=[("t", 1)])
    hub.disconnect(c.session, graceful=True)
    pub(hub, "t", b"queued", 1)
    clock.advance(29)
    back = join(hub, "p", clean=False, expiry=30)
    assert back.present and back.ep.payloads() == [b"queued"]
    hub.disconnect(back.session, graceful=True)
    clock.advance(30.5)
    assert hub.session("p") is None
    assert hub.trie.count == 0


def test_expiry_zero_ends_the_session_at_disconnect_even_without_clean_start():
    hub = make_hub()
    c = join(hub, "p", clean=False, expiry=0, subscribe=[("t", 1)])
    hub.disconnect(c.session, graceful=True)
    assert hub.session("p") is None


def test_never_expiring_session_ignores_nothing_but_persistent_client_expiration():
    clock = task.Clock()
    hub = make_hub(HubSettings(persistent_client_expiration=100), clock)
    c = join(hub, "forever", clean=False, expiry="never")
    hub.disconnect(c.session, graceful=True)
    clock.advance(101)
    assert hub.session("forever") is None


def test_changed_persistent_client_expiration_applies_to_offline_sessions():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    c = join(hub, "p", clean=False)
    hub.disconnect(c.session, graceful=True)
    clock.advance(50)
    hub.settings.persistent_client_expiration = 60
    hub.refresh_expiries()
    clock.advance(9)
    assert hub.session("p") is not None
    clock.advance(2)
    assert hub.session("p") is None


# --- wills ---------------------------------------------------------------------------


def test_delayed_will_waits_and_is_cancelled_by_a_reconnect():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    watcher = join(hub, "w", subscribe=[("will", 0)])
    c = join(hub, "p", clean=False, expiry=300, will=Message("will", b"gone"), will_delay=10)
    hub.disconnect(c.session, graceful=False)
    clock.advance(9)
    assert watcher.ep.take() == []
    join(hub, "p", clean=False, expiry=300)
    clock.advance(100)
    assert watcher.ep.take() == []


def test_delayed_will_goes_out_after_the_delay():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    watcher = join(hub, "w", subscribe=[("will", 0)])
    c = join(hub, "p", clean=False, expiry=300, will=Message("will", b"gone"), will_delay=10)
    hub.disconnect(c.session, graceful=False)
    clock.advance(10)
    assert watcher.ep.payloads() == [b"gone"]
    clock.advance(1000)
    assert watcher.ep.take() == []


def test_delayed_will_goes_out_when_the_session_ends_first():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    watcher = join(hub, "w", subscribe=[("will", 0)])
    c = join(hub, "p", clean=False, expiry=5, will=Message("will", b"gone"), will_delay=60)
    hub.disconnect(c.session, graceful=False)
    clock.advance(5)
    assert watcher.ep.payloads() == [b"gone"]
    assert hub.session("p") is None


def test_will_delay_holds_for_a_session_ending_at_disconnect_without_clean_start():
    """As Mosquitto: the client may come back within the delay, even with a new session."""
    clock = task.Clock()
    hub = make_hub(clock=clock)
    watcher = join(hub, "w", subscribe=[("will", 0)])
    c = join(hub, "p", clean=False, expiry=0, will=Message("will", b"later"), will_delay=60)
    hub.disconnect(c.session, graceful=False)
    assert hub.session("p") is None
    assert watcher.ep.payloads() == []
    clock.advance(60)
    assert watcher.ep.payloads() == [b"later"]
    c = join(hub, "p", clean=False, expiry=0, will=Message("will", b"cancelled"), will_delay=60)
    hub.disconnect(c.session, graceful=False)
    join(hub, "p")
    clock.advance(100)
    assert watcher.ep.payloads() == []


def test_will_delay_ends_with_a_clean_session_at_disconnect():
    """Clean Start 1 and no session expiry: the session, and the delay, end at once."""
    clock = task.Clock()
    hub = make_hub(clock=clock)
    watcher = join(hub, "w", subscribe=[("will", 0)])
    c = join(hub, "p", will=Message("will", b"now"), will_delay=60)
    hub.disconnect(c.session, graceful=False)
    assert watcher.ep.payloads() == [b"now"]


def test_takeover_by_a_clean_start_publishes_the_old_will():
    hub = make_hub()
    watcher = join(hub, "w", subscribe=[("will", 0)])
    old = join(hub, "p", clean=False, will=Message("will", b"old"))
    join(hub, "p", clean=True)
    assert old.ep.closed == [Reason.SESSION_TAKEN_OVER]
    assert watcher.ep.payloads() == [b"old"]


# --- message expiry ------------------------------------------------------------------


def test_queued_message_past_its_expiry_is_not_delivered():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    c = join(hub, "p", clean=False, subscribe=[("t", 1)])
    hub.disconnect(c.session, graceful=True)
    hub.publish(Message("t", b"short", 1, expires_at=clock.seconds() + 5))
    hub.publish(Message("t", b"long", 1, expires_at=clock.seconds() + 50))
    clock.advance(10)
    back = join(hub, "p", clean=False)
    assert back.ep.payloads() == [b"long"]
    assert hub.stats.expired == 1


def test_retained_message_expires():
    clock = task.Clock()
    hub = make_hub(clock=clock)
    hub.publish(Message("t", b"r", 0, True, expires_at=clock.seconds() + 5))
    assert hub.retained_message("t") is not None
    clock.advance(6)
    assert hub.retained("#") == []
    assert hub.retained_message("t") is None
    assert len(hub.retained_store) == 0


# --- subscriptions ---------------------------------------------------------------------


def test_subscription_identifiers_reach_the_endpoint():
    hub = make_hub()
    c = join(hub, "c", subscribe=[("a/+", Subscription(1, identifier=3)), ("a/#", Subscription(0, identifier=8))])
    pub(hub, "a/b", qos=1)
    assert sorted(c.ep.sub_ids[0]) == [3, 8]
    pub(hub, "x", qos=1)
    assert len(c.ep.sub_ids) == 1


def test_retain_handling():
    hub = make_hub()
    pub(hub, "r", b"kept", retain=True)
    c = join(hub, "c")
    for handling, expected in [(RetainHandling.SEND, [b"kept"]), (RetainHandling.SEND, [b"kept"]),
                               (RetainHandling.SEND_IF_NEW, []), (RetainHandling.NEVER, [])]:
        result = hub.subscribe(c.session, "r", Subscription(0, retain_handling=handling))
        hub.deliver_retained(c.session, result)
        assert c.ep.payloads() == expected
    hub.unsubscribe(c.session, "r")
    result = hub.subscribe(c.session, "r", Subscription(0, retain_handling=RetainHandling.SEND_IF_NEW))
    hub.deliver_retained(c.session, result)
    assert c.ep.payloads() == [b"kept"]


def test_retained_messages_keep_the_retain_flag_and_their_subscription_ids():
    hub = make_hub()
    pub(hub, "r", b"kept", qos=1, retain=True)
    c = join(hub, "c", subscribe=[("r", Subscription(1, identifier=5))])
    [d] = c.ep.take()
    assert d.retain is True and d.qos == 1
    assert c.ep.sub_ids == [(5,)]


def test_publish_from_is_checked_against_the_acl_and_counted():
    hub = make_hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: not (access == WRITE and topic == "no"))
    sender = join(hub, "s")
    reader = join(hub, "r", subscribe=[("#", 0)])
    assert hub.publish_from(sender.session, Message("yes", b"1")) == 1
    refused = hub.publish_from(sender.session, Message("no", b"2"))
    assert refused == Denied(Reason.NOT_AUTHORIZED)
    assert reader.ep.payloads() == [b"1"]
    assert hub.stats.denied_publish == 1
    assert hub.sys.values()["publish/messages/denied"] == 1


def test_subscribe_is_checked_against_the_acl():
    hub = make_hub()
    hub.set_security(allow_all_authenticate, lambda client, access, topic: access != SUBSCRIBE or topic != "secret")
    c = join(hub, "c")
    assert hub.subscribe(c.session, "secret", Subscription(1)) == Denied(Reason.NOT_AUTHORIZED)
    assert hub.subscribe(c.session, "open", Subscription(1)).qos == 1
    assert hub.stats.denied_subscribe == 1
    assert list(c.session.subscriptions) == ["open"]


def test_retain_not_available_refuses_a_retained_publish_from_a_client():
    hub = make_hub(HubSettings(retain_available=False))
    c = join(hub, "c")
    assert hub.publish_from(c.session, Message("t", b"r", 0, True)) == Denied(Reason.RETAIN_NOT_SUPPORTED)


def test_check_retain_source_drops_retained_messages_of_a_publisher_who_lost_write_access():
    hub = make_hub(HubSettings(check_retain_source=True))
    allowed = {"writer"}
    hub.set_security(allow_all_authenticate,
                     lambda client, access, topic: access != WRITE or client.client_id in allowed)
    writer = join(hub, "writer")
    hub.publish_from(writer.session, Message("r", b"v", 0, True))
    assert join(hub, "a", subscribe=[("r", 0)]).ep.payloads() == [b"v"]
    allowed.clear()
    assert join(hub, "b", subscribe=[("r", 0)]).ep.payloads() == []
    assert hub.retained_message("r") is None


def test_queued_messages_are_checked_again_after_the_acl_changed():
    hub = make_hub()
    readable = {"a", "b"}
    hub.set_security(allow_all_authenticate, lambda client, access, topic: access != READ or topic in readable)
    c = join(hub, "p", clean=False, subscribe=[("+", 1)])
    hub.disconnect(c.session, graceful=True)
    pub(hub, "a", b"a", 1)
    pub(hub, "b", b"b", 1)
    readable.discard("b")
    assert join(hub, "p", clean=False).ep.payloads() == [b"a"]


# --- shared subscriptions ------------------------------------------------------------


def test_shared_subscription_gives_each_message_to_one_member_in_turn():
    hub = make_hub()
    members = [join(hub, f"m{i}", subscribe=[("$share/g/t/#", 1)]) for i in range(3)]
    plain = join(hub, "plain", subscribe=[("t/#", 0)])
    for i in range(6):
        assert pub(hub, "t/x", str(i).encode(), 1) == 2
    got = [m.ep.payloads() for m in members]
    assert sorted(len(g) for g in got) == [2, 2, 2]
    assert sorted(p for g in got for p in g) == [str(i).encode() for i in range(6)]
    assert len(plain.ep.take()) == 6


def test_shared_subscription_skips_a_member_whose_window_is_full():
    hub = make_hub(HubSettings(limits=Limits(max_inflight=1)))
    busy = join(hub, "busy", subscribe=[("$share/g/t", 1)])
    free = join(hub, "free", subscribe=[("$share/g/t", 1)])
    pub(hub, "t", b"1", 1)
    pub(hub, "t", b"2", 1)
    pub(hub, "t", b"3", 1)
    first = busy.ep.payloads() + free.ep.payloads()
    assert sorted(first) == [b"1", b"2"]
    assert busy.session.queued + free.session.queued == 1


def test_shared_messages_in_flight_to_a_leaving_member_go_to_another():
    hub = make_hub()
    a = join(hub, "a", clean=False, subscribe=[("$share/g/t", 1)])
    b = join(hub, "b", subscribe=[("$share/g/t", 1)])
    pub(hub, "t", b"1", 1)
    pub(hub, "t", b"2", 1)
    got_a, got_b = a.ep.payloads(), b.ep.payloads()
    assert len(got_a) == len(got_b) == 1
    hub.disconnect(a.session, graceful=False)
    assert b.ep.payloads() == got_a  # a had not acknowledged it
    assert a.session.inflight == {}


def test_shared_subscription_is_not_sent_retained_messages():
    hub = make_hub()
    pub(hub, "t", b"r", retain=True)
    m = join(hub, "m", subscribe=[("$share/g/t", 0)])
    assert m.ep.take() == []


def test_malformed_shared_filter_is_refused():
    hub = make_hub()
    c = join(hub, "c")
    for bad in ["$share/g", "$share//t", "$share/g+/t", "$share/g/"]:
        result = hub.subscribe(c.session, bad, Subscription(0))
        assert isinstance(result, Denied) and result.reason is Reason.TOPIC_INVALID, bad


def test_unsubscribe_from_a_shared_subscription():
    hub = make_hub()
    c = join(hub, "c", subscribe=[("$share/g/t", 1)])
    assert hub.unsubscribe(c.session, "$share/g/t") is True
    assert pub(hub, "t", qos=1) == 0
    assert hub.trie.count == 0


def test_too_large_for_the_client_is_dropped_as_if_delivered():
    hub = make_hub()
    ep = FakeEndpoint(accepts=lambda m: len(m.payload) < 10)
    c = join(hub, "c", ep=ep, subscribe=[("t", 1)])
    pub(hub, "t", b"x" * 20, 1)
    pub(hub, "t", b"ok", 1)
    assert c.ep.payloads() == [b"ok"]
    assert list(c.session.inflight) == [2]


def test_client_receive_maximum_narrows_the_window():
    hub = make_hub()
    ep = FakeEndpoint()
    session, _ = hub.connect(ClientInfo("c"), ep, True, 0)
    session.receive_maximum = 2
    session.resume(ep)
    hub.subscribe(session, "t", Subscription(1))
    for i in range(4):
        pub(hub, "t", str(i).encode(), 1)
    assert ep.payloads() == [b"0", b"1"]
    assert session.queued == 2


def test_upgrade_outgoing_qos_applies_to_retained_messages():
    hub = make_hub(HubSettings(upgrade_outgoing_qos=True))
    pub(hub, "r", b"kept", qos=0, retain=True)
    c = join(hub, "c", subscribe=[("r", 2)])
    [d] = c.ep.take()
    assert (d.qos, d.retain) == (2, True)
