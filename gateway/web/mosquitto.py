"""Mosquitto 2.1's HTTP API: ``/api/v1/systree``, ``/api/v1/listeners``, ``/api/v1/version``.

The shapes are those of Mosquitto's ``src/http_api.c``:

- ``systree``: one object, ``$SYS`` topic -> integer, with ``$SYS/broker/uptime`` in
  seconds. Mosquitto leaves out the values it does not keep (heap figures without
  memory tracking); so do we for ``publish/bytes/*``, ``packet/out/*`` and
  ``connections/socket/count``, which the gateway does not count.
- ``listeners``: ``{"listeners": [{"port", "protocol", "tls", "mtls",
  "allow_anonymous"}]}``, protocol ``mqtt``, ``mqtt-sn``, ``websockets`` or ``httpapi``
  as Mosquitto writes them (and ``coap``, which Mosquitto has not).
- ``version``: the bare version text, not JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from gateway import __version__
from gateway.hub.auth import security_of

#: Mosquitto's names for the listener protocols.
PROTOCOL_NAMES = {"mqtt": "mqtt", "mqttsn": "mqtt-sn", "websockets": "websockets",
                  "http_api": "httpapi", "coap": "coap"}


def systree(hub: Any) -> dict[str, int]:
    """The ``$SYS`` values, as integers, in Mosquitto's order."""
    stats = hub.stats
    sessions = list(hub.sessions.values())
    total = len(sessions)
    connected = stats.clients_connected
    store = hub.retained_store
    retained = [m for m in map(store.get, store.topics()) if m is not None]
    queued = [out.message for s in sessions for out in (*s.queue, *s.inflight.values())]
    shared = sum(1 for s in sessions for f in s.subscriptions if f.startswith("$share/"))
    values = {
        "clients/total": total,
        "clients/maximum": stats.clients_maximum,
        "clients/disconnected": total - connected,
        "clients/connected": connected,
        "clients/expired": stats.clients_expired,
        "messages/stored": len(retained) + len(queued),
        "store/messages/bytes": sum(len(m.payload) for m in (*retained, *queued)),
        "subscriptions/count": hub.trie.count,
        "shared_subscriptions/count": shared,
        "retained messages/count": len(retained),
        "messages/received": stats.messages_received,
        "messages/sent": stats.messages_sent,
        "bytes/received": stats.bytes_received,
        "bytes/sent": stats.bytes_sent,
        "publish/messages/dropped": stats.dropped,
        "publish/messages/received": stats.publish_received,
        "publish/messages/sent": stats.publish_sent,
        "uptime": int(time.monotonic() - stats.started),
    }
    return {f"$SYS/broker/{name}": int(value) for name, value in values.items()}


def listeners(hub: Any, configured: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Every configured listener as Mosquitto describes one."""
    security = security_of(hub)
    return {"listeners": [{
        "port": listener.port,
        "protocol": PROTOCOL_NAMES.get(listener.protocol, listener.protocol),
        "tls": bool(listener.certfile and listener.keyfile),
        "mtls": bool(listener.require_certificate),
        "allow_anonymous": security.allows_anonymous(listener) if security is not None else True,
    } for listener in configured]}


def endpoints(hub: Any, configured: Callable[[], list[Any]]) -> dict[str, Callable[[], bytes]]:
    """Path -> body (Mosquitto prints its JSON with cJSON_Print: indented)."""
    return {
        "/api/v1/systree": lambda: json.dumps(systree(hub), indent="\t").encode(),
        "/api/v1/listeners": lambda: json.dumps(listeners(hub, configured()), indent="\t").encode(),
        "/api/v1/version": lambda: __version__.encode(),
    }
