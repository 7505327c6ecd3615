"""Mosquitto's state (``gateway.store.mosquitto_db``) as a ``Snapshot`` for the store.

What Mosquitto 2.0 saves maps onto the gateway's records: retained messages (with
their expiry, properties and source), persistent sessions with their subscriptions,
the QoS 1/2 messages queued or in flight to them, and inbound QoS 2 messages awaiting
their PUBREL. Mosquitto saves no wills. A session's listener is matched by port.
"""

from __future__ import annotations

from typing import Any, Iterable
from zlib import crc32

from gateway.hub.api import Properties
from gateway.hub.persistence import (
    Snapshot, StoredInbound, StoredMessage, StoredOutgoing, StoredSession, StoredSubscription,
)
from gateway.hub.sessions import AWAIT_ACK, AWAIT_COMP
from gateway.store.mosquitto_records import (
    CONTENT_TYPE, CORRELATION_DATA, NEVER_EXPIRES, PAYLOAD_FORMAT_INDICATOR, RESPONSE_TOPIC,
    USER_PROPERTY, MosquittoState,
)
from gateway.store.mosquitto_records import StoredMessage as MosquittoMessage


def _properties(message: MosquittoMessage) -> Properties | None:
    if not message.properties:
        return None
    values = message.properties_dict()
    props = Properties(
        content_type=values.get(CONTENT_TYPE),
        payload_format=values.get(PAYLOAD_FORMAT_INDICATOR),
        response_topic=values.get(RESPONSE_TOPIC),
        correlation_data=values.get(CORRELATION_DATA),
        user_properties=tuple(tuple(pair) for pair in values.get(USER_PROPERTY, ())),
    )
    return props or None


def _message(m: MosquittoMessage) -> StoredMessage:
    return StoredMessage(m.store_id, m.topic, m.payload, m.qos, m.retain, _properties(m),
                         float(m.expiry_time) if m.expiry_time else None, m.source_id,
                         m.source_username)


def snapshot_from_mosquitto(state: MosquittoState, listeners: Iterable[Any] = ()) -> Snapshot:
    """The records to write into an empty store; ``listeners`` are the configured
    listener keys (protocol, port, address), matched to Mosquitto's listener port."""
    by_port = {}
    for key in listeners:
        if key and key[0] == "mqtt":
            by_port.setdefault(key[1], key)
    snap = Snapshot()
    used: set[int] = set()
    for mid in state.retained_ids:
        if mid in state.messages:
            snap.retained.append(mid)
            used.add(mid)
    seq = 0
    for client_id, session in state.sessions.items():
        record = session.client
        interval = record.session_expiry_interval
        if interval == 0:
            continue    # a clean session Mosquitto happened to save: it ends at restart
        expiry = None if interval == NEVER_EXPIRES else interval
        if record.disconnect_time is not None:
            disconnected_at: float | None = float(record.disconnect_time)
        elif expiry is not None and record.session_expiry_time:
            disconnected_at = float(record.session_expiry_time - expiry)
        else:
            disconnected_at = None   # connected when Mosquitto stopped
        snap.sessions.append(StoredSession(
            client_id, "mqtt", record.username, by_port.get(record.listener_port), expiry,
            disconnected_at, next_pid=record.last_mid))
        for sub in session.subscriptions:
            snap.subscriptions.append(StoredSubscription(
                client_id, sub.topic_filter, sub.qos, sub.no_local, sub.retain_as_published,
                identifier=sub.identifier or None))
        for delivery in session.outgoing:
            seq += 1
            used.add(delivery.message.store_id)
            snap.outgoing.append(StoredOutgoing(
                client_id, seq, delivery.message.store_id, delivery.qos, delivery.retain,
                delivery.subscription_identifiers, None, delivery.mid,
                AWAIT_COMP if delivery.awaiting_pubcomp else AWAIT_ACK, not delivery.queued))
        for delivery in session.incoming:
            m = delivery.message
            used.add(m.store_id)
            snap.inbound.append(StoredInbound(
                client_id, delivery.mid, crc32(m.payload, crc32(m.topic.encode())), m.store_id))
    snap.messages = {mid: _message(state.messages[mid]) for mid in used}
    return snap


def counts(snap: Snapshot) -> dict[str, int]:
    return {"retained": len(snap.retained), "sessions": len(snap.sessions),
            "subscriptions": len(snap.subscriptions), "queued": len(snap.outgoing),
            "inbound": len(snap.inbound)}
