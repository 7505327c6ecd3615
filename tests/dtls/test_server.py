"""The sans-IO DTLS server against a pyOpenSSL client, datagrams passed by hand.

No sockets and no reactor: ``task.Clock`` drives the server's timers, so handshake
deadlines and idle expiry are tested without waiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from twisted.internet import task

from gateway.config import Listener
from gateway.dtls import records
from gateway.dtls.server import HANDSHAKE_TIMEOUT, Closed, DTLSServer, Failed, Limits, Opened
from gateway.psk import PskFile, psk_identity
from gateway.tls import build_context, certificate_username
from tests.dtls.client import ClientEnd, client_context
from tests.security.pki import make_pki

KEYS = PskFile({"dev1": b"sixteen byte key", "dev2": bytes(range(32))})
ADDR = ("192.0.2.7", 40001)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def psk_listener(**keys: Any) -> Listener:
    return Listener(5684, "127.0.0.1", "coap", psk_hint="gateway", **keys)


def make_server(listener: Listener | None = None, clock: task.Clock | None = None,
                **limits: Any) -> DTLSServer:
    ctx = build_context(listener or psk_listener(), KEYS)
    return DTLSServer(lambda: ctx, clock or task.Clock(), Limits(**limits))


def exchange(server: DTLSServer, client: ClientEnd, first: list[bytes],
             addr: Any = ADDR) -> list[bytes]:
    """Pass datagrams both ways until neither side has more; the plaintext the server got."""
    plain: list[bytes] = []
    to_server = first
    for _ in range(20):
        if not to_server:
            break
        for d in to_server:
            plain.extend(server.receive(d, addr))
        to_client = [d for d, a in server.datagrams_to_send() if a == addr]
        to_server = []
        for d in to_client:
            to_server.extend(client.feed(d))
    return plain


def events(server: DTLSServer) -> list[Any]:
    out = []
    while (e := server.next_event()) is not None:
        out.append(e)
    return out


def connect(server: DTLSServer, addr: Any = ADDR, psk: tuple[str, bytes] = ("dev1", b"sixteen byte key"),
            **context: Any) -> ClientEnd:
    client = ClientEnd(client_context(psk=psk, **context) if psk else client_context(**context))
    exchange(server, client, client.start(), addr)
    return client


def test_psk_handshake_goes_through_a_stateless_cookie() -> None:
    server = make_server()
    client = ClientEnd(client_context(psk=("dev1", b"sixteen byte key")))
    hello = client.start()
    assert records.is_client_hello(hello[0])
    server.receive(hello[0], ADDR)
    (hvr, _), = server.datagrams_to_send()
    assert hvr[0] == 22 and hvr[13] == 3  # a HelloVerifyRequest
    assert server.sessions == {} and server.stats.cookies == 1
    exchange(server, client, client.feed(hvr))
    assert client.done and server.session(ADDR) is not None
    (opened,) = events(server)
    assert type(opened) is Opened and opened.addr == ADDR
    assert psk_identity(opened.session.conn) == "dev1"
    assert opened.session.cipher is not None and "PSK" in opened.session.cipher
    assert server.stats.started == server.stats.completed == 1 and server.stats.sessions == 1


def test_application_data_both_ways() -> None:
    server = make_server()
    client = connect(server)
    assert exchange(server, client, client.send(b"\x05\x0c\x00hello")) == [b"\x05\x0c\x00hello"]
    assert server.send(ADDR, b"reply")
    for d, _ in server.datagrams_to_send():
        client.feed(d)
    assert client.received == [b"reply"]
    assert not server.send(("192.0.2.8", 1), b"no session")


def test_ccm_suites_are_offered_for_constrained_clients() -> None:
    """CCM, which OpenSSL's default list lacks, without a ``ciphers`` line; CCM_8 (CoAP's
    mandatory PSK suite, RFC 7252 9.1.3.1, with a 64-bit tag) once the listener's
    ``ciphers`` lowers OpenSSL's security level for it."""
    client = connect(make_server(), ciphers="PSK-AES128-CCM")
    assert client.done and client.conn.get_cipher_name() == "PSK-AES128-CCM"
    with pytest.raises(SSL.Error):
        connect(make_server(), ciphers="PSK-AES128-CCM8:@SECLEVEL=0")
    server = make_server(psk_listener(ciphers="PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:@SECLEVEL=0"))
    client = connect(server, ciphers="PSK-AES128-CCM8:@SECLEVEL=0")
    assert client.done and client.conn.get_cipher_name() == "PSK-AES128-CCM8"


def test_an_unknown_identity_fails_the_handshake() -> None:
    server = make_server()
    client = ClientEnd(client_context(psk=("nobody", b"sixteen byte key")))
    with pytest.raises(SSL.Error):
        exchange(server, client, client.start())
    assert server.sessions == {} and server.stats.failed == 1
    (failed,) = events(server)
    assert type(failed) is Failed


def test_a_wrong_key_never_completes_and_the_handshake_times_out() -> None:
    """A Finished under the wrong key does not decrypt, and DTLS drops records that do
    not decrypt (RFC 6347 4.1.2.7): no alert, the handshake runs out of time."""
    clock = task.Clock()
    server = make_server(clock=clock)
    client = ClientEnd(client_context(psk=("dev1", b"wrong key here!!")))
    exchange(server, client, client.start())
    assert not client.done and server.session(ADDR) is None and len(server.handshakes) == 1
    clock.advance(HANDSHAKE_TIMEOUT)
    server.handle_timer()
    assert server.sessions == {} and server.stats.failed == 1
    assert events(server) == [Failed(ADDR, "handshake timed out")]


def test_client_certificates_verified_and_named(pki: dict[str, str]) -> None:
    listener = Listener(5684, "127.0.0.1", "mqttsn", certfile=pki["server"], keyfile=pki["server_key"],
                        cafile=pki["ca"], require_certificate=True, use_identity_as_username=True)
    server = make_server(listener)
    client = connect(server, psk=None, ca=pki["ca"], cert=pki["client"], key=pki["client_key"])  # type: ignore[arg-type]
    (opened,) = events(server)
    assert certificate_username(opened.session, listener, None) == "device-42"
    foreign = ClientEnd(client_context(ca=pki["ca"], cert=pki["foreign"], key=pki["foreign_key"]))
    with pytest.raises(SSL.Error):
        exchange(server, foreign, foreign.start(), ("192.0.2.9", 1))
    anonymous = ClientEnd(client_context(ca=pki["ca"]))
    with pytest.raises(SSL.Error):
        exchange(server, anonymous, anonymous.start(), ("192.0.2.9", 2))
    assert server.stats.failed == 2 and len(server.sessions) == 1 and client.done


def test_psk_and_certificates_on_one_listener(pki: dict[str, str]) -> None:
    listener = psk_listener(certfile=pki["server"], keyfile=pki["server_key"],
                            use_identity_as_username=True)
    server = make_server(listener)
    connect(server, ADDR)
    connect(server, ("192.0.2.9", 5), psk=None, ca=pki["ca"])  # type: ignore[arg-type]
    opened = [e.session for e in events(server)]
    assert [certificate_username(s, listener, None) for s in opened] == ["dev1", None]


@pytest.mark.parametrize("garbage", [
    b"", b"\x00", b"\x16\xfe\xfd", b"\x17\xfe\xfd" + bytes(10) + b"\x00\x05abcde",
    b"\x16\xfe\xfd\x00\x00" + bytes(6) + b"\xff\xff\x01", bytes(300), b"GET / HTTP/1.1\r\n\r\n",
])
def test_garbage_from_an_unknown_address_keeps_no_state(garbage: bytes) -> None:
    server = make_server()
    assert server.receive(garbage, ADDR) == []
    assert server.sessions == {} and server.datagrams_to_send() == []
    assert server.stats.dropped == 1 and events(server) == []


def test_truncated_client_hellos_keep_no_state() -> None:
    server = make_server()
    hello = ClientEnd(client_context(psk=("dev1", b"x"))).start()[0]
    for cut in (13, 25, 40, len(hello) // 2, len(hello) - 1):
        assert server.receive(hello[:cut], ADDR) == []
    assert server.sessions == {}
    assert server.stats.cookies == 0


@given(st.binary(max_size=120))
def test_reading_the_cookie_of_any_datagram_never_raises(data: bytes) -> None:
    hello = ClientEnd(client_context(psk=("dev1", b"x"))).start()[0]
    for datagram in (data, hello[:25] + data, hello[:59] + data):
        assert records.has_cookie(datagram) in (True, False)


def test_garbage_inside_a_session_is_dropped_and_the_session_lives() -> None:
    server = make_server()
    client = connect(server)
    events(server)
    record = client.send(b"real")[0]
    forged = record[:-1] + bytes([record[-1] ^ 1])
    for bad in (b"", forged, record[:20], b"\x17\xfe\xfd\x00\x01" + bytes(6) + b"\x40\x00", bytes(50),
                b"\x15\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x02\x02\x28"):
        assert server.receive(bad, ADDR) == []
    assert server.receive(record, ADDR) == [b"real"]
    assert server.session(ADDR) is not None and events(server) == []


def test_close_notify_is_answered_and_ends_the_session() -> None:
    server = make_server()
    client = connect(server)
    events(server)
    exchange(server, client, client.close())
    assert server.sessions == {} and server.stats.sessions == 0
    (closed,) = events(server)
    assert type(closed) is Closed and closed.kind == "peer"
    assert client.closed  # the server's close_notify reached it


def test_close_from_the_server_sends_close_notify() -> None:
    server = make_server()
    client = connect(server)
    server.close(ADDR)
    for d, _ in server.datagrams_to_send():
        client.feed(d)
    assert client.closed and server.sessions == {}


def test_client_hellos_are_rate_limited_per_source_host() -> None:
    server = make_server(hellos=(5, 1.0))
    for port in range(1, 11):
        server.receive(ClientEnd(client_context(psk=("dev1", b"x"))).start()[0], ("192.0.2.7", port))
    other = ClientEnd(client_context(psk=("dev1", b"x"))).start()[0]
    server.receive(other, ("198.51.100.1", 1))
    assert server.stats.cookies == 6 and server.stats.limited == 5


def test_a_flood_of_cookieless_hellos_does_not_stop_a_client_with_its_cookie() -> None:
    server = make_server(hellos=(5, 1.0))
    client = ClientEnd(client_context(psk=("dev1", b"sixteen byte key")))
    first = client.start()[0]
    assert not records.has_cookie(first)
    server.receive(first, ADDR)
    (hvr, _), = server.datagrams_to_send()
    for port in range(2, 20):  # the same host floods: its cookie-less budget is spent
        server.receive(ClientEnd(client_context(psk=("dev1", b"x"))).start()[0], ("192.0.2.7", port))
    server.datagrams_to_send()
    assert server.stats.limited == 14
    second = client.feed(hvr)
    assert records.has_cookie(second[0])
    exchange(server, client, second)
    assert server.session(ADDR) is not None and server.stats.completed == 1


def stall(server: DTLSServer, addr: Any) -> None:
    """A client that answers its cookie, then stops: a handshake in progress."""
    client = ClientEnd(client_context(psk=("dev1", b"sixteen byte key")))
    server.receive(client.start()[0], addr)
    (hvr, _), = server.datagrams_to_send()
    server.receive(client.feed(hvr)[0], addr)  # the verified ClientHello
    server.datagrams_to_send()


def test_handshakes_are_bounded_per_server_and_per_host() -> None:
    clock = task.Clock()
    server = make_server(clock=clock, max_handshakes=8)
    for port in range(1, 4):
        stall(server, ("192.0.2.7", port))
    # One host holds at most a quarter of the handshakes in progress.
    assert len(server.handshakes) == 2 and server.stats.refused == 1
    for host in range(10, 20):
        stall(server, (f"192.0.2.{host}", 1))
    assert len(server.handshakes) == 8 and server.stats.refused == 5
    clock.advance(HANDSHAKE_TIMEOUT)
    server.handle_timer()
    assert server.handshakes == {} and server.sessions == {} and server.stats.failed == 8
    assert {e.reason for e in events(server)} == {"handshake timed out"}
    connect(server, ("192.0.2.7", 9))
    assert server.session(("192.0.2.7", 9)) is not None


def test_sessions_are_bounded() -> None:
    server = make_server(max_sessions=3)
    for port in range(1, 5):
        connect(server, ("192.0.2.7", port))
    assert len(server.sessions) == 3 and server.stats.refused == 1
    assert server.stats.sessions == 3


def test_idle_sessions_expire_unless_kept() -> None:
    clock = task.Clock()
    kept = {("192.0.2.7", 2)}
    server = DTLSServer(lambda: build_context(psk_listener(), KEYS), clock,
                        Limits(idle_timeout=100), keep=kept.__contains__)
    quiet = connect(server, ("192.0.2.7", 1))
    connect(server, ("192.0.2.7", 2))
    events(server)
    clock.advance(99)
    server.handle_timer()
    assert len(server.sessions) == 2
    clock.advance(5)
    server.handle_timer()
    assert list(server.sessions) == [("192.0.2.7", 2)] and server.stats.expired == 1
    (closed,) = events(server)
    assert closed.kind == "idle" and closed.addr == ("192.0.2.7", 1)
    for d, a in server.datagrams_to_send():
        if a == ("192.0.2.7", 1):
            quiet.feed(d)
    assert quiet.closed
    assert server.get_timer() <= clock.seconds() + 100


def test_a_new_handshake_from_the_same_address_replaces_the_session_after_the_cookie() -> None:
    server = make_server()
    connect(server)
    events(server)
    restarted = ClientEnd(client_context(psk=("dev2", bytes(range(32)))))
    server.receive(restarted.start()[0], ADDR)
    assert server.session(ADDR) is not None  # only a HelloVerifyRequest so far
    (hvr, _), = server.datagrams_to_send()
    exchange(server, restarted, restarted.feed(hvr))
    replaced, opened = events(server)
    assert type(replaced) is Closed and replaced.kind == "replaced"
    assert psk_identity(opened.session.conn) == "dev2" and len(server.sessions) == 1


def test_a_reload_serves_new_sessions_from_the_new_context() -> None:
    contexts = [build_context(psk_listener(), KEYS)]
    server = DTLSServer(lambda: contexts[-1], task.Clock())
    connect(server, ("192.0.2.7", 1))
    contexts.append(build_context(psk_listener(), PskFile({"dev3": b"a new key"})))
    removed = ClientEnd(client_context(psk=("dev2", bytes(range(32)))))
    with pytest.raises(SSL.Error):
        exchange(server, removed, removed.start(), ("192.0.2.7", 2))
    connect(server, ("192.0.2.7", 3), psk=("dev3", b"a new key"))
    assert server.session(("192.0.2.7", 1)) is not None


def test_flights_are_packed_into_datagrams_under_the_mtu(tmp_path: Path) -> None:
    data = b"".join(b"\x16\xfe\xfd" + bytes(8) + len(body).to_bytes(2, "big") + body
                    for body in (bytes(500), bytes(500), bytes(300), bytes(1500)))
    datagrams = records.pack(data, 1200)
    assert [len(d) for d in datagrams] == [1026, 313, 1513]
    assert b"".join(datagrams) == data


@pytest.fixture(scope="module")
def live() -> tuple[DTLSServer, ClientEnd, list[bytes]]:
    """A server with one established session, and real datagrams to mutate: a
    ClientHello, and the session's own records."""
    server = make_server()
    client = connect(server)
    samples = [ClientEnd(client_context(psk=("dev1", b"x"))).start()[0],
               client.send(b"sample one")[0], client.send(b"x" * 300)[0]]
    return server, client, samples


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_datagrams_never_raise_and_never_end_the_session(
        live: tuple[DTLSServer, ClientEnd, list[bytes]], data: st.DataObject) -> None:
    server, client, samples = live
    datagram = bytearray(data.draw(st.sampled_from(samples)))
    for _ in range(data.draw(st.integers(1, 4))):
        datagram[data.draw(st.integers(0, len(datagram) - 1))] = data.draw(st.integers(0, 255))
    datagram = bytes(datagram[:data.draw(st.integers(0, len(datagram)))])
    datagram += data.draw(st.binary(max_size=20))
    stranger = ("198.51.100.9", data.draw(st.integers(1, 65535)))
    server.receive(datagram, stranger)
    server.receive(datagram, ADDR)
    server.datagrams_to_send()
    assert server.session(ADDR) is not None
    assert stranger not in server.sessions or not server.sessions[stranger].established
