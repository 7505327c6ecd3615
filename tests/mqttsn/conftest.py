"""Fixtures for the MQTT-SN tests that run the real gateway (see tests/conftest.py, which
also has ``paho`` for the gateway's MQTT side)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import threading
import tty
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import REPO, closing

TIMEOUT = 10.0
BIN = Path(sys.executable).parent


def cli(name: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run one of mqtt-sn-12's command-line clients (``mqtt_sn_pub``, ``mqtt_sn_sub``),
    which must exit 0."""
    proc = subprocess.run(
        [str(BIN / name), *args, "--timeout", "10"], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{name} {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


class SNClient:
    """A raw MQTT-SN client over UDP: datagrams from ``tests.mqttsn.wire`` in, datagrams out."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.gateway = (host, port)

    def send(self, datagram: bytes) -> None:
        self.sock.sendto(datagram, self.gateway)

    def recv(self, timeout: float = TIMEOUT) -> bytes:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except socket.timeout:
            raise AssertionError(f"no datagram within {timeout}s") from None
        return data

    def ask(self, datagram: bytes, timeout: float = TIMEOUT) -> bytes:
        self.send(datagram)
        return self.recv(timeout)

    def expect(self, wanted: bytes, timeout: float = TIMEOUT) -> list[bytes]:
        """Receive until ``wanted``; return what came before it."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            got = self.recv(max(deadline - time.monotonic(), 0.01))
            if got == wanted:
                return before
            before.append(got)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sn() -> Iterator[Callable[..., SNClient]]:
    """``sn(port, host="127.0.0.1")``: a raw MQTT-SN client on its own UDP socket."""
    yield from closing(SNClient)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(master fd, slave path) of a raw pseudo-terminal; the test plays the far end."""
    master, slave = os.openpty()
    tty.setraw(slave)  # raw before the gateway opens it: no echo, no line discipline
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        for fd in (slave, master):
            try:
                os.close(fd)
            except OSError:
                pass


def short_id(name: str) -> int:
    return struct.unpack("!H", name.encode())[0]


CLONE_NEWNET = 0x40000000


def setns(fd: int) -> None:
    """Move the calling thread (or a forked child) into the network namespace ``fd``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


@pytest.fixture
def netns() -> Iterator[tuple[int, int]]:
    """(fd of a private network namespace with multicast on lo, fd of ours). Needs root."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a private network namespace")
    name = f"mqttsn-test-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "set", "lo", "multicast", "on"],
                    ["route", "add", "224.0.0.0/4", "dev", "lo"]):
            subprocess.run(["ip", "netns", "exec", name, "ip", *cmd], check=True)
        ns = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        ours = os.open(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        try:
            yield ns, ours
        finally:
            os.close(ns)
            os.close(ours)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
