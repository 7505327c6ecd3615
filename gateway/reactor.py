"""The asyncio reactor, installed before anything imports ``twisted.internet.reactor``.

aiocoap needs an asyncio loop; running Twisted on it lets both share one thread.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor


class GatewayReactor(AsyncioSelectorReactor):
    """Twisted's asyncio reactor, dispatching socket events without the legacy log
    context.

    Twisted registers each reader and writer with asyncio through ``callWithLogger``,
    which on every event asks the connection for its log prefix, copies a context
    dict and pushes it for the call. Only ``twisted.python.log`` messages without a
    ``system`` of their own read that context; the gateway logs through
    ``twisted.logger``. At one message per wake-up that wrapper is a noticeable share
    of the CPU, and each registration kept a bound method and a longer argument tuple
    (bench/results: the low-rate and idle scenarios). Here asyncio calls the reactor's
    dispatch directly; the rest of registration is Twisted's, as in its ``addReader``
    and ``addWriter``.
    """

    def __init__(self, eventloop: Any = None) -> None:
        self._dispatch = self._readOrWrite  # one bound method for every registration
        super().__init__(eventloop)  # (which registers the waker)

    def addReader(self, reader: Any) -> None:
        if reader in self._readers.keys() or reader in self._continuousPolling._readers:
            return
        fd = reader.fileno()
        try:
            self._asyncioEventloop.add_reader(fd, self._dispatch, reader, True)
            self._readers[reader] = fd
        except OSError as e:
            self._unregisterFDInAsyncio(fd)
            if e.errno != errno.EPERM:
                raise
            self._continuousPolling.addReader(reader)  # epoll refuses regular files

    def addWriter(self, writer: Any) -> None:
        if writer in self._writers.keys() or writer in self._continuousPolling._writers:
            return
        fd = writer.fileno()
        try:
            self._asyncioEventloop.add_writer(fd, self._dispatch, writer, False)
            self._writers[writer] = fd
        except PermissionError:
            self._unregisterFDInAsyncio(fd)
            self._continuousPolling.addWriter(writer)
        except BrokenPipeError:
            self._unregisterFDInAsyncio(fd)
        except BaseException:
            self._unregisterFDInAsyncio(fd)
            raise


def install_asyncio_reactor() -> None:
    """Install the gateway's asyncio reactor unless some reactor is already installed."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor

        installReactor(GatewayReactor())


def require_asyncio_reactor() -> None:
    """Fail loudly when another reactor was forced (``twistd -r epoll``)."""
    from twisted.internet import reactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise SystemExit(
            f"mqttgateway needs the asyncio reactor (CoAP shares its loop); got "
            f"{type(reactor).__module__}.{type(reactor).__name__}: drop the -r/--reactor option "
            f"or pass -r asyncio"
        )
