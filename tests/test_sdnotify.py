"""systemd's notify protocol, with a Unix datagram socket the test owns as
``$NOTIFY_SOCKET``: READY=1 once the listeners accept, WATCHDOG=1 at half of
``$WATCHDOG_USEC`` from the running loop, STOPPING=1 at SIGTERM."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.sdnotify import Notifier, watchdog_interval
from tests.conftest import HOST

TIMEOUT = 15.0  # only a guard against hangs


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(TIMEOUT)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))   # the gateway inherits the environment
    yield sock
    sock.close()


def messages(sock: socket.socket, until: str) -> list[str]:
    got = []
    while True:
        data = sock.recv(4096).decode()
        got.append(data)
        if until in data.split("\n"):
            return got


def test_ready_watchdog_and_stopping(gateway, notify_socket, monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")       # WATCHDOG=1 every 0.1 s
    gw = gateway(wait=False)
    ready = messages(notify_socket, "READY=1")
    assert ready == [m for m in ready if "READY=1" in m]     # nothing before READY
    # READY came after the listener was bound: it accepts at once
    socket.create_connection((HOST, gw.port), timeout=TIMEOUT).close()
    assert "WATCHDOG=1" in messages(notify_socket, "WATCHDOG=1")[-1]
    messages(notify_socket, "WATCHDOG=1")
    gw.proc.terminate()
    assert "STOPPING=1" in messages(notify_socket, "STOPPING=1")[-1]
    assert gw.wait_exit() == 0


def test_no_watchdog_without_watchdog_usec(gateway, notify_socket, monkeypatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    gw = gateway(wait=False)
    messages(notify_socket, "READY=1")
    gw.proc.terminate()
    assert messages(notify_socket, "STOPPING=1")[-1].startswith("STOPPING=1")
    assert gw.wait_exit() == 0


def test_watchdog_interval() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "2"}, pid=2) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None


def test_a_vanished_socket_is_not_fatal(tmp_path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.send("READY=1") is False
    assert Notifier("@abstract").address == "\0abstract"
