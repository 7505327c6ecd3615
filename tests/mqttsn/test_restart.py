"""What an MQTT-SN client's persistent session keeps across a restart: its topic
registrations (both directions), subscriptions and queued messages, rebuilt from what
the journal kept (``extra`` written as JSON, as a store does); a sleeping client sleeps
through it. And the answers that wait for the store."""

from __future__ import annotations

from twisted.internet import task

from gateway.hub.sessions import SLEEP_KEY
from gateway.mqttsn.states import ASLEEP

from tests.hub.memory_journal import MemoryJournal
from tests.mqttsn import wire as w
from tests.mqttsn.helpers import Client, Rig, connected


def restarted(journal: MemoryJournal, clock: task.Clock) -> Rig:
    return Rig(journal=MemoryJournal(), clock=clock, snapshot=journal.snapshot())


def test_registrations_subscriptions_and_queued_messages_survive() -> None:
    clock = task.Clock()
    journal = MemoryJournal()
    rig = Rig(journal=journal, clock=clock)
    c = connected(rig, "sensor", flags=0)
    assert c.ask(w.register(0, 1, "room/temp")) == [w.regack(1, 1, w.ACCEPTED)]
    assert c.ask(w.subscribe(2, "room/set", 1)) == [w.suback(2, 2, w.ACCEPTED, 1)]
    assert c.ask(w.subscribe(3, "alerts/#", 1)) == [w.suback(0, 3, w.ACCEPTED, 1)]
    rig.publish("alerts/fire", b"!", qos=1)
    assert c.take() == [w.register(3, 1, "alerts/fire")]
    c.send(w.regack(3, 1, w.ACCEPTED))
    assert c.take() == [w.publish(3, b"!", qos=1, msg_id=1)]
    c.send(w.puback(3, 1, w.ACCEPTED))
    assert c.ask(w.disconnect()) == [w.disconnect()]
    rig.publish("room/set", b"21", qos=1)  # queued for the offline session

    again = restarted(journal, clock)
    obs = again.observe("room/#")
    c = again.client()
    # No REGISTER: id 2 is known.
    assert c.ask(w.connect("sensor", 60, 0)) == [w.connack(), w.publish(2, b"21", qos=1, msg_id=2)]
    c.send(w.puback(2, 2, w.ACCEPTED))
    assert c.ask(w.publish(1, b"19", qos=1, msg_id=7)) == [w.puback(1, 7, w.ACCEPTED)]
    assert obs.got == [("room/temp", b"19", 1, False)]
    again.publish("alerts/flood", b"~")
    assert c.take() == [w.register(4, 1, "alerts/flood")]  # ids go on from the highest


def test_a_registration_the_client_never_confirmed_is_not_kept() -> None:
    clock = task.Clock()
    journal = MemoryJournal()
    rig = Rig(journal=journal, clock=clock)
    c = connected(rig, "sensor", flags=0)
    assert c.ask(w.subscribe(1, "a/#", 1)) == [w.suback(0, 1, w.ACCEPTED, 1)]
    rig.publish("a/b", b"x", qos=1)
    assert c.take() == [w.register(1, 1, "a/b")]
    assert c.ask(w.disconnect()) == [w.disconnect()]  # REGACK never came

    again = restarted(journal, clock)
    c = again.client()
    assert c.ask(w.connect("sensor", 60, 0)) == [w.connack(), w.register(1, 1, "a/b")]


# --- sleeping clients -----------------------------------------------------------------------


def asleep(rig: Rig) -> Client:
    """A persistent client with a will, subscribed to t (QoS 1), gone to sleep for 100 s."""
    c = connected(rig, "sensor", flags=0, will=("dead/sensor", b"lost"))
    assert c.ask(w.subscribe(1, "t", 1)) == [w.suback(1, 1, w.ACCEPTED, 1)]
    assert c.ask(w.disconnect(100)) == [w.disconnect()]
    return c


def test_a_sleeping_client_sleeps_through_a_restart() -> None:
    clock = task.Clock()
    journal = MemoryJournal()
    rig = Rig(journal=journal, clock=clock)
    asleep(rig)
    rig.publish("t", b"in flight", qos=1)
    rig.publish("t", b"queued", qos=1)
    rig.publish("t", b"at most once")       # QoS 0: held by the channel alone

    again = restarted(journal, clock)
    obs = again.observe("dead/#")
    assert again.ctx.counters.asleep == 1
    assert again.hub.session("sensor").client.peer == "(asleep since the restart)"
    c = again.client(40001)                 # it wakes up wherever it is now
    assert c.ask(w.pingreq("sensor")) == [w.publish(1, b"in flight", 1, 1, dup=True)]
    assert c.ask(w.puback(1, 1)) == [w.publish(1, b"queued", 1, 2)]
    assert c.ask(w.puback(1, 2)) == [w.pingresp()]
    assert c.channel.state == ASLEEP
    again.publish("t", b"later", qos=1)
    assert c.ask(w.pingreq("sensor")) == [w.publish(1, b"later", 1, 1)]
    assert obs.got == []                    # never lost: no will
    # Still supervised: silent for 1.5 times its sleep duration, it is lost.
    c.send(w.puback(1, 1))
    clock.advance(151)
    assert c.channel is None
    assert obs.got == [("dead/sensor", b"lost", 0, False)]


def test_a_client_that_slept_through_a_restart_is_lost_if_it_never_wakes() -> None:
    clock = task.Clock()
    journal = MemoryJournal()
    asleep(Rig(journal=journal, clock=clock))
    again = restarted(journal, clock)
    obs = again.observe("dead/#")
    clock.advance(149)
    assert obs.got == []
    clock.advance(2)
    assert obs.got == [("dead/sensor", b"lost", 0, False)]
    assert again.hub.session("sensor").endpoint is None


def test_a_client_that_slept_through_a_restart_may_connect_again() -> None:
    clock = task.Clock()
    journal = MemoryJournal()
    rig = Rig(journal=journal, clock=clock)
    asleep(rig)
    rig.publish("t", b"kept", qos=1)
    again = restarted(journal, clock)
    obs = again.observe("dead/#")
    c = again.client(40001)
    assert c.ask(w.connect("sensor", 60, 0)) == [w.connack(), w.publish(1, b"kept", 1, 1, dup=True)]
    assert obs.got == []
    assert c.ask(w.puback(1, 1)) == []
    assert c.ask(w.disconnect()) == [w.disconnect()]
    assert obs.got == []


def test_at_shutdown_a_stored_sleeping_client_stays_asleep() -> None:
    clock = task.Clock()
    journal = MemoryJournal()
    rig = Rig(journal=journal, clock=clock)
    obs = rig.observe("dead/#")
    sleeper = asleep(rig)
    clean = connected(rig, "clean", 40001, flags=w.CLEAN, will=("dead/clean", b"lost"))
    assert clean.ask(w.disconnect(100)) == [w.disconnect()]
    rig.ctx.remove_network(rig.net)
    # The clean one is told, and its will goes out; the stored one is left asleep.
    assert clean.take() == [w.disconnect()] and sleeper.take() == []
    assert obs.got == [("dead/clean", b"lost", 0, False)]
    assert journal.sessions["sensor"].disconnected_at is None
    again = restarted(journal, clock)
    assert again.hub.session("sensor").endpoint is not None


def test_an_updated_will_is_stored_before_it_is_confirmed() -> None:
    """WILLTOPICUPD/WILLMSGUPD change a persistent session's will: after a crash the
    new will is the one that goes out, and each RESP waits for the commit."""
    rig, journal = held_rig()
    c = connected(rig, "sensor", flags=0, will=("dead/sensor", b"lost"))
    journal.commit()
    assert c.ask(w.willtopicupd("dead/moved", qos=1)) == []
    journal.commit()
    assert c.take() == [w.willtopicresp()]
    assert c.ask(w.willmsgupd(b"gone")) == []
    journal.commit()
    assert c.take() == [w.willmsgresp()]
    stored = journal.messages[journal.sessions["sensor"].will_id]
    assert (stored.topic, stored.payload, stored.qos) == ("dead/moved", b"gone", 1)


def test_without_a_store_a_sleeping_client_is_lost_at_shutdown() -> None:
    rig = Rig()
    obs = rig.observe("dead/#")
    sleeper = asleep(rig)
    rig.ctx.remove_network(rig.net)
    assert sleeper.take() == [w.disconnect()]
    assert obs.got == [("dead/sensor", b"lost", 0, False)]


# --- acknowledgements wait for the store ---------------------------------------------------


def held_rig() -> tuple[Rig, MemoryJournal]:
    journal = MemoryJournal()
    journal.holding = True
    return Rig(journal=journal), journal


def test_puback_pubrec_pubcomp_and_regack_wait_for_the_commit_in_order() -> None:
    rig, journal = held_rig()
    c = connected(rig, "sensor", flags=0)
    assert c.ask(w.register(0, 1, "room/temp")) == []
    assert c.ask(w.publish(1, b"1", qos=1, msg_id=2)) == []
    assert c.ask(w.publish(1, b"2", qos=0)) == []  # QoS 0: nothing to answer
    assert c.ask(w.publish(1, b"3", qos=2, msg_id=3)) == []
    journal.commit()
    assert c.take() == [w.regack(1, 1), w.puback(1, 2), w.pubrec(3)]
    assert c.ask(w.pubrel(3)) == []
    journal.commit()
    assert c.take() == [w.pubcomp(3)]


def test_qos2_to_a_persistent_session_waits_for_its_message_id_to_be_stored() -> None:
    rig, journal = held_rig()
    c = connected(rig, "sensor", flags=0)
    assert c.ask(w.subscribe(1, "ab", 2, id_type=w.SHORT)) == []
    journal.commit()
    assert c.take() == [w.suback(0, 1, w.ACCEPTED, 2)]
    rig.publish("ab", b"x", qos=2)
    assert c.take() == []
    journal.commit()
    assert c.take() == [w.publish("ab", b"x", qos=2, msg_id=1, id_type=w.SHORT)]
    c.send(w.pubrec(1))
    assert c.take() == []
    journal.commit()
    assert c.take() == [w.pubrel(1)]


def test_a_persistent_suback_and_its_retained_messages_wait_for_the_commit() -> None:
    rig, journal = held_rig()
    journal.holding = False
    rig.publish("ab", b"kept", qos=1, retain=True)
    journal.holding = True
    c = connected(rig, "sensor", flags=0)
    assert c.ask(w.subscribe(1, "ab", 1, id_type=w.SHORT)) == []
    assert journal.subs  # the subscription is reported, not yet durable
    journal.commit()
    got = c.take()
    assert got[0] == w.suback(0, 1, w.ACCEPTED, 1)
    assert [m[7:] for m in got[1:]] == [b"kept"]
    assert c.ask(w.unsubscribe(2, "ab", id_type=w.SHORT)) == []
    journal.commit()
    assert c.take() == [w.unsuback(2)]


def test_a_clean_session_is_answered_at_once() -> None:
    rig, journal = held_rig()
    c = connected(rig, "sensor")
    assert c.ask(w.subscribe(1, "ab", 1, id_type=w.SHORT)) == [w.suback(0, 1, w.ACCEPTED, 1)]
    assert c.ask(w.unsubscribe(2, "ab", id_type=w.SHORT)) == [w.unsuback(2)]


def test_the_answer_to_a_sleep_waits_for_the_commit() -> None:
    rig, journal = held_rig()
    c = connected(rig, "sensor", flags=0)
    assert c.ask(w.disconnect(60)) == []
    assert journal.sessions["sensor"].extra[SLEEP_KEY] == 60
    journal.commit()
    assert c.take() == [w.disconnect()]


def test_answers_held_for_a_closed_connection_are_never_sent() -> None:
    rig, journal = held_rig()
    c = connected(rig, "sensor", flags=0)
    c.ask(w.register(0, 1, "room/temp"))
    c.ask(w.publish(1, b"1", qos=1, msg_id=2))
    assert c.ask(w.disconnect()) == [w.disconnect()]
    journal.commit()
    assert c.take() == []
