"""Authentication policy shared by every transport.

Until password files and plugins arrive this applies Mosquitto 2.0's anonymous rule:
a client without a username is let in only where ``allow_anonymous`` allows it.
"""

from __future__ import annotations

from typing import Callable

from gateway.hub.api import ClientInfo


class AnonymousPolicy:
    """Callable authenticator; ``allowed(listener)`` is re-read on every CONNECT so a
    reload changes it for new connections without rebuilding anything."""

    def __init__(self, allowed: Callable[[object], bool]) -> None:
        self.allowed = allowed

    def __call__(self, client: ClientInfo, password: bytes | None) -> bool:
        if client.username is None:
            return self.allowed(client.listener)
        return True
