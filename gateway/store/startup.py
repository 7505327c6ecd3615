"""Where the configured store is, and opening it (importing Mosquitto's on first start).

The store is ``persistence_location/persistence_file`` (``mqttgateway.db`` unless
``persistence_file`` says otherwise). On the first start, with no store there yet and
Mosquitto's ``mosquitto.db`` in the same folder, that file is imported, so a user
replacing Mosquitto keeps retained messages, sessions and queued messages; the
Mosquitto file is left as it was. A problem with either file stops startup.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from gateway.hub.persistence import Snapshot
from gateway.store import schema
from gateway.store.mosquitto_db import read_mosquitto_db
from gateway.store.mosquitto_import import counts, snapshot_from_mosquitto
from gateway.store.sqlite import SqliteStore

MOSQUITTO_FILE = "mosquitto.db"


def store_path(config: Any) -> str:
    return os.path.join(config.persistence_location or ".", config.persistence_file)


def open_configured(config: Any, listener_keys: Iterable[Any], log: Any = None
                    ) -> tuple[SqliteStore, Snapshot]:
    """Open the store the config names and read it back; ``StoreError`` if unusable."""
    path = store_path(config)
    imported = None
    mosquitto = os.path.join(os.path.dirname(path) or ".", MOSQUITTO_FILE)
    if (not os.path.exists(path) and os.path.exists(mosquitto)
            and os.path.abspath(mosquitto) != os.path.abspath(path)):
        # Read before the store exists: a bad Mosquitto file must not leave an empty
        # store behind that a second start would take as the user's state.
        imported = snapshot_from_mosquitto(read_mosquitto_db(mosquitto), listener_keys)
    store = SqliteStore(path, config.persistence_sync)
    try:
        if imported is not None:
            schema.write_snapshot(store.conn, imported)
            if log is not None:
                log.info("imported {path}: {retained} retained messages, {sessions} sessions, "
                         "{subscriptions} subscriptions, {queued} queued messages, {inbound} "
                         "inbound QoS 2 messages", path=mosquitto, **counts(imported))
        snapshot = store.load()
    except BaseException:
        store.conn.close()
        if imported is not None:     # no half-made store: the next start imports again
            for leftover in (path, path + "-wal"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        raise
    return store, snapshot
