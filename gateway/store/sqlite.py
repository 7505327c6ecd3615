"""The SQLite store: a ``Journal`` (gateway.hub.persistence) with group commit.

The hub's calls arrive on the reactor thread and only record what changed in the
current batch, coalescing as they go (a delivery queued and acknowledged within one
batch is never written; a row changed twice is written once). Message rows are shared
by every reference (retained, queued or in flight to several sessions, held for a
PUBREL, a will) and counted here, so one is written once and deleted with its last
reference.

Once per reactor turn the batch becomes a list of statements for the writer thread,
which owns the connection from then on, runs them in one transaction and commits; the
``Batch`` handed out by ``barrier()`` for that batch fires once the commit returns, so
acknowledgements wait for the disk without the reactor ever waiting for it. While one
batch commits the next accumulates, which is what makes commits grow with the load.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.hub.auth import listener_key
from gateway.hub.persistence import Batch, Snapshot
from gateway.store import schema
from gateway.store.schema import message_row, sub_ids_text

if TYPE_CHECKING:
    from gateway.hub.api import Message, Subscription
    from gateway.hub.hub import Hub
    from gateway.hub.sessions import Outgoing, Session

_MISSING = object()
_CLOSE = object()
# Upper bounds of the commit latency histogram, in seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))


class CommitStats:
    """Commit latencies: a histogram since start, and the last hundred for $SYS."""

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.commits = 0
        self.recent: deque[float] = deque(maxlen=100)

    def add(self, seconds: float) -> None:
        self.commits += 1
        self.total += seconds
        self.recent.append(seconds)
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                break

    def histogram(self) -> list[tuple[tuple[str, ...], Any]]:
        cumulative, buckets = 0, []
        for bound, n in zip(BUCKETS, self.counts):
            cumulative += n
            buckets.append((bound, cumulative))
        return [((), (buckets, self.total))]

    def average_ms(self) -> str:
        recent = self.recent
        return f"{1000 * sum(recent) / len(recent):.3f}" if recent else "0"

    def max_ms(self) -> str:
        return f"{1000 * max(self.recent):.3f}" if self.recent else "0"


class SqliteStore:
    """One store file, its reference counts and its writer thread."""

    log = Logger()

    def __init__(self, path: str, sync: str = "full", reactor: Any = None,
                 autoflush: bool = True, create: bool = True) -> None:
        self.path = path
        self.conn = schema.open_store(path, sync, create)
        if reactor is None and autoflush:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.reactor = reactor
        self.autoflush = autoflush
        # Reference counts (reactor thread): message id -> references, payload size.
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.bytes = 0
        self._ret_refs: dict[str, int] = {}
        self._out_refs: dict[str, dict[int, int]] = {}
        self._in_refs: dict[str, dict[int, int | None]] = {}
        self._swill_refs: dict[str, int] = {}
        self._dwill_refs: dict[str, int] = {}
        self._who: dict[str, tuple[str, str | None]] = {}
        self._next_mid = 1
        self._next_sid = 1
        self._new_batch()
        self._pending = False
        self._batch: Batch | None = None        # what waits for the pending batch
        self._committing: Batch | None = None   # set while a commit runs
        self._scheduled: Any = None
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing: Deferred[None] | None = None
        self.failed: BaseException | None = None
        self.stats = CommitStats()

    def _new_batch(self) -> None:
        self._ended: set[str] = set()
        self._msg_new: dict[int, Message] = {}
        self._msg_del: set[int] = set()
        self._ret: dict[str, int | None] = {}
        self._sess: dict[str, Session] = {}
        self._subs: dict[tuple[str, str], Subscription | None] = {}
        # seq -> (session, delivery, row is new in this batch), or None: delete the row
        self._out: dict[int, Any] = {}
        self._in: dict[tuple[str, int], Any] = {}
        self._wills: dict[str, Any] = {}

    # --- startup -----------------------------------------------------------------------

    def load(self, now: float | None = None) -> Snapshot:
        """Read the store back (before the first change is reported) and take over the
        reference counts of what it holds; ``now`` is the wall clock (for tests)."""
        snap = schema.load(self.conn, self.path, now)
        self._next_mid, self._next_sid = schema.counters(snap)
        messages = snap.messages
        refs, sizes = self._refs, self._sizes

        def ref(mid: int) -> None:
            n = refs.get(mid)
            if n is None:
                refs[mid] = 1
                size = sizes[mid] = len(messages[mid].payload)
                self.bytes += size
            else:
                refs[mid] = n + 1

        snap.retained = [mid for mid in snap.retained if mid in messages]
        for mid in snap.retained:
            self._ret_refs[messages[mid].topic] = mid
            ref(mid)
        for o in snap.outgoing:
            if o.message_id in messages:
                self._out_refs.setdefault(o.client_id, {})[o.seq] = o.message_id
                ref(o.message_id)
        for i in snap.inbound:
            mid = i.message_id if i.message_id in messages else None
            self._in_refs.setdefault(i.client_id, {})[i.pid] = mid
            if mid is not None:
                ref(mid)
        for s in snap.sessions:
            self._who[s.client_id] = (s.protocol, s.username)
            if s.will_id in messages:
                self._swill_refs[s.client_id] = s.will_id  # type: ignore[assignment]
                ref(s.will_id)  # type: ignore[arg-type]
        for w in snap.wills:
            if w.message_id in messages:
                self._dwill_refs[w.client_id] = w.message_id
                ref(w.message_id)
        return snap

    def attach(self, hub: Hub) -> None:
        """$SYS values and the commit latency histogram for /metrics."""
        hub.extra_counter("store/messages/count", lambda: len(self._refs))
        hub.extra_counter("store/messages/bytes", lambda: self.bytes)
        hub.extra_counter("store/commits", lambda: self.stats.commits)
        hub.extra_counter("store/commit/latency/average", self.stats.average_ms)
        hub.extra_counter("store/commit/latency/max", self.stats.max_ms)
        hub.probe("store_commit_seconds", "histogram",
                  "Time to commit one batch of changes to the persistence store", (),
                  self.stats.histogram, source="store")

    # --- message references ------------------------------------------------------------

    def _ref(self, message: Message) -> int:
        mid = message.store_id
        if not mid:
            mid = message.store_id = self._next_mid
            self._next_mid += 1
        n = self._refs.get(mid)
        if n:
            self._refs[mid] = n + 1
            return mid
        self._refs[mid] = 1
        size = self._sizes[mid] = len(message.payload)
        self.bytes += size
        if mid in self._msg_del:
            self._msg_del.discard(mid)     # its row was never deleted: keep it
        else:
            self._msg_new[mid] = message
        return mid

    def _unref(self, mid: int) -> None:
        n = self._refs[mid] - 1
        if n:
            self._refs[mid] = n
            return
        del self._refs[mid]
        self.bytes -= self._sizes.pop(mid)
        if self._msg_new.pop(mid, None) is None:
            self._msg_del.add(mid)

    def _touch(self) -> None:
        self._pending = True
        if self.autoflush and self._scheduled is None and self._committing is None:
            self._scheduled = self.reactor.callLater(0, self._flush)

    # --- Journal -----------------------------------------------------------------------

    def retained(self, message: Message) -> None:
        topic = message.topic
        if topic.startswith("$SYS"):
            return
        mid = self._ref(message)
        old = self._ret_refs.get(topic)
        self._ret_refs[topic] = mid
        if old is not None:
            self._unref(old)
        self._ret[topic] = mid
        if not self._pending:
            self._touch()

    def retained_cleared(self, topic: str) -> None:
        old = self._ret_refs.pop(topic, None)
        if old is None:
            return
        self._unref(old)
        self._ret[topic] = None
        if not self._pending:
            self._touch()

    def session(self, session: Session) -> None:
        self._sess[session.client_id] = session
        if not self._pending:
            self._touch()

    def session_ended(self, client_id: str) -> None:
        self._sess.pop(client_id, None)
        self._ended.add(client_id)
        out = self._out
        for sid, mid in (self._out_refs.pop(client_id, None) or {}).items():
            self._unref(mid)
            entry = out.pop(sid, None)
            if entry is None or not entry[2]:
                out[sid] = None
        for mid in (self._in_refs.pop(client_id, None) or {}).values():
            if mid is not None:
                self._unref(mid)
        mid = self._swill_refs.pop(client_id, None)
        if mid is not None:
            self._unref(mid)
        for table in (self._subs, self._in):
            for key in [k for k in table if k[0] == client_id]:
                del table[key]
        if not self._pending:
            self._touch()

    def subscription(self, session: Session, topic_filter: str, sub: Subscription | None) -> None:
        self._subs[(session.client_id, topic_filter)] = sub
        if not self._pending:
            self._touch()

    def outgoing(self, session: Session, out: Outgoing) -> None:
        client = session.client_id
        refs = self._out_refs.get(client)
        if refs is None:
            refs = self._out_refs[client] = {}
        sid = out.sid
        if not sid or sid not in refs:
            sid = out.sid = self._next_sid
            self._next_sid += 1
            refs[sid] = self._ref(out.message)
            self._out[sid] = (session, out, True)
        else:
            entry = self._out.get(sid)
            self._out[sid] = (session, out, entry is not None and entry[2])
        if not self._pending:
            self._touch()

    def outgoing_done(self, session: Session, out: Outgoing) -> None:
        client = session.client_id
        refs = self._out_refs.get(client)
        sid = out.sid
        if not sid or refs is None or sid not in refs:
            return
        self._unref(refs.pop(sid))
        entry = self._out.pop(sid, None)
        if entry is None or not entry[2]:
            self._out[sid] = None
        if not self._pending:
            self._touch()

    def inbound(self, session: Session, pid: int, fingerprint: int, held: Message | None,
                done: bool) -> None:
        client = session.client_id
        refs = self._in_refs.get(client)
        if refs is None:
            refs = self._in_refs[client] = {}
        old = refs.pop(pid, _MISSING)
        if old is not _MISSING and old is not None:
            self._unref(old)  # type: ignore[arg-type]
        key = (client, pid)
        entry = self._in.pop(key, None)
        if done:
            if old is _MISSING:
                return
            if entry is None or not entry[2]:
                self._in[key] = None
        else:
            mid = refs[pid] = self._ref(held) if held is not None else None
            new = old is _MISSING or (entry is not None and entry[2])
            self._in[key] = (fingerprint, mid, new)
        if not self._pending:
            self._touch()

    def will(self, client_id: str, will: Message | None, publish_at: float,
             expiry: int | None) -> None:
        old = self._dwill_refs.pop(client_id, None)
        if will is None:
            if old is None:
                return
            self._wills[client_id] = None
        else:
            mid = self._dwill_refs[client_id] = self._ref(will)
            source = will.source
            protocol, username = (source.protocol, source.username) if source is not None else \
                self._who.get(client_id, ("mqtt", None))
            self._wills[client_id] = (client_id, mid, publish_at, expiry, protocol, username)
        if old is not None:
            self._unref(old)
        if not self._pending:
            self._touch()

    def barrier(self) -> Batch | None:
        if self._pending:
            batch = self._batch
            if batch is None:
                batch = self._batch = Batch()
            return batch
        return self._committing

    # --- batches -------------------------------------------------------------------------

    def _statements(self) -> list[tuple[str, list[Any]]]:
        """The batch as (statement, rows) pairs, in an order that makes a session's
        rows after its end in the same batch those of its successor."""
        sessions = []
        for cid, session in self._sess.items():
            will = session.will
            old = self._swill_refs.get(cid)
            mid = None
            if will is not None:
                if old is not None and will.store_id == old:
                    mid = old
                else:
                    mid = self._swill_refs[cid] = self._ref(will)
                    if old is not None:
                        self._unref(old)
            elif old is not None:
                del self._swill_refs[cid]
                self._unref(old)
            client = session.client
            self._who[cid] = (client.protocol, client.username)
            key = listener_key(client.listener)
            sessions.append((
                cid, client.protocol, client.username, json.dumps(key) if key else None,
                session.expiry, session.disconnected_at if session.endpoint is None else None,
                mid, session.will_delay, session.will_expiry, session._next_pid,
                json.dumps(session.extra) if session.extra else None))
        out_put, out_del = [], []
        for sid, entry in self._out.items():
            if entry is None:
                out_del.append((sid,))
                continue
            session, out, _ = entry
            share = out.share
            out_put.append((
                sid, session.client_id, out.message.store_id, out.qos, out.retain,
                sub_ids_text(out.sub_ids) if out.sub_ids else None,
                share.name if share is not None else None,
                share.topic_filter if share is not None else None,
                out.pid, out.state, session.inflight.get(out.pid) is out))
        sub_put, sub_del = [], []
        for (cid, topic_filter), sub in self._subs.items():
            if sub is None:
                sub_del.append((cid, topic_filter))
            else:
                sub_put.append((cid, topic_filter, sub.qos, sub.no_local, sub.retain_as_published,
                                sub.retain_handling.value, sub.identifier))
        in_put, in_del = [], []
        for key, entry in self._in.items():
            if entry is None:
                in_del.append(key)
            else:
                in_put.append((key[0], key[1], entry[0], entry[1]))
        ret_put = [(t, mid) for t, mid in self._ret.items() if mid is not None]
        ret_del = [(t,) for t, mid in self._ret.items() if mid is None]
        will_put = [w for w in self._wills.values() if w is not None]
        will_del = [(c,) for c, w in self._wills.items() if w is None]
        ended = [(c,) for c in self._ended]
        statements: list[tuple[str, list[Any]]] = []
        if ended:
            for table in ("sessions", "subscriptions", "inbound"):
                statements.append((f"DELETE FROM {table} WHERE client_id = ?", ended))
        for sql, rows in (
            (schema.PUT_MESSAGE, [message_row(mid, m) for mid, m in self._msg_new.items()]),
            (schema.PUT_SESSION, sessions),
            (schema.PUT_RETAINED, ret_put),
            ("DELETE FROM retained WHERE topic = ?", ret_del),
            (schema.PUT_SUBSCRIPTION, sub_put),
            ("DELETE FROM subscriptions WHERE client_id = ? AND topic_filter = ?", sub_del),
            (schema.PUT_OUTGOING, out_put),
            ("DELETE FROM outgoing WHERE seq = ?", out_del),
            (schema.PUT_INBOUND, in_put),
            ("DELETE FROM inbound WHERE client_id = ? AND pid = ?", in_del),
            (schema.PUT_WILL, will_put),
            ("DELETE FROM wills WHERE client_id = ?", will_del),
            ("DELETE FROM messages WHERE id = ?", [(mid,) for mid in self._msg_del]),
        ):
            if rows:
                statements.append((sql, rows))
        self._new_batch()
        return statements

    def _flush(self) -> None:
        """Hand the batch to the writer thread (reactor thread, once per turn)."""
        self._scheduled = None
        if not self._pending or self._committing is not None or self.failed is not None:
            return
        statements = self._statements()
        self._committing, self._batch = self._batch or Batch(), None
        self._pending = False
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()
        self._queue.put(statements)

    def _run(self) -> None:
        """The writer thread: one transaction per batch, then back to the reactor."""
        conn = self.conn
        call = self.reactor.callFromThread
        while True:
            statements = self._queue.get()
            if statements is _CLOSE:
                conn.close()
                call(self._closed)
                return
            try:
                started = time.perf_counter()
                _execute(conn, statements)
                call(self._committed, time.perf_counter() - started)
            except Exception as e:   # the disk is full, the file went away, ...
                call(self._failed, e)

    def _committed(self, seconds: float) -> None:
        self.stats.add(seconds)
        batch, self._committing = self._committing, None
        if self._pending:
            self._flush()
        if batch is not None:
            batch.fire()
        self._maybe_close()

    def _failed(self, error: BaseException) -> None:
        self.failed = error
        self.log.critical("{path}: cannot write the persistence store: {error}; stopping "
                          "(acknowledgements held back since the last commit are never sent)",
                          path=self.path, error=str(error))
        from twisted.internet import reactor

        if reactor.running:  # type: ignore[attr-defined]
            reactor.stop()  # type: ignore[attr-defined]
        if self._closing is not None:
            self._queue.put(_CLOSE)

    # --- shutdown and tests ----------------------------------------------------------

    def close(self) -> Deferred[None]:
        """Commit what is pending, then close the file (at shutdown)."""
        if self._closing is None:
            self._closing = Deferred()
            if self._scheduled is not None:
                self._scheduled.cancel()
                self._scheduled = None
            if self._thread is None:
                if self._pending and self.failed is None:
                    self.flush_now()
                self.conn.close()
                self._closing.callback(None)
            elif self.failed is not None:
                self._queue.put(_CLOSE)
            else:
                self._maybe_close()
        return self._closing

    def _maybe_close(self) -> None:
        if self._closing is None or self._committing is not None or self._thread is None:
            return
        if self._pending and self.failed is None:
            self._flush()
        else:
            self._queue.put(_CLOSE)

    def _closed(self) -> None:
        self._thread = None
        if self._closing is not None and not self._closing.called:
            self._closing.callback(None)

    def flush_now(self) -> None:
        """Commit the pending batch on this thread (tools and tests, no writer thread)."""
        if self._thread is not None:
            raise RuntimeError("the writer thread owns the connection")
        if not self._pending:
            return
        statements = self._statements()
        batch, self._batch = self._batch, None
        self._pending = False
        started = time.perf_counter()
        _execute(self.conn, statements)
        self.stats.add(time.perf_counter() - started)
        if batch is not None:
            batch.fire()

    @property
    def message_count(self) -> int:
        return len(self._refs)


def _execute(conn: Any, statements: list[tuple[str, list[Any]]]) -> None:
    conn.execute("BEGIN")
    try:
        for sql, rows in statements:
            conn.executemany(sql, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


__all__ = ["SqliteStore", "CommitStats", "BUCKETS"]
