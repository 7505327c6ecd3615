"""The Mosquitto persistence reader: golden files written by Debian's mosquitto 2.0.11,
hand-built files for the older formats and odd corners, and broken files, each of which
must give a ``StoreError`` naming the file and the fault."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.store.mosquitto_db import (
    CONTENT_TYPE,
    CORRELATION_DATA,
    NEVER_EXPIRES,
    PAYLOAD_FORMAT_INDICATOR,
    RESPONSE_TOPIC,
    SUBSCRIPTION_IDENTIFIER,
    USER_PROPERTY,
    Direction,
    MessageState,
    MosquittoState,
    StoreError,
    read_mosquitto_db,
)
from tests import wire
from tests.store import dbfile as db

DATA = Path(__file__).resolve().parent.parent / "data" / "store"
GOLDEN = DATA / "v6-mosquitto-2.0.11.db"
MOSQUITTO = "/usr/sbin/mosquitto"


@pytest.fixture(scope="module")
def golden() -> MosquittoState:
    return read_mosquitto_db(GOLDEN)


def _maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_mosquitto_db", DATA / "make_mosquitto_db.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the golden file, field by field ------------------------------------------------


def test_golden_header(golden: MosquittoState) -> None:
    assert golden.path == str(GOLDEN)
    assert golden.version == 6
    assert golden.config is not None
    assert golden.config.last_db_id == 68
    assert golden.config.shutdown is True
    assert golden.unknown_chunks == ()
    assert (golden.dropped_client_messages, golden.dropped_retained, golden.dropped_clients) == (
        0,
        0,
        0,
    )


def test_golden_retained_messages(golden: MosquittoState) -> None:
    by_topic = {m.topic: m for m in golden.retained}
    assert sorted(by_topic) == ["r/binary", "r/plain", "r/v5"]  # r/cleared was cleared
    plain, binary = by_topic["r/plain"], by_topic["r/binary"]
    assert (plain.payload, plain.qos, plain.retain, plain.properties) == (b"21.5", 0, True, ())
    assert (binary.payload, binary.qos, binary.retain) == (b"\x00\x01\xfe\xff", 1, True)
    assert plain.expiry_time == binary.expiry_time == 0
    assert plain.remaining_expiry(time.time()) is None
    assert (plain.source_id, plain.source_username, plain.source_mid) == ("pub-311", None, 0)
    assert binary.source_mid == 2
    assert golden.retained_ids == (53, 54, 65)


def test_golden_retained_v5_properties(golden: MosquittoState) -> None:
    (v5,) = [m for m in golden.retained if m.topic == "r/v5"]
    assert (v5.payload, v5.qos, v5.source_id, v5.source_mid) == (b'{"t": 21.5}', 1, "pub-v5", 1)
    # Mosquitto keeps the Message Expiry Interval apart, as an absolute time.
    assert v5.properties == (
        (PAYLOAD_FORMAT_INDICATOR, 1),
        (CONTENT_TYPE, "application/json"),
        (RESPONSE_TOPIC, "r/v5/reply"),
        (CORRELATION_DATA, b"\x01\x02"),
        (USER_PROPERTY, ("unit", "C")),
        (USER_PROPERTY, ("room", "kitchen")),
        (USER_PROPERTY, ("unit", "F")),
    )
    assert v5.properties_dict() == {
        PAYLOAD_FORMAT_INDICATOR: 1,
        CONTENT_TYPE: "application/json",
        RESPONSE_TOPIC: "r/v5/reply",
        CORRELATION_DATA: b"\x01\x02",
        USER_PROPERTY: [("unit", "C"), ("room", "kitchen"), ("unit", "F")],
    }
    assert v5.expiry_time == 1796598258
    assert v5.remaining_expiry(v5.expiry_time - 100) == 100
    assert not v5.expired(v5.expiry_time)
    assert v5.expired(v5.expiry_time + 1)


def test_golden_clients(golden: MosquittoState) -> None:
    clients = {c.client_id: c for c in golden.clients}
    assert list(clients) == ["sess-311", "sess-v5", "sess-raw"]
    s311, s5, raw = clients["sess-311"], clients["sess-v5"], clients["sess-raw"]
    assert (s311.session_expiry_interval, s311.session_expiry_time) == (NEVER_EXPIRES, 0)
    assert (s311.username, s311.last_mid) == ("carol", 5)
    # Set at the disconnect: the disconnect time plus the interval.
    assert (s5.session_expiry_interval, s5.session_expiry_time) == (3600, 1796515458)
    assert (s5.username, s5.last_mid) == ("alice", 2)
    assert (raw.session_expiry_interval, raw.username, raw.last_mid) == (NEVER_EXPIRES, "dave", 2)
    assert {c.listener_port for c in golden.clients} == {35339}
    assert {c.disconnect_time for c in golden.clients} == {None}


def test_golden_subscriptions(golden: MosquittoState) -> None:
    subs = {
        client_id: [(s.topic_filter, s.qos, s.options, s.identifier) for s in session.subscriptions]
        for client_id, session in golden.sessions.items()
    }
    # Mosquitto 2.0.11 does not save shared subscriptions ($share/group/shared/#).
    assert subs == {
        "sess-311": [("q/zero", 0, 0, 0), ("q/one/#", 1, 0, 0), ("q/two/+", 2, 0, 0)],
        "sess-v5": [("v5/#", 1, 0x0C, 42), ("other/v5", 2, 0, 0)],
        "sess-raw": [("fly/#", 2, 0, 0)],
    }
    v5 = golden.sessions["sess-v5"].subscriptions[0]
    assert v5.no_local and v5.retain_as_published
    assert len(golden.subscriptions) == 6


def _outgoing(state: MosquittoState, client_id: str) -> list[tuple[Any, ...]]:
    return [
        (d.message.topic, d.message.payload, d.message.qos, d.qos, d.mid, d.state, d.dup, d.retain)
        for d in state.sessions[client_id].outgoing
    ]


def test_golden_queued_for_offline_session(golden: MosquittoState) -> None:
    queued = MessageState.QUEUED
    # q/zero (QoS 0) is not queued; q/one/c goes at the subscription's QoS 1.
    assert _outgoing(golden, "sess-311") == [
        ("q/one/a", b"first", 1, 1, 1, queued, False, False),
        ("q/one/b", b"second", 1, 1, 2, queued, False, False),
        ("q/one/c", b"third, sent at QoS 2", 2, 1, 3, queued, False, False),
        ("q/two/x", b"fourth", 2, 2, 4, queued, False, False),
        ("shared/x", b"for the shared subscription", 1, 1, 5, queued, False, False),
    ]
    session = golden.sessions["sess-311"]
    assert all(d.queued and not d.awaiting_pubcomp for d in session.outgoing)
    assert session.incoming == ()


def test_golden_queued_v5(golden: MosquittoState) -> None:
    session = golden.sessions["sess-v5"]
    queued = MessageState.QUEUED
    assert _outgoing(golden, "sess-v5") == [
        ("v5/x", b"for alice", 2, 1, 1, queued, False, False),
        ("other/v5", b"plain", 2, 2, 2, queued, False, False),
    ]
    first, second = session.outgoing
    assert first.message.properties == ((CONTENT_TYPE, "text/plain"), (USER_PROPERTY, ("k", "v")))
    assert first.subscription_identifiers == (42,)
    assert second.message.properties == ()
    assert second.subscription_identifiers == ()
    (cmsg,) = [c for c in golden.client_messages if c.store_id == first.message.store_id]
    assert cmsg.properties == ((SUBSCRIPTION_IDENTIFIER, 42),)
    assert cmsg.direction is Direction.OUT


def test_golden_in_flight(golden: MosquittoState) -> None:
    session = golden.sessions["sess-raw"]
    assert _outgoing(golden, "sess-raw") == [
        ("fly/one", b"awaiting PUBACK", 1, 1, 1, MessageState.WAIT_FOR_PUBACK, True, False),
        ("fly/two", b"awaiting PUBCOMP", 2, 2, 2, MessageState.WAIT_FOR_PUBCOMP, True, False),
    ]
    one, two = session.outgoing
    assert not one.queued and not one.awaiting_pubcomp
    assert not two.queued and two.awaiting_pubcomp
    (incoming,) = session.incoming
    assert (incoming.mid, incoming.qos, incoming.state) == (77, 2, MessageState.WAIT_FOR_PUBREL)
    message = incoming.message
    assert (message.topic, message.payload, message.qos, message.retain) == (
        "in/two",
        b"unreleased",
        2,
        False,
    )
    assert (message.source_id, message.source_username, message.source_mid) == (
        "sess-raw",
        "dave",
        77,
    )


def test_golden_message_store(golden: MosquittoState) -> None:
    topics = sorted(m.topic for m in golden.messages.values())
    assert topics == sorted(
        ["in/two", "other/v5", "v5/x", "r/v5", "fly/two", "fly/one", "shared/x", "q/two/x"]
        + ["q/one/c", "q/one/b", "q/one/a", "r/binary", "r/plain"]
    )
    assert all(m.store_id == k for k, m in golden.messages.items())
    assert {m.source_port for m in golden.messages.values()} == {35339}


def test_stale_username_of_mosquitto_before_2_0_16() -> None:
    """Mosquitto 2.0.11 saves an anonymous client after one with a username with that
    username: byte-swapped length and heap bytes (caught), then as is (not caught)."""
    state = read_mosquitto_db(DATA / "v6-stale-username.db")
    assert [(c.client_id, c.username) for c in state.clients] == [
        ("a-user", "b"),
        ("b-none", None),
        ("c-none", "b"),
    ]
    assert [s.topic_filter for s in state.subscriptions] == ["t/a-user", "t/b-none", "t/c-none"]


def _content(state: MosquittoState) -> dict[str, Any]:
    """What does not depend on when or on which port the file was made."""
    return {
        "retained": sorted((m.topic, m.payload, m.qos, m.properties) for m in state.retained),
        "sessions": {
            cid: (
                s.client.username,
                s.client.session_expiry_interval,
                s.client.last_mid,
                [(x.topic_filter, x.qos, x.options, x.identifier) for x in s.subscriptions],
                [
                    (
                        d.message.topic,
                        d.message.payload,
                        d.message.properties,
                        d.mid,
                        d.qos,
                        d.state,
                        d.dup,
                        d.subscription_identifiers,
                    )
                    for d in s.outgoing
                ],
                [(d.message.topic, d.message.payload, d.mid, d.state) for d in s.incoming],
            )
            for cid, s in state.sessions.items()
        },
    }


@pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason="Debian's mosquitto is not installed")
def test_installed_mosquitto_writes_what_the_golden_file_holds(
    tmp_path: Path, golden: MosquittoState
) -> None:
    started = int(time.time())
    path = _maker().make(GOLDEN.name, tmp_path)
    finished = time.time()
    fresh = read_mosquitto_db(path)
    assert fresh.version == 6
    assert _content(fresh) == _content(golden)
    (v5,) = [m for m in fresh.retained if m.topic == "r/v5"]
    assert started <= v5.expiry_time - 86400 <= finished
    expiry = fresh.sessions["sess-v5"].client.session_expiry_time
    assert started <= expiry - 3600 <= finished


@pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason="Debian's mosquitto is not installed")
def test_installed_mosquitto_stale_username(tmp_path: Path) -> None:
    state = read_mosquitto_db(_maker().make("v6-stale-username.db", tmp_path))
    usernames = {c.client_id: c.username for c in state.clients}
    assert usernames["a-user"] == "b"
    assert usernames["b-none"] is None
    assert usernames["c-none"] in ("b", None)  # None once the broker has the fix


# --- broken files -------------------------------------------------------------------

CORRUPT = [
    ("corrupt-truncated.db", "retain chunk at offset 1671 declares 8 bytes but only 3 remain"),
    ("corrupt-foreign.db", "not a Mosquitto persistence file (bad magic: starts b'SQLite format 3"),
    ("corrupt-bad-magic.db", "not a Mosquitto persistence file (bad magic"),
    ("corrupt-chunk-length.db", "message store chunk at offset 47 declares 2147483392 bytes"),
    ("corrupt-newer-version.db", "database format version 7 is newer than this reader knows"),
    ("corrupt-garbage.db", "message store chunk at offset 47: QoS 7 (not 0, 1 or 2)"),
]


@pytest.mark.parametrize(("name", "reason"), CORRUPT)
def test_corrupt_file(name: str, reason: str) -> None:
    path = DATA / name
    with pytest.raises(StoreError) as e:
        read_mosquitto_db(path)
    assert str(e.value).startswith(f"{path}: {reason}")
    assert e.value.path == str(path)
    assert isinstance(e.value, GatewayError)


def test_corrupt_files_are_the_golden_file_broken() -> None:
    """The committed broken files are what the script derives from the golden one."""
    variants = _maker().corrupt_variants(GOLDEN.read_bytes())
    assert sorted(variants) == sorted(name for name, _ in CORRUPT)
    for name, data in variants.items():
        assert (DATA / name).read_bytes() == data, name


def _error(data: bytes) -> str:
    with pytest.raises(StoreError) as e:
        read_mosquitto_db(data, name="x.db")
    return str(e.value)


def test_empty_and_short_files() -> None:
    assert _error(b"").startswith("x.db: empty file, not a Mosquitto database")
    assert _error(db.MAGIC[:9]) == "x.db: truncated: 9 bytes, shorter than the file header"
    assert _error(db.MAGIC + b"\0\0") == "x.db: truncated: 17 bytes, shorter than the file header"
    header = db.database(6)
    assert _error(header + b"\0\0\0\x01\0") == (
        "x.db: truncated: 5 bytes at offset 23 are too few for a chunk header"
    )


@pytest.mark.parametrize("version", [0, 1])
def test_unsupported_old_version(version: int) -> None:
    assert _error(db.database(version)) == (
        f"x.db: unsupported database format version {version} (this reader reads versions 2 to 6)"
    )


def test_newer_version_says_which() -> None:
    assert _error(db.database(0x01000000)) == (
        "x.db: database format version 16777216 is newer than this reader knows "
        "(it reads versions 2 to 6, written by Mosquitto 1.x and 2.0)"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "mosquitto.db"
    with pytest.raises(StoreError) as e:
        read_mosquitto_db(missing)
    assert str(e.value) == f"{missing}: cannot read: No such file or directory"
    with pytest.raises(StoreError) as e:
        read_mosquitto_db(tmp_path)
    assert str(e.value) == f"{tmp_path}: cannot read: Is a directory"


def test_bytes_are_named_in_errors() -> None:
    with pytest.raises(StoreError) as e:
        read_mosquitto_db(b"garbage")
    assert str(e.value).startswith("<bytes>: not a Mosquitto persistence file")


BAD_CHUNKS = [
    (db.cfg(dbid_size=4), "config chunk at offset 23: database ids of 4 bytes, expected 8"),
    (db.cfg(size=10), "config chunk at offset 23: 10 bytes, expected 16"),
    (db.msg_store(1, b"a/\xff"), "message store chunk at offset 23: topic is not valid UTF-8"),
    (db.msg_store(1, "a/+"), "message store chunk at offset 23: wildcard in the topic 'a/+'"),
    (
        db.msg_store(1, "t", retain=2),
        "message store chunk at offset 23: retain flag 2 (not 0 or 1)",
    ),
    (
        db.msg_store(1, "t", source_id="a\0b"),
        "message store chunk at offset 23: source client id contains a NUL character",
    ),
    (
        (db.MSG_STORE, db.msg_store(1, "t", b"abc")[1][:-1]),
        "message store chunk at offset 23: payload (3 bytes) overruns the chunk",
    ),
    (
        db.msg_store(1, "t", props=db.properties(wire.prop_u16(0x21, 5))),
        "message store chunk at offset 23: property 0x21 is not a PUBLISH property",
    ),
    (
        db.msg_store(1, "t", props=db.properties(wire.prop_str(3, "a"), wire.prop_str(3, "b"))),
        "message store chunk at offset 23: content type property given twice",
    ),
    (
        db.msg_store(1, "t", props=db.properties(wire.prop_str(3, "a")) + b"\0"),
        "message store chunk at offset 23: property length 4 does not match the 5 bytes left",
    ),
    (
        db.msg_store(1, "t", props=b"\x03\x03\x00\x05"),
        "message store chunk at offset 23: content type (5 bytes) overruns the chunk",
    ),
    (db.client_msg("c", 1, qos=3), "client message chunk at offset 23: QoS 3 (not 0, 1 or 2)"),
    (db.client_msg("c", 1, direction=2), "client message chunk at offset 23: direction 2"),
    (db.client_msg("c", 1, state=12), "client message chunk at offset 23: message state 12"),
    (db.client_msg("c", 1, dup=2), "client message chunk at offset 23: dup flag 2 (not 0 or 1)"),
    ((db.RETAIN, b"\0" * 9), "retain chunk at offset 23: 1 unexpected bytes after the store id"),
    (db.sub("c", "a/#", qos=3), "subscription chunk at offset 23: QoS 3 (not 0, 1 or 2)"),
    (
        db.sub("", "a/#"),
        "subscription chunk at offset 23: subscription without a client id or topic filter",
    ),
    (
        (db.CLIENT, db.client("c")[1] + b"x"),
        "client chunk at offset 23: length does not match the client id and username lengths",
    ),
]


@pytest.mark.parametrize(("chunk", "reason"), BAD_CHUNKS)
def test_garbage_in_a_chunk(chunk: tuple[int, bytes], reason: str) -> None:
    assert _error(db.database(6, chunk)) == f"x.db: {reason}"


def test_duplicate_store_id() -> None:
    data = db.database(6, db.msg_store(7, "a"), db.msg_store(7, "b"))
    assert _error(data) == "x.db: message store chunk at offset 64: store id 7 used twice"


# --- what Mosquitto's own loader does with odd but readable files -------------------


def test_unknown_chunks_are_skipped() -> None:
    state = read_mosquitto_db(
        db.database(6, db.cfg(), (99, b"future"), db.msg_store(1, "t"), db.retain(1))
    )
    assert state.unknown_chunks == ((99, 47),)
    assert [m.topic for m in state.retained] == ["t"]


def test_dangling_references_are_dropped_and_counted() -> None:
    state = read_mosquitto_db(
        db.database(
            6,
            db.msg_store(1, "t", b"kept", qos=1),
            db.retain(1),
            db.retain(2),  # expired before the save, as Mosquitto explains it
            db.client("c"),
            db.client_msg("c", 1, mid=3),
            db.client_msg("c", 9, mid=4),
            db.client_msg("ghost", 9),  # creates no session
            db.client(""),  # Mosquitto: "Empty client entry found"
            db.msg_store(5, ""),  # a message without a topic has nowhere to go
            db.retain(5),
            db.client_msg("c", 5),
        )
    )
    assert (state.dropped_retained, state.dropped_client_messages, state.dropped_clients) == (
        2,
        3,
        1,
    )
    assert [m.payload for m in state.retained] == [b"kept"]
    assert list(state.sessions) == ["c"]
    assert [(d.message.payload, d.mid) for d in state.sessions["c"].outgoing] == [(b"kept", 3)]
    assert len(state.client_messages) == 4


def test_sessions_named_only_by_subscriptions_or_messages() -> None:
    """Mosquitto creates the client for a subscription or message of an unknown id."""
    state = read_mosquitto_db(
        db.database(6, db.msg_store(1, "t"), db.client_msg("m", 1), db.sub("s", "a/#", 1))
    )
    assert list(state.sessions) == ["m", "s"]
    assert state.sessions["s"].client.session_expiry_interval == 0
    assert state.clients == ()


def test_second_client_chunk_updates_the_first() -> None:
    state = read_mosquitto_db(
        db.database(
            6, db.client("c", interval=5, last_mid=9, username="u"), db.client("c", interval=7)
        )
    )
    record = state.sessions["c"].client
    assert (record.session_expiry_interval, record.last_mid, record.username) == (7, 9, "u")
    assert len(state.clients) == 2


def test_32_bit_x86_struct_padding() -> None:
    state = read_mosquitto_db(
        db.database(
            6, db.cfg(last_db_id=5, size=12), db.client("c", port=1883, username="u", padding=0)
        )
    )
    assert state.config is not None and state.config.last_db_id == 5
    client = state.sessions["c"].client
    assert (client.listener_port, client.username) == (1883, "u")


# --- older formats ------------------------------------------------------------------


def test_version_5_mosquitto_1_6() -> None:
    props = db.properties(
        wire.prop_str(CONTENT_TYPE, "text/plain"), wire.prop_pair(USER_PROPERTY, "a", "b")
    )
    state = read_mosquitto_db(
        db.database(
            5,
            db.cfg(last_db_id=3, shutdown=0),
            db.msg_store(
                2, "t/1", b"x", qos=2, retain=1, expiry_time=1700000000, source_id="p", props=props
            ),
            db.client("c", version=5, expiry_time=1700000100, interval=60, last_mid=4),
            db.client_msg(
                "c", 2, mid=4, qos=2, state=5, dup=1, props=db.properties(wire.prop_varint(11, 7))
            ),
            db.sub("c", "t/#", 2, options=0x04, identifier=7),
            db.retain(2),
        )
    )
    assert state.version == 5
    assert state.config is not None and state.config.shutdown is False
    (message,) = state.retained
    assert (message.topic, message.payload, message.qos, message.expiry_time) == (
        "t/1",
        b"x",
        2,
        1700000000,
    )
    assert message.properties == ((CONTENT_TYPE, "text/plain"), (USER_PROPERTY, ("a", "b")))
    session = state.sessions["c"]
    assert session.client.session_expiry_time == 1700000100
    assert (session.client.session_expiry_interval, session.client.last_mid) == (60, 4)
    assert (session.client.username, session.client.listener_port) == (None, 0)
    (delivery,) = session.outgoing
    assert (delivery.state, delivery.dup, delivery.subscription_identifiers) == (
        MessageState.WAIT_FOR_PUBREC,
        True,
        (7,),
    )
    (sub,) = session.subscriptions
    assert (sub.no_local, sub.retain_as_published, sub.identifier) == (True, False, 7)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_versions_2_to_4_mosquitto_1_5_and_older(version: int) -> None:
    state = read_mosquitto_db(
        db.database(
            version,
            db.cfg_v234(last_db_id=11),
            db.msg_store_v234(
                version,
                10,
                "a/b",
                b"hello",
                qos=1,
                retain=1,
                source_id="pub",
                source_username="bob",
                source_mid=3,
                source_port=1883,
            ),
            db.msg_store_v234(version, 11, "a/c", b"queued", qos=2),
            db.client_v234(version, "c", last_mid=6, disconnect_t=1600000000),
            db.client_msg_v234("c", 11, mid=6, qos=2, state=11),
            db.client_msg_v234("c", 10, mid=5, qos=1, state=3, retain=1, dup=1),
            db.sub_v234("c", "a/#", 2),
            db.retain(10),
        )
    )
    assert state.version == version
    assert state.config is not None and state.config.last_db_id == 11
    (retained,) = state.retained
    assert (retained.topic, retained.payload, retained.qos, retained.source_id) == (
        "a/b",
        b"hello",
        1,
        "pub",
    )
    assert retained.source_mid == 3 and retained.properties == () and retained.expiry_time == 0
    expect_v4 = ("bob", 1883) if version == 4 else (None, 0)
    assert (retained.source_username, retained.source_port) == expect_v4
    session = state.sessions["c"]
    # No session expiry in these formats: an MQTT 3.1.1 persistent session never expires.
    assert (session.client.session_expiry_interval, session.client.last_mid) == (NEVER_EXPIRES, 6)
    assert session.client.disconnect_time == (None if version == 2 else 1600000000)
    assert [
        (d.message.topic, d.qos, d.mid, d.state, d.retain, d.dup) for d in session.outgoing
    ] == [
        ("a/c", 2, 6, MessageState.QUEUED, False, False),
        ("a/b", 1, 5, MessageState.WAIT_FOR_PUBACK, True, True),
    ]
    assert [(s.topic_filter, s.qos) for s in session.subscriptions] == [("a/#", 2)]


def test_version_3_from_a_32_bit_host() -> None:
    state = read_mosquitto_db(db.database(3, db.client_v234(3, "c", disconnect_t=-5, time_size=4)))
    assert state.sessions["c"].client.disconnect_time == -5


# --- nothing but StoreError, whatever the bytes ---------------------------------------

HAND_MADE_V3 = db.database(
    3,
    db.cfg_v234(),
    db.msg_store_v234(3, 1, "a/b", b"x", qos=1),
    db.client_v234(3, "c"),
    db.client_msg_v234("c", 1),
    db.sub_v234("c", "a/#", 1),
    db.retain(1),
)
SEEDS = [GOLDEN.read_bytes(), (DATA / "v6-stale-username.db").read_bytes(), HAND_MADE_V3]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos : pos + 1] = draw(st.binary(max_size=3))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


@settings(max_examples=500, deadline=None)
@given(data=mutated())
def test_mutated_files_parse_or_raise_store_error(data: bytes) -> None:
    try:
        state = read_mosquitto_db(data, name="fuzz.db")
    except StoreError as e:
        assert str(e).startswith("fuzz.db: ")
    else:
        assert state.version in (2, 3, 4, 5, 6)
