"""Clients that die in the middle of a QoS 2 exchange, against a running gateway.

A killed client sends no DISCONNECT and its kernel resets the connection
(``SO_LINGER`` 0), whatever was in flight. With a persistent session, the
exchange resumes where the protocol says (MQTT 3.1.1, 4.4): a PUBLISH not yet
acknowledged with PUBREC comes again with DUP set, one acknowledged with PUBREC
continues with PUBREL, and no message reaches an application twice. Absence is
shown with a marker published afterwards on the same path, never by waiting.
"""

from __future__ import annotations

import socket
import struct

import pytest

from tests import wire
from tests.e2e.clients import RawClient, unique


@pytest.fixture(scope="module")
def shared_gateway_config() -> list[str]:
    return []


@pytest.fixture
def port(shared_gateway) -> int:
    return shared_gateway.port


def kill(client: RawClient) -> None:
    """As if the client's process died: RST, no DISCONNECT, unread data dropped."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def resume(raw, port: int, client_id: str, present: bool) -> RawClient:
    client = raw(port)
    assert client.connect(client_id, clean=False) == (present, 0)
    return client


def subscribed(raw, port: int, client_id: str, topic_filter: str) -> RawClient:
    client = resume(raw, port, client_id, False)
    client.send(wire.subscribe(1, [(topic_filter, 2)]))
    client.expect(wire.suback(1, [2]))
    return client


def read_publish(client: RawClient) -> tuple[int, str, int, bytes]:
    """The next packet, which must be a QoS 2 PUBLISH: (first byte, topic, id, payload)."""
    first, body = client.read_packet()
    assert first & 0xF6 == 0x34, f"expected a QoS 2 PUBLISH, got {first:#04x} {body!r}"
    tlen = int.from_bytes(body[:2], "big")
    return first, body[2 : 2 + tlen].decode(), int.from_bytes(body[2 + tlen : 4 + tlen], "big"), body[4 + tlen :]


def receive_qos2(client: RawClient) -> tuple[str, bytes]:
    """The whole receiving side of one QoS 2 exchange."""
    _, topic, mid, payload = read_publish(client)
    client.send(wire.pubrec(mid))
    client.expect(wire.pubrel(mid))
    client.send(wire.pubcomp(mid))
    return topic, payload


def publisher(paho, port: int):
    client = paho(port, unique("fault-pub"))
    client.connect()
    return client


def nothing_pending(raw, port: int, client_id: str) -> None:
    """A further connection finds the session, and nothing left to deliver."""
    last = resume(raw, port, client_id, True)
    last.send(wire.pingreq())
    last.expect(wire.pingresp())
    last.send(wire.disconnect())
    last.expect_closed()


def test_subscriber_killed_before_pubrec_gets_the_message_once_more(raw, paho, port):
    client_id, topic = unique("fault-sub"), unique("fault/before-pubrec")
    sub = subscribed(raw, port, client_id, topic)
    pub = publisher(paho, port)
    pub.publish(topic, b"one", 2)
    first, _, mid, payload = read_publish(sub)
    assert (first, payload) == (0x34, b"one")
    kill(sub)

    again = resume(raw, port, client_id, True)
    again.expect(wire.publish(topic, b"one", qos=2, mid=mid, dup=True))
    again.send(wire.pubrec(mid))
    again.expect(wire.pubrel(mid))
    again.send(wire.pubcomp(mid))
    pub.publish(topic, b"marker", 2)
    assert receive_qos2(again) == (topic, b"marker")
    again.send(wire.disconnect())
    again.expect_closed()
    nothing_pending(raw, port, client_id)


def test_subscriber_killed_after_pubrec_gets_pubrel_not_the_message(raw, paho, port):
    client_id, topic = unique("fault-sub"), unique("fault/after-pubrec")
    sub = subscribed(raw, port, client_id, topic)
    pub = publisher(paho, port)
    pub.publish(topic, b"one", 2)
    _, _, mid, payload = read_publish(sub)
    assert payload == b"one"
    sub.send(wire.pubrec(mid))
    # The PUBREL shows the gateway has the PUBREC: a reset would drop it unread.
    sub.expect(wire.pubrel(mid))
    kill(sub)

    again = resume(raw, port, client_id, True)
    again.expect(wire.pubrel(mid))
    again.send(wire.pubcomp(mid))
    pub.publish(topic, b"marker", 2)
    assert receive_qos2(again) == (topic, b"marker")  # and not "one" again
    again.send(wire.disconnect())
    again.expect_closed()
    nothing_pending(raw, port, client_id)


def test_subscriber_killed_with_several_in_flight_receives_each_once(raw, paho, port):
    client_id, root = unique("fault-sub"), unique("fault/several")
    sub = subscribed(raw, port, client_id, f"{root}/#")
    pub = publisher(paho, port)
    for n in range(4):
        pub.publish(f"{root}/{n}", b"%d" % n, 2)
    flights = [read_publish(sub) for _ in range(4)]
    # The application took messages 0 and 2 (PUBREC sent, PUBREL back); 1 and 3 died with it.
    taken = {mid for _, _, mid, payload in flights if payload in (b"0", b"2")}
    for mid in sorted(taken):
        sub.send(wire.pubrec(mid))
        sub.expect(wire.pubrel(mid))
    kill(sub)

    again = resume(raw, port, client_id, True)
    resent = [again.read_packet() for _ in range(4)]
    released = {int.from_bytes(body, "big") for first, body in resent if first == 0x62}
    assert released == taken
    redelivered = {}
    for first, body in resent:
        if first != 0x62:
            assert first == 0x3C, f"expected PUBREL or a PUBLISH with DUP, got {first:#04x} {body!r}"
            tlen = int.from_bytes(body[:2], "big")
            redelivered[int.from_bytes(body[2 + tlen : 4 + tlen], "big")] = body[4 + tlen :]
    assert sorted(redelivered.values()) == [b"1", b"3"]
    for mid in released:
        again.send(wire.pubcomp(mid))
    for mid in redelivered:
        again.send(wire.pubrec(mid))
    assert {again.read_packet() for _ in redelivered} == {(0x62, mid.to_bytes(2, "big")) for mid in redelivered}
    for mid in redelivered:
        again.send(wire.pubcomp(mid))
    pub.publish(f"{root}/marker", b"marker", 2)
    assert receive_qos2(again) == (f"{root}/marker", b"marker")
    again.send(wire.disconnect())
    again.expect_closed()
    nothing_pending(raw, port, client_id)


def test_publisher_killed_between_pubrec_and_pubrel_delivers_once(raw, paho, port):
    """On reconnecting, a publisher that had the PUBREC sends PUBREL only (4.4)."""
    root = unique("fault/pubrel")
    sub = paho(port, unique("fault-watch"))
    sub.connect()
    sub.subscribe(f"{root}/#", 2)
    client_id = unique("fault-pub")
    pub = resume(raw, port, client_id, False)
    pub.send(wire.publish(f"{root}/once", b"exactly once", qos=2, mid=5))
    pub.expect(wire.pubrec(5))
    kill(pub)

    again = resume(raw, port, client_id, True)
    again.send(wire.pubrel(5))
    again.expect(wire.pubcomp(5))
    again.send(wire.pubrel(5))  # a second PUBREL for the same id: completed, nothing new
    again.expect(wire.pubcomp(5))
    again.send(wire.publish(f"{root}/marker", b"", qos=2, mid=6))
    again.expect(wire.pubrec(6))
    again.send(wire.pubrel(6))
    again.expect(wire.pubcomp(6))
    assert [m.payload for m in sub.wait_for(f"{root}/marker")] == [b"exactly once", b""]
    again.send(wire.disconnect())
