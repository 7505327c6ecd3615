"""The UDP port handles a readable event's datagrams as one read (``gateway.outbox``):
what they deliver to a connection leaves as one write when the last is handled."""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.protocol import DatagramProtocol

from gateway.mqttsn.udp import MAX_DATAGRAM, BatchingPort
from gateway.outbox import BufferedLink
from tests.test_outbox import Recording


class Forwarding(DatagramProtocol):
    """Writes every datagram to one connection, as a hub delivery to an MQTT client does."""

    def __init__(self, link: BufferedLink) -> None:
        self.link = link
        self.count = 0

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.count += 1
        self.link.write(data)


@pytest_twisted.inlineCallbacks
def test_datagrams_read_together_leave_as_one_write():
    connection = Recording()
    protocol = Forwarding(BufferedLink(connection))
    port = BatchingPort(0, protocol, "127.0.0.1", MAX_DATAGRAM, reactor)
    port.startListening()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for part in (b"a", b"b", b"c"):  # queued in the kernel before the reactor reads
            sender.sendto(part, ("127.0.0.1", port.getHost().port))
        for _ in range(500):
            if protocol.count == 3:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        assert protocol.count == 3
        assert connection.writes == [b"abc"]
    finally:
        sender.close()
        yield port.stopListening()
