"""The asyncio reactor, installed before anything imports ``twisted.internet.reactor``.

aiocoap needs an asyncio loop; running Twisted on it lets both share one thread.
"""

from __future__ import annotations

import sys


def install_asyncio_reactor() -> None:
    """Install Twisted's asyncio reactor unless some reactor is already installed."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()


def require_asyncio_reactor() -> None:
    """Fail loudly when another reactor was forced (``twistd -r epoll``)."""
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise SystemExit(
            f"mqttgateway needs the asyncio reactor (CoAP shares its loop); got "
            f"{type(reactor).__module__}.{type(reactor).__name__}: drop the -r/--reactor option "
            f"or pass -r asyncio"
        )
