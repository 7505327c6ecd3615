"""The gateway's reactor: asyncio calls its dispatch directly (no legacy log
context per event), and readers and writers still come and go as Twisted's do.
A reactor of its own on a fresh loop (asyncio's and uvloop's, the default), with
a real socket pair."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any

import pytest
import uvloop
from twisted.internet import abstract, error, main, protocol, tcp

from gateway.reactor import EVENT_LOOP_ENV, GatewayReactor, new_event_loop


class Peer(abstract.FileDescriptor):
    """One end of a socket pair, as a Twisted connection reads and writes it."""

    def __init__(self, reactor: Any, sock: socket.socket) -> None:
        super().__init__(reactor)
        self.sock: socket.socket | None = sock
        self.got: list[bytes] = []
        self.writable = 0
        self.lost: Any = None

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def doRead(self) -> Any:
        data = self.sock.recv(100)  # type: ignore[union-attr]
        if not data:
            return main.CONNECTION_DONE
        self.got.append(data)
        return None

    def doWrite(self) -> Any:
        self.writable += 1
        self.reactor.removeWriter(self)
        return None

    def connectionLost(self, reason: Any) -> None:
        self.lost = reason


@pytest.fixture(params=["asyncio", "uvloop"])
def setup(request: Any) -> Any:
    loop = asyncio.new_event_loop() if request.param == "asyncio" else uvloop.new_event_loop()
    reactor = GatewayReactor(loop)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield loop, reactor, Peer(reactor, ours), theirs
    reactor.removeAll()
    for sock in (ours, theirs):
        sock.close()
    loop.close()


def spin(loop: asyncio.AbstractEventLoop) -> None:
    """Run the loop briefly, in a thread of its own (the test's thread already runs
    the suite's reactor)."""
    thread = threading.Thread(target=loop.run_until_complete, args=(asyncio.sleep(0.05),))
    thread.start()
    thread.join()


def test_events_reach_the_connection_through_the_reactors_own_dispatch(setup):
    loop, reactor, peer, theirs = setup
    reactor.addReader(peer)
    reactor.addReader(peer)  # a second registration changes nothing
    assert reactor.getReaders().count(peer) == 1
    if isinstance(loop, asyncio.SelectorEventLoop):
        handle = loop._selector.get_key(peer.fileno()).data[0]  # type: ignore[attr-defined]
        assert handle._callback == reactor._readOrWrite and handle._args == (peer, True)
    theirs.sendall(b"hello")
    spin(loop)
    assert peer.got == [b"hello"]
    theirs.shutdown(socket.SHUT_WR)
    spin(loop)
    assert peer.lost is not None and peer.lost.check(main.CONNECTION_DONE.__class__)
    assert peer not in reactor.getReaders()


def test_writers_are_called_and_removed(setup):
    loop, reactor, peer, _ = setup
    reactor.addWriter(peer)
    spin(loop)
    assert peer.writable == 1
    assert peer not in reactor.getWriters()


def test_a_connection_whose_socket_is_gone_is_disconnected(setup):
    loop, reactor, peer, theirs = setup
    reactor.addReader(peer)
    fd, ours = peer.fileno(), peer.sock
    theirs.sendall(b"x")
    peer.sock = None  # fileno() now answers -1, as a closed Twisted connection does
    spin(loop)
    assert peer.lost is not None
    assert peer not in reactor.getReaders()
    if isinstance(loop, asyncio.SelectorEventLoop):
        with pytest.raises(KeyError):
            loop._selector.get_key(fd)  # type: ignore[attr-defined]
    peer.sock = ours  # were the loop still watching it, more data would be read now
    theirs.sendall(b"y")
    spin(loop)
    assert peer.got == []


def test_the_loop_is_uvloops_unless_the_environment_says_asyncio(monkeypatch):
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    loop = new_event_loop()
    assert isinstance(loop, uvloop.Loop)
    loop.close()
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    loop = new_event_loop()
    assert isinstance(loop, asyncio.SelectorEventLoop)
    loop.close()


class Recorder(protocol.Protocol):
    """What a TCP connection's protocol was told."""

    def __init__(self, fail: bool = False) -> None:
        self.got: list[bytes] = []
        self.lost: Any = None
        self.fail = fail

    def dataReceived(self, data: bytes) -> None:
        self.got.append(data)
        if self.fail:
            raise ValueError("the protocol failed")

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason


@pytest.fixture
def tcp_pair(setup: Any) -> Any:
    """A Twisted TCP connection (ours) over a real loopback TCP socket (theirs)."""
    loop, reactor, _, _ = setup
    with socket.create_server(("127.0.0.1", 0)) as listening:
        theirs = socket.create_connection(listening.getsockname())
        ours, _ = listening.accept()

    def make(fail: bool = False, register: bool = True) -> tuple[tcp.Connection, Recorder]:
        proto = Recorder(fail)
        conn = tcp.Connection(ours, proto, reactor)
        proto.makeConnection(conn)
        if register:
            conn.startReading()
        return conn, proto

    yield loop, reactor, make, theirs
    theirs.close()
    ours.close()


def test_a_tcp_connection_is_read_in_one_call(tcp_pair):
    loop, reactor, make, theirs = tcp_pair
    conn, proto = make()
    if isinstance(loop, asyncio.SelectorEventLoop):
        handle = loop._selector.get_key(conn.fileno()).data[0]  # type: ignore[attr-defined]
        assert handle._callback == reactor._read_tcp and handle._args == (conn,)
    theirs.sendall(b"hello")
    spin(loop)
    assert proto.got == [b"hello"]
    theirs.shutdown(socket.SHUT_WR)
    spin(loop)
    assert proto.lost is not None and proto.lost.check(error.ConnectionDone)
    assert conn not in reactor.getReaders()


def test_a_reset_tcp_connection_is_lost(tcp_pair):
    loop, reactor, make, theirs = tcp_pair
    conn, proto = make()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()  # RST
    spin(loop)
    assert proto.lost is not None and proto.lost.check(error.ConnectionLost)
    assert conn not in reactor.getReaders()


def test_a_protocol_that_raises_loses_its_connection(tcp_pair):
    loop, reactor, make, theirs = tcp_pair
    conn, proto = make(fail=True)
    theirs.sendall(b"boom")
    spin(loop)
    assert proto.got == [b"boom"]
    assert proto.lost is not None and proto.lost.check(ValueError)
    assert conn not in reactor.getReaders()


def test_a_tcp_connection_without_its_socket_is_disconnected(tcp_pair):
    loop, reactor, make, theirs = tcp_pair
    conn, proto = make()
    sock = conn.socket
    del conn.socket  # as after Twisted's connectionLost
    reactor._read_tcp(conn)
    assert conn not in reactor.getReaders()
    sock.close()


def test_a_connection_with_a_doRead_of_its_own_keeps_twisteds_dispatch(tcp_pair):
    # Twisted's connecting client sets doRead = doConnect on the instance meanwhile.
    loop, reactor, make, theirs = tcp_pair
    conn, proto = make(register=False)
    calls: list[int] = []
    conn.doRead = lambda: calls.append(1)  # type: ignore[method-assign]
    conn.startReading()
    theirs.sendall(b"x")
    spin(loop)
    assert calls and proto.got == []
    reactor.removeReader(conn)
