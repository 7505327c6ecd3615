"""gateway.outbox: writes made during a read leave together when it ends."""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from gateway import outbox
from gateway.outbox import BufferedLink


class Recording(StringTransport):
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        super().__init__()

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class Framed(Recording):
    one_message_per_write = True


def test_writes_during_a_read_leave_as_one_buffer_per_connection_when_it_ends() -> None:
    a, b = Recording(), Recording()
    la, lb = BufferedLink(a), BufferedLink(b)
    outbox.begin()
    la.write(b"1")
    lb.write(b"x")
    la.write(b"2")
    outbox.begin()  # a read handled inside another (nested delivery)
    la.write(b"3")
    outbox.end()
    assert a.writes == [] and b.writes == []
    outbox.end()
    assert a.writes == [b"123"] and b.writes == [b"x"]


def test_a_single_write_is_passed_on_as_the_same_object() -> None:
    t = Recording()
    link = BufferedLink(t)
    data = b"payload"
    outbox.begin()
    link.write(data)
    outbox.end()
    assert t.writes[0] is data


def test_writes_outside_a_read_go_out_at_once() -> None:
    t = Recording()
    link = BufferedLink(t)
    link.write(b"now")
    assert t.writes == [b"now"]
    assert link.replied() and not link.replied()


def test_closing_sends_what_waits_first() -> None:
    t = Recording()
    link = BufferedLink(t)
    outbox.begin()
    link.write(b"bye")
    link.loseConnection()
    assert t.writes == [b"bye"] and t.disconnecting
    outbox.end()
    assert t.writes == [b"bye"]


def test_a_lost_connection_drops_what_waits() -> None:
    t = Recording()
    link = BufferedLink(t)
    outbox.begin()
    link.write(b"never")
    link.discard()
    outbox.end()
    assert t.writes == []


def test_a_framing_transport_gets_each_write_as_it_is() -> None:
    t = Framed()
    link = BufferedLink(t)
    outbox.begin()
    link.write(b"a")
    link.write(b"b")
    assert t.writes == [b"a", b"b"]
    outbox.end()
    assert t.writes == [b"a", b"b"]


def test_everything_else_is_the_transport_s() -> None:
    t = Recording()
    assert BufferedLink(t).getPeer() == t.getPeer()
    assert BufferedLink(t).producer is t.producer
