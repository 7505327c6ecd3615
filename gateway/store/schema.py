"""The SQLite store's file: opening it safely, its schema, and reading it back.

One file holds one gateway's durable state (``gateway.hub.persistence``). It is marked
with an application id and a schema version, so a foreign SQLite file, a Mosquitto
file or a file from a newer gateway is refused with a reason rather than reset. The
connection uses WAL and exclusive locking: a second gateway on the same file stops at
startup ("locked"), and no shared-memory index is needed.

Everything here runs on one thread at a time: the caller's at startup (``open_store``,
``load``, ``write_snapshot``), the writer thread's afterwards (``gateway.store.sqlite``).
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import time
from typing import Any

from gateway.errors import StoreError
from gateway.hub.api import Properties
from gateway.hub.persistence import (
    Snapshot, StoredInbound, StoredMessage, StoredOutgoing, StoredSession, StoredSubscription,
    StoredWill,
)

APPLICATION_ID = 0x4D514757  # "MQGW"
VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
MOSQUITTO_MAGIC = b"\x00\xb5\x00mosquitto db"
SYNC_MODES = {"normal": "NORMAL", "full": "FULL"}

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE messages(
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, props TEXT, expires_at REAL,
    source_id TEXT, source_username TEXT);
CREATE TABLE retained(topic TEXT PRIMARY KEY, message_id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE sessions(
    client_id TEXT PRIMARY KEY, protocol TEXT NOT NULL, username TEXT, listener TEXT,
    expiry INTEGER, disconnected_at REAL, will_id INTEGER, will_delay INTEGER NOT NULL,
    will_expiry INTEGER, next_pid INTEGER NOT NULL, extra TEXT) WITHOUT ROWID;
CREATE TABLE subscriptions(
    client_id TEXT NOT NULL, topic_filter TEXT NOT NULL, qos INTEGER NOT NULL,
    no_local INTEGER NOT NULL, retain_as_published INTEGER NOT NULL,
    retain_handling TEXT NOT NULL, identifier INTEGER,
    PRIMARY KEY(client_id, topic_filter)) WITHOUT ROWID;
CREATE TABLE outgoing(
    seq INTEGER PRIMARY KEY, client_id TEXT NOT NULL, message_id INTEGER NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, sub_ids TEXT, share_name TEXT,
    share_filter TEXT, pid INTEGER NOT NULL, state INTEGER NOT NULL, inflight INTEGER NOT NULL);
CREATE TABLE inbound(
    client_id TEXT NOT NULL, pid INTEGER NOT NULL, fingerprint INTEGER NOT NULL,
    message_id INTEGER, PRIMARY KEY(client_id, pid)) WITHOUT ROWID;
CREATE TABLE wills(
    client_id TEXT PRIMARY KEY, message_id INTEGER NOT NULL, publish_at REAL NOT NULL,
    expiry INTEGER, protocol TEXT NOT NULL, username TEXT) WITHOUT ROWID;
"""

TABLES = ("messages", "retained", "sessions", "subscriptions", "outgoing", "inbound", "wills")

# Statements the writer runs; the row tuples below are in their column order.
PUT_MESSAGE = "INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?,?)"
PUT_RETAINED = "INSERT OR REPLACE INTO retained VALUES (?,?)"
PUT_SESSION = "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?)"
PUT_SUBSCRIPTION = "INSERT OR REPLACE INTO subscriptions VALUES (?,?,?,?,?,?,?)"
PUT_OUTGOING = "INSERT OR REPLACE INTO outgoing VALUES (?,?,?,?,?,?,?,?,?,?,?)"
PUT_INBOUND = "INSERT OR REPLACE INTO inbound VALUES (?,?,?,?)"
PUT_WILL = "INSERT OR REPLACE INTO wills VALUES (?,?,?,?,?,?)"


def open_store(path: str, sync: str = "full", create: bool = True) -> sqlite3.Connection:
    """Open (or create) the store at ``path``, locked for this process; any reason it
    cannot be used is a ``StoreError`` naming the file."""
    _check_header(path)
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open: {e}", path) from None
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        # A write takes the exclusive lock now and keeps it until close.
        conn.execute("BEGIN IMMEDIATE")
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id == 0 and version == 0 and tables == 0:
            if not create:
                raise StoreError("no mqttgateway store here (an empty database)", path)
            _create(conn)
        elif application_id != APPLICATION_ID:
            raise StoreError(
                f"a foreign SQLite database (application_id {application_id:#x}), not an "
                "mqttgateway store; point persistence_file elsewhere", path)
        elif version > VERSION:
            raise StoreError(
                f"store format version {version} is newer than this gateway knows ({VERSION}); "
                "run the gateway version that wrote it, or move the file away to start empty",
                path)
        elif version < 1:
            raise StoreError(f"unknown store format version {version}", path)
        else:
            # Every page of every table and index, without cross-checking them: a
            # damaged store stops startup here rather than at some later write.
            problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise StoreError(f"corrupt store: {problem}", path)
        conn.execute("COMMIT")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"cannot use write-ahead logging (journal mode {mode})", path)
        conn.execute(f"PRAGMA synchronous={SYNC_MODES[sync]}")
        # The WAL is folded into the file every 1000 pages, as by default; the writer
        # thread pays for it, never the reactor.
        conn.execute("PRAGMA wal_autocheckpoint=1000")
    except StoreError:
        conn.close()
        raise
    except sqlite3.OperationalError as e:
        conn.close()
        if "locked" in str(e) or "busy" in str(e):
            raise StoreError("locked by another process (is another gateway using this store?)",
                             path) from None
        raise StoreError(f"cannot use: {e}", path) from None
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"corrupt store: {e}", path) from None
    return conn


def _check_header(path: str) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise StoreError("no such directory for the store", path) from None
        return
    except OSError as e:
        raise StoreError(f"cannot read: {e.strerror or e}", path) from None
    if head.startswith(MOSQUITTO_MAGIC[:15]):
        raise StoreError(
            "this is a Mosquitto persistence file, not an mqttgateway store; import it with "
            "'mqttgateway-db import' (or leave it beside a new persistence_file) instead", path)
    if head and not head.startswith(SQLITE_MAGIC[: len(head)]):
        raise StoreError(f"not an mqttgateway store (starts {head[:16]!r})", path)
    if head and len(head) < len(SQLITE_MAGIC):
        raise StoreError("not an mqttgateway store (truncated header)", path)


def _create(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={VERSION}")
    from gateway import __version__

    conn.execute("INSERT INTO meta VALUES ('created_by', ?), ('created_at', ?)",
                 (f"mqttgateway {__version__}", time.time()))


# --- row encodings --------------------------------------------------------------------


def props_text(props: Properties | None) -> str | None:
    """MQTT 5 properties as JSON (bytes values as {"b": hex}); None for none."""
    if not props:
        return None
    items = []
    for name, value in props.items:
        if isinstance(value, bytes):
            value = {"b": value.hex()}
        items.append([name, value])
    return json.dumps(items, separators=(",", ":"))


def props_from(text: str) -> Properties:
    items = []
    for name, value in json.loads(text):
        if isinstance(value, dict):
            value = bytes.fromhex(value["b"])
        elif isinstance(value, list):
            value = tuple(value)
        items.append((name, value))
    return Properties.from_items(items)


def message_row(mid: int, m: Any) -> tuple[Any, ...]:
    source = m.source
    return (mid, m.topic, m.payload, m.qos, m.retain, props_text(m.props) if m.props else None,
            m.expires_at, source.client_id if source is not None else None,
            source.username if source is not None else None)


def sub_ids_text(sub_ids: tuple[int, ...]) -> str | None:
    return ",".join(map(str, sub_ids)) if sub_ids else None


# --- reading back ---------------------------------------------------------------------


def load(conn: sqlite3.Connection, path: str, now: float | None = None) -> Snapshot:
    """Everything in the store, as plain records, after dropping what can never be used
    again: rows of sessions that are gone, retained messages expired during the
    downtime, unreferenced messages. Sessions that were connected when the process
    stopped keep ``disconnected_at`` None in the snapshot (so ``restore`` sends their
    will) and get ``now`` in the file."""
    now = time.time() if now is None else now
    collecting = gc.isenabled()
    gc.disable()      # as in restore(): many objects, all kept
    try:
        return _load(conn, now)
    except sqlite3.DatabaseError as e:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise StoreError(f"corrupt store: {e}", path) from None
    except (ValueError, TypeError, KeyError) as e:
        raise StoreError(f"corrupt store: a row does not decode ({e})", path) from None
    finally:
        if collecting:
            gc.enable()


def _load(conn: sqlite3.Connection, now: float) -> Snapshot:
    conn.execute("BEGIN IMMEDIATE")
    snap = Snapshot()
    sessions = snap.sessions
    for (cid, protocol, username, listener, expiry, disconnected_at, will_id, will_delay,
         will_expiry, next_pid, extra) in conn.execute("SELECT * FROM sessions"):
        sessions.append(StoredSession(
            cid, protocol, username, tuple(json.loads(listener)) if listener else None, expiry,
            disconnected_at, will_id, will_delay, will_expiry, next_pid,
            json.loads(extra) if extra else {}))
    known = {s.client_id for s in sessions}
    orphans: dict[str, list[Any]] = {"subscriptions": [], "inbound": []}

    subs = snap.subscriptions
    for row in conn.execute("SELECT * FROM subscriptions"):
        if row[0] in known:
            subs.append(StoredSubscription(row[0], row[1], row[2], bool(row[3]), bool(row[4]),
                                           row[5], row[6]))
        else:
            orphans["subscriptions"].append(row[0])
    outgoing = snap.outgoing
    orphan_seqs = []
    for (seq, cid, mid, qos, retain, sub_ids, share_name, share_filter, pid, state,
         inflight) in conn.execute("SELECT * FROM outgoing"):
        if cid in known:
            outgoing.append(StoredOutgoing(
                cid, seq, mid, qos, bool(retain),
                tuple(map(int, sub_ids.split(","))) if sub_ids else (),
                (share_name, share_filter) if share_name is not None else None,
                pid, state, bool(inflight)))
        else:
            orphan_seqs.append((seq,))
    inbound = snap.inbound
    for cid, pid, fingerprint, mid in conn.execute("SELECT * FROM inbound"):
        if cid in known:
            inbound.append(StoredInbound(cid, pid, fingerprint, mid))
        else:
            orphans["inbound"].append(cid)
    for cid, mid, publish_at, expiry, protocol, username in conn.execute("SELECT * FROM wills"):
        snap.wills.append(StoredWill(cid, mid, publish_at, expiry, protocol, username))

    expired_topics = []
    retained = snap.retained
    retained_rows = conn.execute("SELECT r.topic, r.message_id, m.expires_at FROM retained r "
                                 "LEFT JOIN messages m ON m.id = r.message_id").fetchall()
    for topic, mid, expires_at in retained_rows:
        if expires_at is not None and expires_at <= now:
            expired_topics.append((topic,))
        else:
            retained.append(mid)

    used = set(retained)
    used.update(o.message_id for o in outgoing)
    used.update(i.message_id for i in inbound if i.message_id is not None)
    used.update(s.will_id for s in sessions if s.will_id is not None)
    used.update(w.message_id for w in snap.wills)
    messages = snap.messages
    unused = []
    for (mid, topic, payload, qos, retain, props, expires_at, source_id,
         source_username) in conn.execute("SELECT * FROM messages"):
        if mid in used:
            messages[mid] = StoredMessage(mid, topic, payload, qos, bool(retain),
                                          props_from(props) if props else None, expires_at,
                                          source_id, source_username)
        else:
            unused.append((mid,))

    if expired_topics:
        conn.executemany("DELETE FROM retained WHERE topic = ?", expired_topics)
    for table, clients in orphans.items():
        if clients:
            conn.executemany(f"DELETE FROM {table} WHERE client_id = ?", [(c,) for c in set(clients)])
    if orphan_seqs:
        conn.executemany("DELETE FROM outgoing WHERE seq = ?", orphan_seqs)
    if unused:
        conn.executemany("DELETE FROM messages WHERE id = ?", unused)
    conn.execute("UPDATE sessions SET disconnected_at = ? WHERE disconnected_at IS NULL", (now,))
    conn.execute("COMMIT")
    return snap


def counters(snapshot: Snapshot) -> tuple[int, int]:
    """The next free message id and outgoing sequence number after ``snapshot``."""
    return (max(snapshot.messages, default=0) + 1,
            max((o.seq for o in snapshot.outgoing), default=0) + 1)


def is_empty(conn: sqlite3.Connection) -> bool:
    return not any(conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                   for t in ("messages", "sessions"))


def write_snapshot(conn: sqlite3.Connection, snap: Snapshot, replace: bool = False) -> None:
    """Write ``snap`` in one transaction (an import); ``replace`` empties the store first."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if replace:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}")
        conn.executemany(PUT_MESSAGE, (
            (m.id, m.topic, m.payload, m.qos, m.retain, props_text(m.props), m.expires_at,
             m.source_client_id, m.source_username) for m in snap.messages.values()))
        by_id = snap.messages
        conn.executemany(PUT_RETAINED, ((by_id[mid].topic, mid) for mid in snap.retained))
        conn.executemany(PUT_SESSION, (
            (s.client_id, s.protocol, s.username, json.dumps(s.listener) if s.listener else None,
             s.expiry, s.disconnected_at, s.will_id, s.will_delay, s.will_expiry, s.next_pid,
             json.dumps(s.extra) if s.extra else None) for s in snap.sessions))
        conn.executemany(PUT_SUBSCRIPTION, (
            (s.client_id, s.topic_filter, s.qos, s.no_local, s.retain_as_published,
             s.retain_handling, s.identifier) for s in snap.subscriptions))
        conn.executemany(PUT_OUTGOING, (
            (o.seq, o.client_id, o.message_id, o.qos, o.retain, sub_ids_text(o.sub_ids),
             o.share[0] if o.share else None, o.share[1] if o.share else None, o.pid, o.state,
             o.inflight) for o in snap.outgoing))
        conn.executemany(PUT_INBOUND, (
            (i.client_id, i.pid, i.fingerprint, i.message_id) for i in snap.inbound))
        conn.executemany(PUT_WILL, (
            (w.client_id, w.message_id, w.publish_at, w.expiry, w.protocol, w.username)
            for w in snap.wills))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def size_on_disk(path: str) -> int:
    """The file and its write-ahead log, in bytes."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def rows(conn: sqlite3.Connection) -> dict[str, int]:
    """Row counts per table (for the import command's report)."""
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
