"""An in-memory ``Journal`` that keeps what a store would keep, to test the seam:
every change the hub reports lands here, and ``snapshot()`` gives it back as a store
would at startup."""

from __future__ import annotations

import itertools
import json

from gateway.hub.persistence import (
    Batch, Snapshot, StoredInbound, StoredMessage, StoredOutgoing, StoredSession, StoredSubscription,
    StoredWill,
)
from gateway.hub.sessions import AWAIT_ACK


class MemoryJournal:
    def __init__(self) -> None:
        self.retained_by_topic: dict = {}
        self.sessions: dict = {}
        self.subs: dict = {}
        self.outgoing_rows: dict = {}
        self.inbound_rows: dict = {}
        self.wills: dict = {}
        self.messages: dict = {}
        self.calls = 0
        self._ids = itertools.count(1)
        self._sids = itertools.count(1)
        self.pending = False
        self.holding = False
        self.batch: Batch | None = None

    def _message(self, message) -> int:
        if not message.store_id:
            message.store_id = next(self._ids)
        self.messages[message.store_id] = message
        return message.store_id

    def _touch(self) -> None:
        self.calls += 1
        self.pending = True

    def retained(self, message) -> None:
        self._touch()
        self.retained_by_topic[message.topic] = self._message(message)

    def retained_cleared(self, topic) -> None:
        self._touch()
        self.retained_by_topic.pop(topic, None)

    def session(self, session) -> None:
        self._touch()
        c = session.client
        listener = None
        will = self._message(session.will) if session.will is not None else None
        self.sessions[session.client_id] = StoredSession(
            session.client_id, c.protocol, c.username, listener, session.expiry,
            session.disconnected_at if session.endpoint is None else None,
            will, session.will_delay, session.will_expiry, session._next_pid,
            json.loads(json.dumps(session.extra)))  # a store keeps ``extra`` as JSON

    def session_ended(self, client_id) -> None:
        self._touch()
        self.sessions.pop(client_id, None)
        for table in (self.subs, self.outgoing_rows, self.inbound_rows):
            for key in [k for k in table if k[0] == client_id]:
                del table[key]

    def subscription(self, session, topic_filter, sub) -> None:
        self._touch()
        key = (session.client_id, topic_filter)
        if sub is None:
            self.subs.pop(key, None)
        else:
            self.subs[key] = StoredSubscription(session.client_id, topic_filter, sub.qos, sub.no_local,
                                                sub.retain_as_published, sub.retain_handling.value,
                                                sub.identifier)

    def outgoing(self, session, out) -> None:
        self._touch()
        if not out.sid:
            out.sid = next(self._sids)
        share = (out.share.name, out.share.topic_filter) if out.share is not None else None
        inflight = session.inflight.get(out.pid) is out
        self.outgoing_rows[(session.client_id, out.sid)] = StoredOutgoing(
            session.client_id, out.sid, self._message(out.message), out.qos, out.retain, out.sub_ids,
            share, out.pid, out.state, inflight)

    def outgoing_done(self, session, out) -> None:
        self._touch()
        self.outgoing_rows.pop((session.client_id, out.sid), None)

    def inbound(self, session, pid, fingerprint, held, done) -> None:
        self._touch()
        key = (session.client_id, pid)
        if done:
            self.inbound_rows.pop(key, None)
        else:
            self.inbound_rows[key] = StoredInbound(session.client_id, pid, fingerprint,
                                                   self._message(held) if held is not None else None)

    def will(self, client_id, will, publish_at, expiry) -> None:
        self._touch()
        if will is None:
            self.wills.pop(client_id, None)
        else:
            self.wills[client_id] = StoredWill(client_id, self._message(will), publish_at, expiry)

    def barrier(self):
        """None, or with ``holding`` set the batch that ``commit()`` makes durable, as
        a store whose commit is still running."""
        if not self.holding:
            return None
        if self.batch is None:
            self.batch = Batch()
        return self.batch

    def commit(self) -> None:
        batch, self.batch = self.batch, None
        if batch is not None:
            batch.fire()

    def snapshot(self) -> Snapshot:
        def stored(mid):
            m = self.messages[mid]
            return StoredMessage(mid, m.topic, m.payload, m.qos, m.retain, m.props, m.expires_at)
        used = set(self.retained_by_topic.values())
        used |= {o.message_id for o in self.outgoing_rows.values()}
        used |= {i.message_id for i in self.inbound_rows.values() if i.message_id}
        used |= {s.will_id for s in self.sessions.values() if s.will_id}
        used |= {w.message_id for w in self.wills.values()}
        return Snapshot(
            messages={mid: stored(mid) for mid in used},
            retained=list(self.retained_by_topic.values()),
            sessions=list(self.sessions.values()),
            subscriptions=list(self.subs.values()),
            outgoing=list(self.outgoing_rows.values()),
            inbound=list(self.inbound_rows.values()),
            wills=list(self.wills.values()),
        )


__all__ = ["MemoryJournal", "AWAIT_ACK"]
