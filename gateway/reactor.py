"""The asyncio reactor, installed before anything imports ``twisted.internet.reactor``.

aiocoap needs an asyncio loop; running Twisted on it lets both share one thread.
The loop is uvloop's when it is installed (a dependency on CPython/Linux):
at one message per wake-up asyncio's own loop, Python code running for every
event, was about a fifth of the gateway's CPU (bench/results: the low-rate
scenario, ``uvloop`` against ``mqttgateway`` with ``MQTTGATEWAY_EVENT_LOOP=asyncio``).
``MQTTGATEWAY_EVENT_LOOP=asyncio`` keeps asyncio's own.
"""

from __future__ import annotations

import asyncio
import errno
import os
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


EVENT_LOOP_ENV = "MQTTGATEWAY_EVENT_LOOP"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop, unless it is missing or ``MQTTGATEWAY_EVENT_LOOP`` is
    ``asyncio``: then asyncio's own."""
    if os.environ.get(EVENT_LOOP_ENV, "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


def install_asyncio_reactor() -> None:
    """Install the gateway's asyncio reactor unless some reactor is already installed."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor

        loop = new_event_loop()
        asyncio.set_event_loop(loop)  # aiocoap finds it as the current loop
        installReactor(GatewayReactor(loop))


def event_loop_name() -> str:
    """``uvloop`` or ``asyncio``: whose loop the running reactor is on (for the log)."""
    from twisted.internet import reactor

    loop = getattr(reactor, "_asyncioEventloop", None)
    return type(loop).__module__.split(".")[0] if loop is not None else "none"


def require_asyncio_reactor() -> None:
    """Fail loudly when another reactor was forced (``twistd -r epoll``)."""
    from twisted.internet import reactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise SystemExit(
            f"mqttgateway needs the asyncio reactor (CoAP shares its loop); got "
            f"{type(reactor).__module__}.{type(reactor).__name__}: drop the -r/--reactor option "
            f"or pass -r asyncio"
        )
