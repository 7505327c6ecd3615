"""Checks of a whole listener section, made once the file is read (a key may come
before the ``protocol`` line that decides whether it applies)."""

from __future__ import annotations

from typing import Any

from gateway.errors import ConfigError

#: Listeners that serve files from ``http_dir`` (Mosquitto: http_api and websockets).
HTTP_DIR_PROTOCOLS = frozenset({"http_api", "websockets"})
#: Where an HTTP API listener binds without an address: it is an operator's window
#: onto every client, so it opens to the network only when told to.
HTTP_API_ADDRESS = "127.0.0.1"


def check_listener(listener: Any) -> None:
    """Refuse keys that do not apply to the listener's protocol; complete its address."""
    protocol = listener.protocol
    if listener.mqttsn_multicast and protocol != "mqttsn":
        _refuse(listener, "mqttsn_multicast", "only for a protocol mqttsn listener")
    if listener.http_dir is not None and protocol not in HTTP_DIR_PROTOCOLS:
        _refuse(listener, "http_dir", "only for a protocol http_api listener")
    if protocol == "http_api":
        for key in ("use_identity_as_username", "use_subject_as_username"):
            if getattr(listener, key):
                _refuse(listener, key, "not for a protocol http_api listener: HTTP clients "
                                       "log in with a username and password (Basic)")
        if listener.bind_address is None:
            listener.bind_address = HTTP_API_ADDRESS


def _refuse(listener: Any, key: str, reason: str) -> None:
    path, number = listener.lines.get(key, listener.source)
    raise ConfigError(reason, path, number, key)
