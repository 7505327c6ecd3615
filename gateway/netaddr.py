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
