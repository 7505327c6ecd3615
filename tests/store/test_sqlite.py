"""The SQLite store on its own: batches, coalescing, reference counts, the file's
identity and version, locking, the golden file, importing Mosquitto's state."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import task

from gateway.errors import StoreError
from gateway.hub.api import ClientInfo, Message, Properties, Subscription
from gateway.hub.hub import Hub
from gateway.hub.persistence import restore
from gateway.store import schema
from gateway.store.cli import main as db_main
from gateway.store.mosquitto_db import read_mosquitto_db
from gateway.store.mosquitto_import import snapshot_from_mosquitto
from gateway.store.sqlite import SqliteStore
from tests.hub.helpers import FakeEndpoint, join, pub

DATA = Path(__file__).resolve().parent.parent / "data" / "store"
GOLDEN_START = 1_800_000_000.0     # tests/data/store/make_sqlite_stores.py


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "store.db")


def rows(store, table, columns="*"):
    store.flush_now()
    return store.conn.execute(f"SELECT {columns} FROM {table}").fetchall()


def hub_on(store, clock=None):
    return Hub(None, clock or task.Clock(), store)


# --- batches ------------------------------------------------------------------------


def test_a_delivery_queued_and_acknowledged_in_one_batch_is_never_written(path):
    store = SqliteStore(path, autoflush=False)
    hub = hub_on(store)
    p = join(hub, "p", clean=False, subscribe=[("t", 1)])
    store.flush_now()
    pub(hub, "t", b"x", qos=1)
    p.session.acknowledge(1)
    statements = store._statements()
    assert [sql for sql, _ in statements] == []
    assert rows(store, "messages") == [] and rows(store, "outgoing") == []


def test_a_message_for_many_sessions_and_retained_is_one_row_until_its_last_reference(path):
    store = SqliteStore(path, autoflush=False)
    hub = hub_on(store)
    clients = [join(hub, f"c{i}", clean=False, subscribe=[("t", 1)]) for i in range(3)]
    hub.publish(Message("t", b"shared", 1, True))
    assert rows(store, "messages", "topic, payload") == [("t", b"shared")]
    assert len(rows(store, "outgoing")) == 3
    for c in clients:
        c.session.acknowledge(1)
    assert rows(store, "messages", "topic") == [("t",)]       # the retained copy keeps it
    hub.publish(Message("t", b"", 0, True))
    assert rows(store, "messages") == [] and rows(store, "retained") == []
    assert store.message_count == 0 and store.bytes == 0


def test_an_ended_session_takes_its_rows_and_messages_along(path):
    store = SqliteStore(path, autoflush=False)
    hub = hub_on(store)
    p = join(hub, "p", clean=False, subscribe=[("t", 2), ("u", 1)])
    pub(hub, "t", b"1", qos=2)
    pub(hub, "u", b"2", qos=1)
    p.session.inbound_qos2_received(3, 99, Message("x", b"held", 2))
    store.flush_now()
    hub.set_expiry(p.session, 0)
    for table in ("sessions", "subscriptions", "outgoing", "inbound", "messages"):
        assert rows(store, table) == [], table


def test_a_session_ended_and_started_again_in_one_batch_keeps_the_new_rows(path):
    store = SqliteStore(path, autoflush=False)
    hub = hub_on(store)
    p = join(hub, "p", clean=False, subscribe=[("old", 1)])
    store.flush_now()
    hub.disconnect(p.session, graceful=True)
    join(hub, "p", clean=True, expiry=60, subscribe=[("new", 1)])
    assert rows(store, "subscriptions", "topic_filter") == [("new",)]
    assert rows(store, "sessions", "client_id, expiry") == [("p", 60)]


def test_sys_topics_are_not_stored(path):
    store = SqliteStore(path, autoflush=False)
    hub = hub_on(store)
    hub.publish_sys()
    assert rows(store, "retained") == [] and not store._pending


def test_barrier_is_none_when_idle_and_a_deferred_per_caller_otherwise(path):
    store = SqliteStore(path, autoflush=False)
    hub = hub_on(store)
    assert hub.durable() is None and store.barrier() is None
    join(hub, "p", clean=False)
    assert store.barrier() is store.barrier()  # one batch, shared by its waiters
    first, second = hub.durable(), hub.durable()
    assert first is not second
    fired = []
    first.addCallback(fired.append)
    second.addCallback(lambda _: fired.append("second"))
    store.flush_now()
    assert fired == [None, "second"]
    assert hub.durable() is None


@pytest_twisted.inlineCallbacks
def test_the_writer_thread_commits_and_fires_the_barrier(path):
    """With a reactor: the batch goes to the writer thread at the end of the turn."""
    from twisted.internet import reactor

    store = SqliteStore(path)
    hub = Hub(None, reactor, store)
    store.load()
    join(hub, "p", clean=False, subscribe=[("t", 1)])
    pub(hub, "t", b"x", qos=1)
    yield hub.durable()
    assert store.stats.commits == 1
    pub(hub, "t", b"y", qos=1)
    yield store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM outgoing").fetchone() == (2,)


def test_sys_values_and_the_commit_histogram(path):
    store = SqliteStore(path, autoflush=False)
    hub = hub_on(store)
    store.attach(hub)
    hub.publish(Message("r", b"12345", 0, True))
    store.flush_now()
    values = hub.sys.values()
    assert (values["store/messages/count"], values["store/messages/bytes"]) == (1, 5)
    assert values["store/commits"] == 1
    [(labels, (buckets, total))] = hub.stats.probes["store_commit_seconds"].samples()
    assert buckets[-1] == (float("inf"), 1) and total > 0


# --- the file ------------------------------------------------------------------------


def test_a_newer_version_is_refused(path):
    shutil.copy(DATA / "sqlite-newer-version.db", path)
    with pytest.raises(StoreError) as e:
        SqliteStore(path)
    assert str(e.value) == (f"{path}: store format version 2 is newer than this gateway knows "
                            "(1); run the gateway version that wrote it, or move the file away "
                            "to start empty")


@pytest.mark.parametrize(("name", "reason"), [
    ("sqlite-foreign.db", "a foreign SQLite database (application_id 0x0), not an mqttgateway "
                          "store; point persistence_file elsewhere"),
    ("sqlite-corrupt.db", "corrupt store: "),
    ("v6-mosquitto-2.0.11.db", "this is a Mosquitto persistence file, not an mqttgateway store"),
    ("corrupt-foreign.db", "corrupt store: "),
])
def test_unusable_files_are_refused_and_left_alone(path, name, reason):
    shutil.copy(DATA / name, path)
    before = Path(path).read_bytes()
    with pytest.raises(StoreError) as e:
        SqliteStore(path)
    assert str(e.value).startswith(f"{path}: {reason}")
    assert Path(path).read_bytes() == before


def test_a_second_opener_is_refused_while_the_first_holds_the_store(path):
    first = SqliteStore(path, autoflush=False)
    with pytest.raises(StoreError) as e:
        SqliteStore(path, autoflush=False)
    assert str(e.value) == (f"{path}: locked by another process (is another gateway using "
                            "this store?)")
    first.close()
    SqliteStore(path, autoflush=False).close()


def test_the_golden_store_reads_back(path):
    shutil.copy(DATA / "sqlite-v1.db", path)
    store = SqliteStore(path, autoflush=False)
    clock = task.Clock()
    clock.advance(GOLDEN_START + 60)
    snapshot = store.load(now=clock.seconds())
    hub = Hub(None, clock, store)
    restore(hub, snapshot, {})
    retained = {m.topic: m for m in hub.retained("#")}
    assert set(retained) == {"r/plain", "r/v5"}
    assert retained["r/v5"].props == Properties(content_type="text/plain",
                                                correlation_data=b"\x00\x01",
                                                user_properties=(("k", "v"),))
    assert retained["r/v5"].expires_at == GOLDEN_START + 86400
    session = hub.session("sess")
    assert (session.client.username, session.expiry) == ("alice", 3600)
    assert session.subscriptions == {"q/#": Subscription(2, identifier=7)}
    assert [(o.message.topic, o.pid, o.state) for o in session.inflight.values()] == [
        ("q/inflight", 1, 0), ("q/acked", 2, 1)]
    assert [o.message.topic for o in session.queue] == ["q/queued"]
    assert session.inbound_qos2_pending(5, 1234)
    ep = FakeEndpoint()
    session, present = hub.connect(ClientInfo("sess", username="alice"), ep, False, 3600)
    session.resume(ep)
    assert [(d.topic, d.dup) for d in ep.take()] == [("q/inflight", True), ("q/queued", False)]
    assert ep.pubrels == [2]


# --- Mosquitto's state --------------------------------------------------------------


def test_mosquitto_golden_file_imports(path):
    state = read_mosquitto_db(DATA / "v6-mosquitto-2.0.11.db")
    store = SqliteStore(path, autoflush=False)
    schema.write_snapshot(store.conn, snapshot_from_mosquitto(state, [("mqtt", 1883, None)]))
    clock = task.Clock()
    clock.advance(min(m.expiry_time for m in state.retained if m.expiry_time) - 60)
    hub = Hub(None, clock, store)
    restore(hub, store.load(now=clock.seconds()), {})
    assert {m.topic for m in hub.retained("#")} == {"r/plain", "r/binary", "r/v5"}
    v5 = hub.retained_message("r/v5")
    assert ("unit", "C") in v5.props.user_properties
    assert set(hub.sessions) == {"sess-311", "sess-v5", "sess-raw"}
    s311 = hub.session("sess-311")
    assert set(s311.subscriptions) == {"q/zero", "q/one/#", "q/two/+"}
    assert [o.message.payload for o in s311.queue] == [
        b"first", b"second", b"third, sent at QoS 2", b"fourth", b"for the shared subscription"]
    v5s = hub.session("sess-v5")
    assert v5s.subscriptions["v5/#"] == Subscription(1, True, True, identifier=42)
    raw = hub.session("sess-raw")
    assert raw.inbound_qos2_pending(77, _fingerprint("in/two", b"unreleased"))


def _fingerprint(topic, payload):
    from zlib import crc32

    return crc32(payload, crc32(topic.encode()))


def test_import_command_refuses_a_store_in_use_unless_forced(tmp_path, capsys):
    config = tmp_path / "gw.conf"
    config.write_text(f"persistence true\npersistence_location {tmp_path}/\n")
    source = str(DATA / "v6-mosquitto-2.0.11.db")
    assert db_main(["import", source, "-c", str(config)]) == 0
    assert "3 retained" in capsys.readouterr().out
    assert db_main(["import", source, "-c", str(config)]) == 1
    assert "the store is not empty; --force replaces what it holds" in capsys.readouterr().err
    assert db_main(["import", source, "-c", str(config), "--force"]) == 0
    assert db_main(["info", "-c", str(config)]) == 0
    assert "retained: 3" in capsys.readouterr().out
