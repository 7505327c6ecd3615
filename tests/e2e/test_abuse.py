"""Floods aimed at the log, against a running gateway, with raw sockets.

A stderr pipe that nobody reads must not stop the gateway from serving or from
stopping on SIGTERM; garbage connections must cost a bounded number of log lines.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from tests import wire
from tests.conftest import HOST, REPO, STOP_TIMEOUT, cli_command, config_text, free_port, gateway_env
from tests.e2e.clients import TIMEOUT, RawClient, unique

NOT_CONNECT = [0x20, 0x30, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0]


def wait_accepting(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, f"gateway exited with status {proc.returncode}"
        try:
            socket.create_connection((HOST, port), timeout=1.0).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"port {port} not accepting"
            time.sleep(0.05)


def test_unread_stderr_pipe_does_not_stop_the_gateway(tmp_path):
    """Debug logging of a thousand SUBSCRIBEs fills the pipe many times over."""
    port = free_port()
    conf = tmp_path / "mqttgateway.conf"
    conf.write_text(config_text(port, ["log_type all"]))
    proc = subprocess.Popen(cli_command("-c", str(conf)), cwd=REPO, env=gateway_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_accepting(proc, port)
        with RawClient(port) as noisy:
            assert noisy.connect("n" * 300) == (False, 0)
            filters = [("f" * 300 + f"/{i}", 0) for i in range(3000)]  # ~1.5 MB of log
            noisy.send(b"".join(wire.subscribe(i + 1, [f]) for i, f in enumerate(filters)))
            for i in range(len(filters)):
                noisy.expect(wire.suback(i + 1, [0]))
        with RawClient(port) as client:
            assert client.connect(unique("still-served")) == (False, 0)
            client.send(wire.pingreq())
            client.expect(wire.pingresp())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0
        head = proc.stderr.read(1 << 16).decode(errors="replace")
        assert "listening for mqtt" in head
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_garbage_connections_cost_a_bounded_number_of_log_lines(gateway):
    gw = gateway()
    mark = len(gw.stderr)
    count = 300
    for i in range(count):
        with RawClient(gw.port) as client:
            client.send(bytes([NOT_CONNECT[i % len(NOT_CONNECT)]]) + os.urandom(15))
            assert client.expect_closed() == b""
    gw.wait_for_log("more connections closed before CONNECT", mark, timeout=30.0)
    log = gw.stderr[mark:]
    single = log.count("closing connection from ")
    summed = sum(int(n) for n in re.findall(r"\] (\d+) more connections closed before CONNECT", log))
    assert single + summed == count
    assert single <= 10 * (1 + log.count("more connections closed before CONNECT"))
    with RawClient(gw.port) as client:
        assert client.connect(unique("after-garbage")) == (False, 0)


@pytest.mark.parametrize("announced", [b"\x30\xff\xff\xff\x7f", b"\x10\x80\xb8\xb8\x72"],
                         ids=["publish-256-MB", "connect-240-MB"])
def test_announced_giants_are_closed_while_the_body_streams(gateway, announced):
    """The gateway closes at the fixed header: the stream fails long before 20 MB."""
    gw = gateway()
    sock = socket.create_connection((HOST, gw.port), timeout=TIMEOUT)
    sent = 0
    with sock:
        sock.sendall(announced)
        with pytest.raises(OSError):
            while sent < 20 << 20:  # the socket buffers hold a few MB at most
                sent += sock.send(bytes(1 << 16))
    assert sent < 20 << 20
