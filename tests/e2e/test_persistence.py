"""persistence true: what survives a restart (SIGTERM) and a crash (SIGKILL).

Each test runs a gateway with a store in a folder of its own, stops it, starts a new
one on the same store (on another port) and checks with real clients (paho-mqtt at
3.1.1 and 5, raw packets where a client must leave a flow half done) what is there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests import wire
from tests.e2e.clients import RawClient

DATA = Path(__file__).resolve().parent.parent / "data" / "store"
SESSION_EXPIRY = 0x11
WILL_DELAY = 0x18
MESSAGE_EXPIRY = 0x02


def raw(port: int, client_id: str, clean: bool = False, level: int = 4,
        properties: bytes = b"", **kwargs) -> tuple[RawClient, bool]:
    client = RawClient(port)
    present, code = client.connect(client_id, clean=clean, proto_level=level,
                                   properties=properties, **kwargs)
    assert code == 0
    return client, present


def read_publish(client: RawClient, level: int = 4) -> tuple[int, str, int, bytes]:
    """The next packet, which must be a PUBLISH: (flags, topic, packet id, payload)."""
    first, body = client.read_packet()
    assert first & 0xF0 == 0x30, f"expected PUBLISH, got {first:#04x} {body!r}"
    n = int.from_bytes(body[:2], "big")
    topic = body[2:2 + n].decode()
    rest = body[2 + n:]
    pid = 0
    if first & 0x06:
        pid, rest = int.from_bytes(rest[:2], "big"), rest[2:]
    if level == 5:
        plen = rest[0]   # short property blocks only
        rest = rest[1 + plen:]
    return first & 0x0F, topic, pid, rest


LEVELS = pytest.mark.parametrize("level", [4, 5], ids=["v311", "v5"])


# --- retained messages ----------------------------------------------------------------


@LEVELS
def test_retained_messages_survive_a_restart(stores, paho, level):
    gw = stores.start()
    pub = paho(gw.port, "pub", level)
    pub.connect()
    pub.publish("r/a", b"kept", 1, retain=True)
    pub.publish("r/b", b"cleared", 1, retain=True)
    pub.publish("r/b", b"", 1, retain=True)
    pub.publish("r/c", b"\x00binary\xff", 0, retain=True)
    pub.disconnect()
    stores.restart()
    sub = paho(stores.port, "sub", level)
    sub.connect()
    sub.subscribe("r/#", 1)
    got = sorted((m.topic, m.payload, m.retain) for m in (sub.next_message(), sub.next_message()))
    assert got == [("r/a", b"kept", True), ("r/c", b"\x00binary\xff", True)]
    assert sub.messages.empty()


def test_retained_message_expiry_counts_the_downtime(stores, paho):
    gw = stores.start()
    pub = paho(gw.port, "pub", 5)
    pub.connect()
    for topic, expiry in (("e/short", 1), ("e/long", 3600)):
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = expiry
        info = pub.client.publish(topic, b"x", 1, True, props)
        info.wait_for_publish(10)
    pub.disconnect()
    gw.stop()
    time.sleep(1.5)        # the short one expires while the gateway is down
    stores.start()
    sub = paho(stores.port, "sub", 5)
    sub.connect()
    sub.subscribe("e/#", 1)
    sub.client.publish("e/zz", b"end", 0)
    got = sub.wait_for("e/zz")
    assert [m.topic for m in got] == ["e/long", "e/zz"]
    assert 0 < got[0].properties.MessageExpiryInterval <= 3600


# --- sessions, subscriptions, queued messages ---------------------------------------------


@LEVELS
def test_session_subscriptions_and_queued_messages_survive(stores, paho, level):
    gw = stores.start()
    sub = paho(gw.port, "keeper", level, clean_session=False)
    sub.connect()
    assert sub.subscribe("q/one", 1) == [1]
    assert sub.subscribe("q/two", 2) == [2]
    sub.disconnect()
    pub = paho(gw.port, "pub", level)
    pub.connect()
    pub.publish("q/one", b"first", 1)
    pub.publish("q/two", b"second", 2)
    pub.disconnect()
    stores.restart()
    pub = paho(stores.port, "pub2", level)
    pub.connect()
    pub.publish("q/one", b"after the restart", 1)   # the subscription came back too
    sub = paho(stores.port, "keeper", level, clean_session=False)
    assert sub.connect() is True
    # paho hands a QoS 2 message over at its PUBREL, so the order is not the wire's.
    got = sorted((m.topic, m.payload, m.qos) for m in (sub.next_message() for _ in range(3)))
    assert got == [("q/one", b"after the restart", 1), ("q/one", b"first", 1),
                   ("q/two", b"second", 2)]


def test_session_expiry_runs_on_the_wall_clock_while_down(stores):
    gw = stores.start()
    for client_id, expiry in (("short", 1), ("long", 3600)):
        client, _ = raw(gw.port, client_id, clean=True, level=5,
                        properties=wire.prop_u32(SESSION_EXPIRY, expiry))
        client.send(wire.subscribe(1, [("t", 1)], proto_ver=5))
        client.read_packet()
        client.send(wire.disconnect(proto_ver=5))
        client.close()
    stores.restart()
    time.sleep(1.5)   # past the short session's expiry, counted from its disconnection
    for client_id, present in (("short", False), ("long", True)):
        client, was = raw(stores.port, client_id, clean=False, level=5,
                          properties=wire.prop_u32(SESSION_EXPIRY, 3600))
        assert was is present, client_id
        client.close()


def test_sessions_of_clean_clients_are_not_kept(stores, paho):
    gw = stores.start()
    sub = paho(gw.port, "clean", 4, clean_session=True)
    sub.connect()
    sub.subscribe("t", 1)
    stores.restart()
    client, present = raw(stores.port, "clean", clean=False)
    assert present is False


# --- flows left half done -------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
@LEVELS
def test_inflight_message_is_redelivered_with_dup(stores, paho, level, sig):
    gw = stores.start()
    client, _ = raw(gw.port, "taker", level=level,
                    properties=wire.prop_u32(SESSION_EXPIRY, 3600) if level == 5 else b"")
    client.send(wire.subscribe(1, [("fly/#", 2)], proto_ver=level))
    client.read_packet()
    pub = paho(gw.port, "pub", level)
    pub.connect()
    pub.publish("fly/one", b"unacknowledged", 1)
    pub.publish("fly/two", b"awaiting PUBCOMP", 2)
    flags, topic, pid1, payload = read_publish(client, level)
    assert (topic, flags & 0x08) == ("fly/one", 0)
    flags, topic, pid2, payload = read_publish(client, level)
    client.send(wire.pubrec(pid2, proto_ver=level))
    first, body = client.read_packet()
    assert first == 0x62                      # PUBREL: the PUBREC is recorded
    pub.disconnect()
    stores.restart(sig)
    client, present = raw(stores.port, "taker", level=level,
                          properties=wire.prop_u32(SESSION_EXPIRY, 3600) if level == 5 else b"")
    assert present
    flags, topic, pid, payload = read_publish(client, level)
    assert (topic, payload, pid, bool(flags & 0x08)) == ("fly/one", b"unacknowledged", pid1, True)
    first, body = client.read_packet()
    assert (first, int.from_bytes(body[:2], "big")) == (0x62, pid2)
    client.send(wire.puback(pid1, proto_ver=level))
    client.send(wire.pubcomp(pid2, proto_ver=level))
    client.send(wire.disconnect(proto_ver=level))
    client.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_inbound_qos2_awaiting_pubrel_is_delivered_once(stores, paho, sig):
    gw = stores.start()
    sub = paho(gw.port, "watcher", 4, clean_session=False)
    sub.connect()
    sub.subscribe("in/#", 2)
    sub.disconnect()
    client, _ = raw(gw.port, "sender")
    client.send(wire.publish("in/two", b"exactly once", qos=2, mid=9))
    client.expect(wire.pubrec(9))
    stores.restart(sig)
    client, present = raw(stores.port, "sender")
    assert present
    client.send(wire.publish("in/two", b"exactly once", qos=2, mid=9, dup=True))
    client.expect(wire.pubrec(9))
    client.send(wire.pubrel(9))
    client.expect(wire.pubcomp(9))
    client.send(wire.pubrel(9))                # repeated: completed, not published again
    client.expect(wire.pubcomp(9))
    sub = paho(stores.port, "watcher", 4, clean_session=False)
    sub.connect()
    marker = paho(stores.port, "marker", 4)
    marker.connect()
    marker.publish("in/end", b"", 2)    # QoS 2 as well: paho hands both over at PUBREL
    assert [(m.topic, m.payload) for m in sub.wait_for("in/end")] == [
        ("in/two", b"exactly once"), ("in/end", b"")]


def test_pending_will_with_delay_survives(stores, paho):
    gw = stores.start()
    client, _ = raw(gw.port, "mortal", clean=True, level=5,
                    properties=wire.prop_u32(SESSION_EXPIRY, 60),
                    will_topic="wills/mortal", will_payload=b"gone",
                    will_properties=wire.prop_u32(WILL_DELAY, 4))
    client.close()          # no DISCONNECT: the will is due in 4 s
    stores.restart()
    watcher = paho(stores.port, "watcher", 4)
    watcher.connect()
    watcher.subscribe("wills/#", 0)
    m = watcher.next_message(timeout=15)
    assert (m.topic, m.payload) == ("wills/mortal", b"gone")


def test_a_will_of_a_client_connected_at_a_crash_goes_out_at_restart(stores, paho):
    gw = stores.start()
    watcher = paho(gw.port, "watcher", 4, clean_session=False)
    watcher.connect()
    watcher.subscribe("wills/#", 1)
    watcher.disconnect()
    client, _ = raw(gw.port, "crashing", clean=False, will_topic="wills/crashing",
                    will_payload=b"lost", will_qos=1)
    # A PUBACK comes once the store has everything before it (the session and its will).
    client.send(wire.publish("x", b"", qos=1, mid=1))
    client.expect(wire.puback(1))
    stores.restart(signal.SIGKILL)
    watcher = paho(stores.port, "watcher", 4, clean_session=False)
    assert watcher.connect()
    m = watcher.next_message()
    assert (m.topic, m.payload) == ("wills/crashing", b"lost")
    client.close()


# --- shutdown -------------------------------------------------------------------------


def test_sigterm_commits_and_exits_0(stores, paho):
    gw = stores.start()
    sub = paho(gw.port, "offline", 4, clean_session=False)
    sub.connect()
    sub.subscribe("t", 1)
    sub.disconnect()
    pub = paho(gw.port, "pub", 4)
    pub.connect()
    for i in range(50):
        pub.client.publish("t", b"%d" % i, 1)
    pub.publish("t", b"last", 1)
    assert gw.stop() == 0
    gw.wait_for_log("mqttgateway stopped")
    db = sqlite3.connect(stores.path)
    assert db.execute("SELECT count(*) FROM outgoing").fetchone()[0] == 51
    db.close()


# --- files that cannot be used ------------------------------------------------------------

BROKEN = [
    ("sqlite-newer-version.db", "store format version 2 is newer than this gateway knows (1)"),
    ("sqlite-foreign.db", "a foreign SQLite database (application_id 0x0)"),
    ("sqlite-corrupt.db", "corrupt store"),
    ("notes.txt", "not an mqttgateway store (starts b'meeting notes\\n'"),
    ("v6-mosquitto-2.0.11.db", "this is a Mosquitto persistence file, not an mqttgateway store"),
]


@pytest.mark.parametrize(("name", "reason"), BROKEN)
def test_an_unusable_store_stops_startup(stores, name, reason):
    stores.folder.mkdir(exist_ok=True)
    if name == "notes.txt":
        stores.path.write_bytes(b"meeting notes\n")
    else:
        shutil.copy(DATA / name, stores.path)
    before = stores.path.read_bytes()
    gw = stores.start(wait=False)
    assert gw.wait_exit() == 1
    gw.wait_for_log(f"{stores.path}: {reason}")
    assert stores.path.read_bytes() == before       # never reset


def test_a_second_gateway_on_the_same_store_stops(stores):
    first = stores.start()
    second = stores.start_gateway(*stores.lines, wait=False)
    assert second.wait_exit() == 1
    second.wait_for_log(f"{stores.path}: locked by another process")
    assert first.running()
    stores.gw = first


def test_a_missing_folder_stops_startup(gateway, tmp_path):
    gw = gateway("persistence true", f"persistence_location {tmp_path}/absent/", wait=False)
    assert gw.wait_exit() == 1
    gw.wait_for_log(f"{tmp_path}/absent/mqttgateway.db: no such directory")


# --- replacing Mosquitto ----------------------------------------------------------------

MOSQUITTO = "/usr/sbin/mosquitto"


def _mosquitto_db_maker():
    spec = importlib.util.spec_from_file_location("make_mosquitto_db", DATA / "make_mosquitto_db.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason="Debian's mosquitto is not installed")
def test_first_start_imports_the_mosquitto_db_beside_the_store(stores, paho, tmp_path):
    made = _mosquitto_db_maker().make("v6-mosquitto-2.0.11.db", tmp_path)
    stores.folder.mkdir(exist_ok=True)
    shutil.copy(made, stores.folder / "mosquitto.db")
    gw = stores.start()
    gw.wait_for_log(f"imported {stores.folder}/mosquitto.db: 3 retained messages, 3 sessions, "
                    "6 subscriptions")
    reader = paho(gw.port, "reader", 4)
    reader.connect()
    reader.subscribe("r/#", 0)
    got = {m.topic: m.payload for m in (reader.next_message() for _ in range(3))}
    assert got == {"r/plain": b"21.5", "r/binary": b"\x00\x01\xfe\xff", "r/v5": b'{"t": 21.5}'}
    session = paho(gw.port, "sess-311", 4, clean_session=False)
    assert session.connect() is True
    got = sorted(m.payload for m in (session.next_message() for _ in range(5)))
    assert got == sorted([b"first", b"second", b"third, sent at QoS 2", b"fourth",
                          b"for the shared subscription"])
    session.disconnect()
    # The store is ours from now on: a restart does not import again.
    gw = stores.restart()
    assert "imported" not in gw.stderr
    assert (stores.folder / "mosquitto.db").read_bytes() == made.read_bytes()


def test_a_broken_mosquitto_db_beside_stops_startup_without_making_a_store(stores):
    stores.folder.mkdir(exist_ok=True)
    shutil.copy(DATA / "corrupt-truncated.db", stores.folder / "mosquitto.db")
    gw = stores.start(wait=False)
    assert gw.wait_exit() == 1
    gw.wait_for_log(f"{stores.folder}/mosquitto.db: retain chunk at offset 1671")
    assert not stores.path.exists()


def test_persistence_file_naming_a_mosquitto_db_stops_startup(gateway, tmp_path):
    shutil.copy(DATA / "v6-mosquitto-2.0.11.db", tmp_path / "mosquitto.db")
    gw = gateway("persistence true", f"persistence_location {tmp_path}/",
                 "persistence_file mosquitto.db", wait=False)
    assert gw.wait_exit() == 1
    gw.wait_for_log(f"{tmp_path}/mosquitto.db: this is a Mosquitto persistence file, not an "
                    "mqttgateway store; import it with 'mqttgateway-db import'")
