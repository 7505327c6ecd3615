"""Make the SQLite store files in this folder: a golden store and broken ones.

    python tests/data/store/make_sqlite_stores.py [DEST_DIR]

``sqlite-v1.db`` is a store of format version 1 as the gateway writes it (through
``SqliteStore`` driven by a hub), which ``tests/store/test_sqlite.py`` reads back: a
change to the format that would not read an existing store fails there. The others
are refused at startup: a newer format version, a foreign SQLite database (no
application id) and a store with a damaged page.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the checkout, when run as a script

from twisted.internet import task  # noqa: E402

from gateway.hub.api import ClientInfo, Message, Properties, Subscription  # noqa: E402
from gateway.hub.hub import Hub  # noqa: E402
from gateway.store.sqlite import SqliteStore  # noqa: E402
from tests.hub.helpers import FakeEndpoint  # noqa: E402

CLOCK_START = 1_800_000_000.0   # wall-clock time of the golden file's events


def golden(path: Path) -> None:
    clock = task.Clock()
    clock.advance(CLOCK_START)
    store = SqliteStore(str(path), autoflush=False)
    store.load()
    hub = Hub(None, clock, store)
    props = Properties(content_type="text/plain", correlation_data=b"\x00\x01",
                       user_properties=(("k", "v"),))
    hub.publish(Message("r/plain", b"21.5", 1, True))
    hub.publish(Message("r/v5", b"{}", 1, True, props, expires_at=CLOCK_START + 86400))
    ep = FakeEndpoint()
    session, _ = hub.connect(ClientInfo("sess", username="alice"), ep, False, 3600)
    session.resume(ep)
    hub.subscribe(session, "q/#", Subscription(2, identifier=7))
    hub.publish(Message("q/inflight", b"one", 1))
    hub.publish(Message("q/acked", b"two", 2))
    session.received_pubrec(2)
    session.inbound_qos2_received(5, 1234, Message("in/held", b"held", 2))
    hub.disconnect(session, graceful=True)
    hub.publish(Message("q/queued", b"three", 1))
    store.flush_now()
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.conn.execute("PRAGMA journal_mode=DELETE")
    store.conn.close()


def main(argv: list[str]) -> None:
    dest = Path(argv[0]) if argv else HERE
    work = Path(tempfile.mkdtemp(prefix="sqlite-stores-"))
    try:
        gold = work / "sqlite-v1.db"
        golden(gold)
        shutil.copy(gold, dest / "sqlite-v1.db")
        newer = dest / "sqlite-newer-version.db"
        shutil.copy(gold, newer)
        with sqlite3.connect(newer) as db:
            db.execute("PRAGMA user_version=2")
        db.close()
        foreign = dest / "sqlite-foreign.db"
        foreign.unlink(missing_ok=True)
        db = sqlite3.connect(foreign)
        db.execute("CREATE TABLE notes(text TEXT)")
        db.execute("INSERT INTO notes VALUES ('not a store')")
        db.commit()
        db.close()
        data = bytearray(gold.read_bytes())
        page = int.from_bytes(data[16:18], "big")
        # The second page (a table's b-tree) overwritten with garbage.
        data[page:2 * page] = bytes((i * 37 + 11) % 256 for i in range(page))
        (dest / "sqlite-corrupt.db").write_bytes(bytes(data))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
