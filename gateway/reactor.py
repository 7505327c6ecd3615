"""The asyncio reactor, installed before anything imports ``twisted.internet.reactor``.

aiocoap needs an asyncio loop; running Twisted on it lets both share one thread.
The loop is uvloop's when it is installed (a dependency on CPython outside
Windows): at one message per wake-up asyncio's own loop, Python code running for
every event, had about a third of the gateway's profile samples
(bench/results/profile-lowrate-20261206-133520.txt), and uvloop cut the CPU per
message by about an eighth (bench/results/run-20261206-135302.txt).
``MQTTGATEWAY_EVENT_LOOP=asyncio`` keeps asyncio's own.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from typing import Any

from twisted.internet import main, tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.posixbase import _NO_FILEDESC

_TCP_DO_READ = tcp.Connection.doRead
_TCP_DATA_RECEIVED = tcp.Connection._dataReceived


def _plain_tcp_reader(reader: Any) -> bool:
    """A TCP connection reading with Twisted's own ``doRead`` (not a client still
    connecting, whose ``doRead`` is its ``doConnect`` meanwhile)."""
    do_read = getattr(reader, "doRead", None)
    return (isinstance(reader, tcp.Connection) and getattr(do_read, "__func__", None) is _TCP_DO_READ
            and type(reader)._dataReceived is _TCP_DATA_RECEIVED)


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

    A readable TCP connection goes through four Python calls in Twisted (the
    dispatch, the ``fileno()`` check, ``doRead`` and ``_dataReceived``) before its
    protocol sees the bytes: a fifth of the gateway's CPU at one message per
    wake-up (``bench/pyspy.py lowrate``). ``_read_tcp`` is those four in one, with
    the same outcomes: bytes to ``dataReceived``, EOF, a lost or closed socket, an
    exception from the protocol, each disconnecting as Twisted's dispatch does.
    """

    def __init__(self, eventloop: Any = None) -> None:
        self._dispatch = self._readOrWrite  # one bound method for every registration
        self._read_dispatch = self._read_tcp
        super().__init__(eventloop)  # (which registers the waker)

    def _read_tcp(self, conn: tcp.Connection) -> None:
        try:
            data = conn.socket.recv(conn.bufferSize)
        except OSError as e:
            if e.args[0] == tcp.EWOULDBLOCK:
                return
            why: Any = main.CONNECTION_LOST if conn.fileno() != -1 else _NO_FILEDESC
        except AttributeError:  # the socket is gone: Twisted's fileno() == -1 case
            why = _NO_FILEDESC
        else:
            if data:
                try:
                    conn.protocol.dataReceived(data)
                    return
                except Exception as e:
                    why = e
                    self._log.failure(None)
            else:
                why = main.CONNECTION_DONE
        self._disconnectSelectable(conn, why, True)

    def addReader(self, reader: Any) -> None:
        if reader in self._readers.keys() or reader in self._continuousPolling._readers:
            return
        fd = reader.fileno()
        try:
            if _plain_tcp_reader(reader):
                self._asyncioEventloop.add_reader(fd, self._read_dispatch, reader)
            else:
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
