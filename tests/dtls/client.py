"""A DTLS 1.2 client for the tests, on pyOpenSSL's memory BIOs (PSK or certificates).

``ClientEnd`` is the client's connection without I/O (the unit tests pass its datagrams
to a ``DTLSServer`` by hand); ``DTLSClient`` runs one over a UDP socket for the
end-to-end tests; ``flood`` is a handshake flood (tests/dtls/test_flood.py and
bench/dtls_load.py). PSK uses the OpenSSL binding's ``SSL_CTX_set_psk_client_callback``
directly, independently of the gateway's server-side hook.
"""

from __future__ import annotations

import random
import select
import socket
import time
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi, lib

TIMEOUT = 10.0
MTU = 1200
_PSK_CLIENT = ("unsigned int(SSL *, const char *, char *, unsigned int, unsigned char *, "
               "unsigned int)")


def client_context(psk: tuple[str, bytes] | None = None, ca: str | None = None,
                   cert: str | None = None, key: str | None = None,
                   ciphers: str | None = None) -> SSL.Context:
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_options(SSL.OP_NO_QUERY_MTU)
    if psk is not None:
        identity, secret = psk

        def callback(ssl: Any, hint: Any, out_id: Any, max_id: int, out_psk: Any,
                     max_psk: int) -> int:
            name = identity.encode()
            ffi.memmove(out_id, name + b"\0", len(name) + 1)
            ffi.memmove(out_psk, secret, len(secret))
            return len(secret)

        handle = ffi.callback(_PSK_CLIENT, callback)
        lib.SSL_CTX_set_psk_client_callback(ctx._context, handle)
        ctx._test_psk = handle  # type: ignore[attr-defined]
        ctx.set_cipher_list((ciphers or "PSK").encode())
    elif ciphers:
        ctx.set_cipher_list(ciphers.encode())
    if ca is not None:
        ctx.load_verify_locations(ca)
        ctx.set_verify(SSL.VERIFY_PEER)
    if cert is not None:
        ctx.use_certificate_chain_file(cert)
        ctx.use_privatekey_file(key or cert)
    return ctx


class ClientEnd:
    """One client connection: ``start()``/``feed(datagram)`` return datagrams to send."""

    def __init__(self, ctx: SSL.Context) -> None:
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.conn.set_ciphertext_mtu(MTU)
        self.done = False
        self.closed = False
        self.received: list[bytes] = []

    def _out(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.conn.bio_read(65536))
            except SSL.WantReadError:
                return out

    def start(self) -> list[bytes]:
        return self.step()

    def step(self) -> list[bytes]:
        if not self.done:
            try:
                self.conn.do_handshake()
                self.done = True
            except SSL.WantReadError:
                pass
        if self.done:
            try:
                while True:
                    self.received.append(self.conn.recv(65536))
            except SSL.WantReadError:
                pass
            except SSL.ZeroReturnError:
                self.closed = True
        return self._out()

    def feed(self, datagram: bytes) -> list[bytes]:
        self.conn.bio_write(datagram)
        return self.step()

    def send(self, data: bytes) -> list[bytes]:
        self.conn.send(data)
        return self._out()

    def close(self) -> list[bytes]:
        try:
            self.conn.shutdown()
        except SSL.Error:
            pass
        return self._out()

    def retransmit(self) -> list[bytes]:
        self.conn.DTLSv1_handle_timeout()
        return self._out()


class DTLSClient:
    """``ClientEnd`` over a UDP socket: blocking calls with timeouts, for e2e tests."""

    def __init__(self, port: int, host: str = "127.0.0.1", bind: str | None = None,
                 **context: Any) -> None:
        """``bind``: the source address (another 127.x is another host to the server)."""
        self.end = ClientEnd(client_context(**context))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if bind is not None:
            self.sock.bind((bind, 0))
        self.sock.connect((host, port))
        self.alerts: list[str] = []

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _send(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self.sock.send(d)

    def _wait(self, deadline: float) -> bool:
        """Read one datagram into the connection (retransmitting as OpenSSL asks)."""
        while time.monotonic() < deadline:
            left = self.end.conn.DTLSv1_get_timeout()
            wait = min(deadline - time.monotonic(), left if left is not None else 1.0)
            ready, _, _ = select.select([self.sock], [], [], max(0.0, wait))
            if ready:
                self._send(self.end.feed(self.sock.recv(65536)))
                return True
            if not self.end.done:
                self._send(self.end.retransmit())
        return False

    def handshake(self, timeout: float = TIMEOUT) -> DTLSClient:
        deadline = time.monotonic() + timeout
        try:
            self._send(self.end.start())
            while not self.end.done:
                if not self._wait(deadline):
                    raise TimeoutError("DTLS handshake did not complete")
        except SSL.Error as e:
            raise ConnectionRefusedError(f"DTLS handshake failed: {e}") from None
        return self

    def send(self, data: bytes) -> None:
        self._send(self.end.send(data))

    def recv(self, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.end.received:
            if self.end.closed:
                raise ConnectionResetError("close_notify from the server")
            if not self._wait(deadline):
                raise TimeoutError(f"nothing received within {timeout}s")
        return self.end.received.pop(0)

    def close(self) -> None:
        try:
            self._send(self.end.close())
        except OSError:
            pass
        self.sock.close()


def flood(ports: list[int], seconds: float, seed: int = 0, sockets: int = 200,
          host: str = "127.0.0.1", stall_host: str = "127.0.0.3") -> None:
    """A handshake flood from ``sockets`` source ports: half of them, on ``host``, send
    cookie-less ClientHellos as fast as they can; the others, on ``stall_host`` (a
    source address of its own), answer their HelloVerifyRequest, then go silent for
    half a second (a handshake the server holds until it times out), and again.
    Answers beyond the HelloVerifyRequest are never read."""
    rnd = random.Random(seed)
    ctx = client_context(psk=("flooder", b"not the key"))
    sprayers, stallers = [], []
    for i in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.bind((stall_host if i % 2 else host, 0))
        s.connect(("127.0.0.1", ports[(i // 2) % len(ports)]))
        s.setblocking(False)
        (stallers if i % 2 else sprayers).append(s)
    hellos = [ClientEnd(ctx).start()[0] for _ in range(16)]
    pending: dict[socket.socket, ClientEnd] = {}
    quiet_until: dict[socket.socket, float] = {}
    deadline = time.monotonic() + seconds
    while (now := time.monotonic()) < deadline:
        for s in sprayers:
            try:
                s.send(rnd.choice(hellos))
            except OSError:
                pass
        for s in stallers:
            if s not in pending and quiet_until.get(s, 0.0) <= now:
                end = pending[s] = ClientEnd(ctx)
                quiet_until[s] = now + 0.5
                try:
                    s.send(end.start()[0])
                except OSError:
                    pass
        ready, _, _ = select.select(list(pending), [], [], 0.01)
        for s in ready:
            end = pending.pop(s)
            try:
                answer = s.recv(4096)
                if answer[:1] == b"\x16" and answer[13:14] == b"\x03":  # HelloVerifyRequest
                    for d in end.feed(answer):
                        s.send(d)
            except Exception:  # noqa: BLE001 - a flooder does not care
                pass
        for s in [s for s in pending if quiet_until[s] <= now]:
            del pending[s]  # no HelloVerifyRequest (rate limited): try again
        time.sleep(0.002)
    for s in sprayers + stallers:
        s.close()
