"""Where listeners bind: shared by every transport, so none imports another's starter."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Listener

# Twisted's default of 50 drops SYNs when many clients (re)connect at once, costing
# each a one-second retransmit; the kernel caps this at net.core.somaxconn anyway.
LISTEN_BACKLOG = 1024


def interface(listener: Listener) -> str:
    """Mosquitto binds every interface when no address is given; so do we, v4 and v6."""
    if listener.bind_address:
        return listener.bind_address
    if listener.socket_domain == "ipv4" or not socket.has_ipv6:
        return "0.0.0.0"
    return "::"


#: The socket kind under each listener protocol, as status pages and metrics name it.
_KINDS = {"mqtt": "tcp", "mqttsn": "udp", "coap": "udp", "websockets": "ws", "http_api": "tcp"}
_SECURE = {"tcp": "tls", "ws": "wss", "udp": "dtls"}


def transport_label(listener: object) -> str:
    """How a listener's clients reach the gateway: ``tcp:1883``, ``tls:8883``,
    ``udp:1884``, ``dtls:5684``, ``ws:8080``; empty without a listener."""
    if listener is None:
        return ""
    protocol = getattr(listener, "protocol", "mqtt")
    kind = _KINDS.get(protocol, protocol)
    if (getattr(listener, "certfile", None) and getattr(listener, "keyfile", None)) or getattr(
            listener, "psk_hint", None):
        kind = _SECURE.get(kind, kind)
    return f"{kind}:{getattr(listener, 'port', 0)}"
