"""Runs a ``DTLSServer`` on a reactor for a UDP transport.

The transport gives each datagram to ``receive`` and sends plaintext with ``send``;
the driver writes what the server produced with the transport's ``sendto``, keeps one
reactor call armed for the server's timer, and turns the server's events into the
transport's ``opened``/``closed`` callbacks. Handshake failures and session errors
are what anonymous peers cause at will, so they are logged through a ``Summary``.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

from gateway.dtls.server import Closed, DTLSServer, Failed, Opened, Session
from gateway.logtext import summary_for


def _host(addr: Any) -> str:
    host = str(addr[0]) if isinstance(addr, tuple) else str(addr)
    return host[7:] if host.startswith("::ffff:") else host


def describe(addr: Any) -> str:
    return f"{_host(addr)}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


class Driver:
    log = Logger()

    def __init__(self, server: DTLSServer, clock: IReactorTime,
                 sendto: Callable[[bytes, Any], None],
                 opened: Callable[[Session], None] | None = None,
                 closed: Callable[[Any, str], None] | None = None) -> None:
        self.server = server
        self.clock = clock
        self.sendto = sendto
        self.opened = opened
        self.closed = closed
        self.summary = summary_for(clock, "DTLS failures", self.log)
        self._call: IDelayedCall | None = None
        self._call_at = 0.0
        self._arm(server.get_timer())

    def receive(self, data: bytes, addr: Any) -> list[bytes]:
        """One datagram; the application data it carried."""
        plain = self.server.receive(data, addr)
        self.flush()
        return plain

    def send(self, addr: Any, data: bytes) -> bool:
        """Encrypt and send; False when ``addr`` has no open session."""
        sent = self.server.send(addr, data)
        self.flush()
        return sent

    def close(self, addr: Any) -> None:
        self.server.close(addr)
        self.flush()

    def stop(self) -> None:
        """Close every session (close_notify) and the timer."""
        self.server.close_all()
        self.flush()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def flush(self) -> None:
        server = self.server
        for data, addr in server.datagrams_to_send():
            self.sendto(data, addr)
        event = server.next_event()
        while event is not None:
            self._report(event)
            event = server.next_event()
        when = server.get_timer()
        if self._call is None or when < self._call_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call_at = when
        self._call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        self.server.handle_timer()
        self.flush()

    def _report(self, event: Any) -> None:
        kind = type(event)
        if kind is Opened:
            if self.opened is not None:
                self.opened(event.session)
        elif kind is Closed:
            if event.kind == "error":
                self.summary.event("session error", _host(event.addr), LogLevel.info,
                                   "DTLS session with {peer} ended: {reason}",
                                   peer=describe(event.addr), reason=event.reason)
            if self.closed is not None:
                self.closed(event.addr, event.reason)
        elif kind is Failed:
            self.summary.event("handshake failed", _host(event.addr), LogLevel.info,
                               "DTLS handshake with {peer} failed: {reason}",
                               peer=describe(event.addr), reason=event.reason)
