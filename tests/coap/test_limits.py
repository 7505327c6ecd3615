"""Bounds on what CoAP clients can make the gateway do: the per-source request rate,
the deduplication memory, body sizes and blockwise state. Raw datagrams from
``rawcoap`` so message ids are under the test's control."""

from __future__ import annotations

import random
import socket

from aiocoap.numbers.codes import (
    CHANGED,
    REQUEST_ENTITY_TOO_LARGE,
    SERVICE_UNAVAILABLE,
    PUT,
)

from tests.coap import rawcoap
from tests.coap.helpers import HOST, TIMEOUT, coap_lines, unique
from tests.conftest import config_text, free_udp_port


class RawClient:
    """One UDP socket speaking hand-made CoAP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((HOST, port))
        self.sock.settimeout(TIMEOUT)

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def receive(self) -> rawcoap.Parsed:
        return rawcoap.parse(self.sock.recv(4096))

    def exchange(self, data: bytes) -> rawcoap.Parsed:
        self.send(data)
        return self.receive()

    def close(self) -> None:
        self.sock.close()


def put(mid: int, topic: str, payload: bytes = b"x", query: tuple[str, ...] = ()) -> bytes:
    return rawcoap.request(rawcoap.CON, rawcoap.PUT, mid, mid.to_bytes(2, "big"),
                           f"/ps/{topic}", list(query), payload)


def test_requests_above_the_rate_get_5_03_with_max_age(gateway):
    port = free_udp_port()
    gateway(*coap_lines(port, "coap_max_requests_per_second 5"))
    client = RawClient(port)
    for mid in range(1, 21):
        client.send(put(mid, "rate/t"))
    answers = [client.receive() for _ in range(20)]
    ok = [a for a in answers if a.code == CHANGED]
    busy = [a for a in answers if a.code == SERVICE_UNAVAILABLE]
    assert len(ok) + len(busy) == 20
    assert 1 <= len(ok) <= 10  # 5 per one-second window; the burst may straddle two
    assert busy and all(a.option(rawcoap.MAX_AGE) == b"\x01" for a in busy)
    assert all(a.mtype == rawcoap.ACK for a in answers)  # piggybacked on the request's ACK
    client.close()


def test_devices_behind_one_address_each_have_their_own_rate(gateway):
    """The limit is per endpoint: eight devices on one address (eight source ports),
    each under it, are all served; the per-address ceiling is what they share."""
    port = free_udp_port()
    gateway(*coap_lines(port, "coap_max_requests_per_second 5"))
    devices = [RawClient(port) for _ in range(8)]
    for n, device in enumerate(devices):
        for mid in range(1, 5):
            device.send(put(n * 10 + mid, "fleet/t"))
    codes = [device.receive().code for device in devices for _ in range(4)]
    assert codes == [CHANGED] * 32
    for device in devices:
        device.close()


def test_a_client_spraying_source_ports_meets_the_address_ceiling(gateway):
    port = free_udp_port()
    gateway(*coap_lines(port, "coap_max_requests_per_second 100", "coap_max_requests_per_address 10"))
    sockets = [RawClient(port) for _ in range(8)]
    for n, sock in enumerate(sockets):
        for mid in range(1, 6):
            sock.send(put(n * 10 + mid, "spray/t"))
    codes = [sock.receive().code for sock in sockets for _ in range(5)]
    assert codes.count(SERVICE_UNAVAILABLE) >= 20  # 10 per window; the burst may straddle two
    for sock in sockets:
        sock.close()


def test_deduplication_is_bounded(gateway, mqtt_client):
    port = free_udp_port()
    gw = gateway(*coap_lines(port, "coap_deduplication_entries 50"))
    topic = unique("dedup/")
    sub = mqtt_client(gw.port)
    sub.subscribe(topic)
    client = RawClient(port)
    first = client.exchange(put(1, topic, b"once"))
    assert first.code == CHANGED
    again = client.exchange(put(1, topic, b"once"))  # a retransmission: same message id
    assert (again.code, again.mid, again.token) == (CHANGED, 1, first.token)
    assert sub.get().payload == b"once"
    sub.assert_quiet()  # published once
    for mid in range(2, 62):  # 60 newer message ids push id 1 out of the 50 remembered
        assert client.exchange(put(mid, topic + "/other")).code == CHANGED
    assert client.exchange(put(1, topic, b"once")).code == CHANGED
    assert sub.get().payload == b"once"  # forgotten, so taken as a new request
    client.close()


def test_body_above_message_size_limit_is_4_13(gateway, aio):
    port = free_udp_port()
    gateway(*coap_lines(port, "message_size_limit 100"))
    client = RawClient(port)
    small = client.exchange(put(1, "size/t", b"x" * 100))
    large = client.exchange(put(2, "size/t", b"x" * 101))
    assert (small.code, large.code) == (CHANGED, REQUEST_ENTITY_TOO_LARGE)
    assert large.option(60) == rawcoap.uint(100)  # Size1: the largest body accepted
    response = aio.request(PUT, f"coap://{HOST}:{port}/ps/size/t", b"y" * 10_000)
    assert response.code == REQUEST_ENTITY_TOO_LARGE  # refused at the first block
    client.close()


def test_blockwise_bodies_are_capped_without_a_size_limit(gateway):
    port = free_udp_port()
    gateway(*coap_lines(port))  # message_size_limit 0: no limit, but blockwise stops at 1 MiB
    client = RawClient(port)
    block1 = 27
    # Block1 number 1 << 16 of 1024 bytes starts at 64 MiB: past the 1 MiB default cap.
    num, more, szx = 1 << 16, 1, 6
    value = rawcoap.uint(num << 4 | more << 3 | szx)
    data = rawcoap.request(rawcoap.CON, rawcoap.PUT, 7, b"b1", "/ps/size/big", [],
                           b"z" * 1024, extra=[(block1, value)])
    assert client.exchange(data).code == REQUEST_ENTITY_TOO_LARGE
    client.close()


def test_garbage_datagrams_are_ignored(gateway):
    port = free_udp_port()
    gw = gateway(*coap_lines(port))
    client = RawClient(port)
    rnd = random.Random(5)
    for _ in range(300):  # version 1 headers followed by random tokens, options, payloads
        client.send(bytes([0x40 | rnd.randrange(64)]) + rnd.randbytes(rnd.randrange(0, 40)))
    client.send(b"")
    client.send(b"\x00")
    client.sock.settimeout(0.2)
    try:
        while True:
            client.sock.recv(4096)  # whatever some of them earned
    except socket.timeout:
        pass
    client.sock.settimeout(TIMEOUT)
    assert client.exchange(put(1, "garbage/after", b"ok")).code == CHANGED
    assert "Traceback" not in gw.stderr
    client.close()


def test_sighup_applies_new_coap_settings(gateway):
    port = free_udp_port()
    gw = gateway(*coap_lines(port, "coap_max_requests_per_second 2"))
    client = RawClient(port)

    def burst(first_mid: int) -> list[int]:
        for mid in range(first_mid, first_mid + 10):
            client.send(put(mid, "reload/t"))
        return [client.receive().code for _ in range(10)]

    assert SERVICE_UNAVAILABLE in burst(1)
    gw.config.write_text(config_text(gw.port, coap_lines(port, "coap_max_requests_per_second 0")))
    gw.reload("configuration reloaded")
    assert burst(100) == [CHANGED] * 10
    client.close()
