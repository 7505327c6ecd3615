"""systemd's notify protocol (``Type=notify``): READY, STOPPING and the watchdog.

Under systemd, ``$NOTIFY_SOCKET`` names a Unix datagram socket; each message is one
datagram of ``KEY=VALUE`` lines. ``READY=1`` goes out once the reactor runs (every
listener is bound before that, in ``privilegedStartService``); with ``WatchdogSec=``
in the unit, ``$WATCHDOG_USEC`` is set and ``WATCHDOG=1`` goes out every half of it
from the reactor's own loop, so a gateway whose loop is stuck is restarted. Without
``$NOTIFY_SOCKET`` nothing is sent.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET`` (an abstract socket when it starts with @)."""

    log = Logger()

    def __init__(self, address: str) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.failed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier | None:
        address = env.get("NOTIFY_SOCKET")
        return cls(address) if address else None

    def send(self, message: str) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as e:
            if not self.failed:  # once: a vanished socket must not flood the log
                self.failed = True
                self.log.warn("cannot notify systemd at {address}: {error}",
                              address=self.address.replace("\0", "@"), error=e.strerror)
            return False
        return True


def watchdog_interval(env: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` (half of ``$WATCHDOG_USEC``), or None when the
    watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    usec = env.get("WATCHDOG_USEC")
    owner = env.get("WATCHDOG_PID")
    if not usec or (owner and owner != str(os.getpid() if pid is None else pid)):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class SystemdNotify(service.Service):
    """READY=1 when the reactor runs, WATCHDOG=1 while it does, STOPPING=1 at the end."""

    def __init__(self, env: Mapping[str, str] = os.environ, clock: Any = None) -> None:
        self.notifier = Notifier.from_env(env)
        self.interval = watchdog_interval(env)
        self.clock = clock
        self.loop: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        if self.notifier is None:
            return
        clock = self.clock
        if clock is None:
            from twisted.internet import reactor as clock
        if hasattr(clock, "callWhenRunning"):
            clock.callWhenRunning(self._ready)
        else:
            self._ready()
        if self.interval:
            self.loop = task.LoopingCall(self.notifier.send, "WATCHDOG=1")
            self.loop.clock = clock
            self.loop.start(self.interval, now=False)

    def _ready(self) -> None:
        assert self.notifier is not None
        self.notifier.send(f"READY=1\nSTATUS=serving\nMAINPID={os.getpid()}")

    def stopService(self) -> None:
        super().stopService()
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.loop = None
        if self.notifier is not None:
            self.notifier.send("STOPPING=1")
