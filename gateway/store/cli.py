"""``mqttgateway-db``: import a Mosquitto database into the store, or describe the store.

    mqttgateway-db import FILE [-c CONFIG] [--force]
    mqttgateway-db info [-c CONFIG]

The store is the one the config names (``persistence_location``/``persistence_file``),
or ``./mqttgateway.db`` without a config. Run it while the gateway is stopped: a
running gateway holds the store locked, and this says so.
"""

from __future__ import annotations

import argparse
import os
import sys

from gateway.config import default_config, load
from gateway.errors import ConfigError, StoreError
from gateway.hub.auth import listener_key
from gateway.store import schema
from gateway.store.mosquitto_db import read_mosquitto_db
from gateway.store.mosquitto_import import counts, snapshot_from_mosquitto
from gateway.store.startup import store_path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqttgateway-db", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import a Mosquitto 1.5-2.0 mosquitto.db")
    imp.add_argument("file", help="the Mosquitto database")
    imp.add_argument("-c", "--config", help="the gateway's config file")
    imp.add_argument("--force", action="store_true",
                     help="replace what the store holds (else a store in use is refused)")
    info = sub.add_parser("info", help="what the store holds")
    info.add_argument("-c", "--config", help="the gateway's config file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load(args.config) if args.config else default_config()
    except (ConfigError, OSError) as e:
        print(f"mqttgateway-db: {e}", file=sys.stderr)
        return 1
    path = store_path(config)
    try:
        if args.command == "import":
            return _import(args.file, path, config, args.force)
        return _info(path)
    except StoreError as e:
        print(f"mqttgateway-db: {e}", file=sys.stderr)
        return 1


def _import(source: str, path: str, config: object, force: bool) -> int:
    state = read_mosquitto_db(source)
    snap = snapshot_from_mosquitto(state, [listener_key(x) for x in config.listeners])  # type: ignore[attr-defined]
    conn = schema.open_store(path, config.persistence_sync)  # type: ignore[attr-defined]
    try:
        if not schema.is_empty(conn) and not force:
            raise StoreError("the store is not empty; --force replaces what it holds", path)
        schema.write_snapshot(conn, snap, replace=True)
    finally:
        conn.close()
    found = counts(snap)
    print(f"imported {source} into {path}: " + ", ".join(f"{n} {what}" for what, n in found.items()))
    return 0


def _info(path: str) -> int:
    if not os.path.exists(path):
        raise StoreError("no store here", path)
    conn = schema.open_store(path, create=False)
    try:
        for table, n in schema.rows(conn).items():
            print(f"{table}: {n}")
    finally:
        conn.close()
    print(f"bytes on disk: {schema.size_on_disk(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
