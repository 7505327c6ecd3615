"""The persistence seam: what the hub reports to its journal is enough to rebuild it.

Each test runs traffic on a hub with a journal, then restores a new hub from what the
journal kept (as a restart would) and checks what survived. Every test runs against
the in-memory journal and against the SQLite store (``gateway.store.sqlite``), which
is closed and opened again in between.
"""

import pytest
from twisted.internet import task

from gateway.hub.api import Message, Properties, Subscription
from gateway.hub.hub import Hub, HubSettings
from gateway.hub.persistence import restore
from gateway.hub.sessions import AWAIT_COMP, SLEEP_KEY, Limits
from gateway.store.sqlite import SqliteStore
from tests.hub.helpers import FakeEndpoint, join, pub
from tests.hub.memory_journal import MemoryJournal


class Backend:
    """Makes journals of one kind and restarts a hub from one."""

    def __init__(self, kind, tmp_path):
        self.kind = kind
        self.path = str(tmp_path / "store.db")

    def journal(self):
        if self.kind == "memory":
            return MemoryJournal()
        return SqliteStore(self.path, autoflush=False)

    def hub(self, clock=None, settings=None):
        clock = clock or task.Clock()
        journal = self.journal()
        return Hub(settings, clock, journal), journal, clock

    def restart(self, journal, clock, settings=None):
        """A new hub and a new journal, rebuilt from what the old journal kept."""
        if self.kind == "memory":
            fresh, snapshot = MemoryJournal(), journal.snapshot()
        else:
            journal.close()
            fresh = SqliteStore(self.path, autoflush=False)
            snapshot = fresh.load(now=clock.seconds())
        hub = Hub(settings, clock, fresh)
        restore(hub, snapshot, {})
        return hub, fresh

    def rows(self, journal, table):
        """What the journal holds in ``table`` now: client ids (and shares for outgoing)."""
        if self.kind == "memory":
            kept = {"sessions": journal.sessions, "subscriptions": journal.subs,
                    "outgoing": journal.outgoing_rows}[table]
            if table == "outgoing":
                return sorted((o.client_id, o.share) for o in kept.values())
            return sorted(k if isinstance(k, str) else k[0] for k in kept)
        journal.flush_now()
        if table == "outgoing":
            return sorted((c, (n, f) if n else None) for c, n, f in journal.conn.execute(
                "SELECT client_id, share_name, share_filter FROM outgoing"))
        return sorted(c for (c,) in journal.conn.execute(f"SELECT client_id FROM {table}"))

    def disconnected_at(self, journal, client_id):
        if self.kind == "memory":
            return journal.sessions[client_id].disconnected_at
        journal.flush_now()
        return journal.conn.execute("SELECT disconnected_at FROM sessions WHERE client_id = ?",
                                    (client_id,)).fetchone()[0]

    def changed(self, journal):
        return journal.calls > 0 if self.kind == "memory" else journal._pending


@pytest.fixture(params=["memory", "sqlite"])
def backend(request, tmp_path):
    return Backend(request.param, tmp_path)


def test_retained_messages_survive_with_their_properties_and_expiry(backend):
    hub, journal, clock = backend.hub()
    props = Properties(content_type="text/plain", user_properties=(("k", "v"),))
    hub.publish(Message("a", b"1", 1, True, props, expires_at=clock.seconds() + 100))
    hub.publish(Message("b", b"2", 0, True))
    hub.publish(Message("b", b"", 0, True))     # cleared
    again, _ = backend.restart(journal, clock)
    [m] = again.retained("#")
    assert (m.topic, m.payload, m.qos, m.props, m.expires_at) == ("a", b"1", 1, props, 100.0)


def test_persistent_sessions_survive_clean_ones_do_not(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, subscribe=[("t/#", Subscription(1, identifier=4)), ("$share/g/j", 2)])
    join(hub, "c", subscribe=[("t/#", 1)])
    hub.disconnect(p.session, graceful=True)
    again, _ = backend.restart(journal, clock)
    assert set(again.sessions) == {"p"}
    session = again.session("p")
    assert session.subscriptions == {"t/#": Subscription(1, identifier=4), "$share/g/j": Subscription(2)}
    assert again.has_subscribers("t/x") and again.has_subscribers("j")


def test_queued_and_inflight_messages_survive_in_order_with_their_ids(backend):
    settings = HubSettings(limits=Limits(max_inflight=2))
    hub, journal, clock = backend.hub(settings=settings)
    p = join(hub, "p", clean=False, subscribe=[("t", 2)])
    for i in range(4):
        pub(hub, "t", b"%d" % i, qos=2)
    p.session.received_pubrec(1)
    hub.disconnect(p.session, graceful=False)
    again, _ = backend.restart(journal, clock, settings)
    ep = FakeEndpoint()
    session, present = again.connect(p.session.client, ep, False, None)
    assert present
    session.resume(ep)
    assert ep.pubrels == [1]
    assert [(d.payload, d.pid, d.dup) for d in ep.take()] == [(b"1", 2, True)]
    session.acknowledge(2)
    assert [(d.payload, d.pid) for d in ep.take()] == [(b"2", 3)]


def test_acknowledged_messages_are_gone_after_a_restart(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, subscribe=[("t", 1)])
    pub(hub, "t", b"acked", qos=1)
    p.session.acknowledge(1)
    pub(hub, "t", b"not yet", qos=1)
    again, _ = backend.restart(journal, clock)
    outs = list(again.session("p").inflight.values())
    assert [o.message.payload for o in outs] == [b"not yet"]


def test_inbound_qos2_waiting_for_pubrel_survives(backend):
    hub, journal, clock = backend.hub()
    sub = join(hub, "sub", clean=False, subscribe=[("t", 0)])
    p = join(hub, "p", clean=False)
    held = Message("t", b"held", 2)
    p.session.inbound_qos2_received(7, 42, held)
    hub.disconnect(sub.session, graceful=True)
    again, _ = backend.restart(journal, clock)
    session = again.session("p")
    assert session.inbound_qos2_pending(7, 42)
    known, message = session.inbound_qos2_released(7)
    assert known and message.payload == b"held"


def test_session_expiry_runs_on_the_wall_clock_across_the_restart(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, expiry=100)
    hub.disconnect(p.session, graceful=True)
    clock.advance(60)
    again, _ = backend.restart(journal, clock)
    clock.advance(39)
    assert again.session("p") is not None
    clock.advance(2)
    assert again.session("p") is None


def test_a_pending_will_survives_and_goes_out_on_time(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, expiry=600, will=Message("will", b"gone"), will_delay=30)
    hub.disconnect(p.session, graceful=False)
    clock.advance(10)
    again, _ = backend.restart(journal, clock)
    watcher = join(again, "w", subscribe=[("will", 0)])
    clock.advance(19)
    assert watcher.ep.take() == []
    clock.advance(2)
    assert watcher.ep.payloads() == [b"gone"]


def test_a_session_connected_when_the_process_stopped_loses_its_connection_then(backend):
    hub, journal, clock = backend.hub()
    join(hub, "p", clean=False, will=Message("will", b"crashed"))
    again, fresh = backend.restart(journal, clock)
    assert again.retained_message("will") is None
    watcher_subs = again.session("p")
    assert watcher_subs.endpoint is None and watcher_subs.disconnected_at == clock.seconds()
    assert backend.disconnected_at(fresh, "p") == clock.seconds()


def test_a_session_whose_client_sleeps_waits_with_its_will_for_its_protocol(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, will=Message("will", b"lost"))
    p.session.own_extra()[SLEEP_KEY] = 600          # as a protocol marks a sleeping client
    p.session.changed()
    again, fresh = backend.restart(journal, clock)
    watcher = join(again, "w", subscribe=[("will", 0)])
    session = again.session("p")
    assert session.endpoint is None and session.extra[SLEEP_KEY] == 600
    assert session.will.payload == b"lost" and watcher.ep.take() == []
    # A connection (the protocol taking it up, or the client coming back) clears the mark.
    join(again, "p", clean=False, will=session.will)
    assert SLEEP_KEY not in session.extra
    again.disconnect(session, graceful=False)
    assert watcher.ep.payloads() == [b"lost"]


def test_a_sleeping_session_no_protocol_takes_up_loses_its_client(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, will=Message("will", b"lost"))
    join(hub, "q", clean=False)
    for s in (p.session, hub.session("q")):
        s.own_extra()[SLEEP_KEY] = 600
        s.changed()
    again, fresh = backend.restart(journal, clock)
    watcher = join(again, "w", subscribe=[("will", 0)])
    assert again.lose_sleepers() == 2
    assert watcher.ep.payloads() == [b"lost"]
    assert again.stats.clients_connected == 1       # the watcher alone
    assert backend.disconnected_at(fresh, "q") == clock.seconds()
    assert again.lose_sleepers() == 0
    third, _ = backend.restart(fresh, clock)
    assert all(SLEEP_KEY not in s.extra for s in third.sessions.values())


def test_connecting_and_disconnecting_clear_the_sleep_mark(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False)
    p.session.own_extra()[SLEEP_KEY] = 600
    hub.disconnect(p.session, graceful=True)
    assert SLEEP_KEY not in p.session.extra
    again, fresh = backend.restart(journal, clock)
    assert SLEEP_KEY not in again.session("p").extra


def test_expiry_changed_to_zero_removes_the_stored_session(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, subscribe=[("t", 1)])
    hub.set_expiry(p.session, 0)
    assert backend.rows(journal, "sessions") == backend.rows(journal, "subscriptions") == []


def test_nothing_is_journaled_for_clean_sessions(backend):
    hub, journal, clock = backend.hub()
    c = join(hub, "c", subscribe=[("t", 1)])
    pub(hub, "t", b"x", qos=1)
    c.session.acknowledge(1)
    assert not backend.changed(journal)


def test_shared_message_in_flight_is_reassigned_in_the_journal_too(backend):
    hub, journal, clock = backend.hub()
    a = join(hub, "a", clean=False, subscribe=[("$share/g/t", 1)])
    join(hub, "b", clean=False, subscribe=[("$share/g/t", 1)])
    pub(hub, "t", b"1", qos=1)
    pub(hub, "t", b"2", qos=1)
    hub.disconnect(a.session, graceful=False)
    assert backend.rows(journal, "outgoing") == [("b", ("g", "t")), ("b", ("g", "t"))]


def test_outbound_qos2_waiting_for_pubcomp_survives_as_such(backend):
    hub, journal, clock = backend.hub()
    p = join(hub, "p", clean=False, subscribe=[("t", 2)])
    pub(hub, "t", b"x", qos=2)
    p.session.received_pubrec(1)
    again, _ = backend.restart(journal, clock)
    [out] = again.session("p").inflight.values()
    assert out.state == AWAIT_COMP
