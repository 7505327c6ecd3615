"""A DTLS 1.2 server without I/O: datagrams in; datagrams, plaintext and events out.

``DTLSServer`` keeps one pyOpenSSL ``Connection`` on memory BIOs per peer address.
The transport hands it each datagram with ``receive(data, addr)`` (which returns the
application data it carried), sends what ``datagrams_to_send()`` returns, reads
``next_event()`` (a session opened, a session closed, a handshake failed), encrypts
with ``send(addr, plaintext)``, and calls ``handle_timer()`` once the time
``get_timer()`` names has come (handshake retransmission, handshake deadline, idle
sessions).

What a peer can make it hold is bounded before the peer has proved anything:

- an unknown address gets state only from a ClientHello that carries a valid cookie
  (``DTLSv1_listen``; ``gateway.dtls.cookies``): the HelloVerifyRequest that answers a
  ClientHello without one is built and forgotten, so spoofed sources cost CPU only;
- ClientHellos are limited per source host (a token bucket for those without a
  cookie, another for those with one, so a flood of the first kind from an address
  cannot stop a client there that already has its cookie), handshakes in progress
  and sessions per server (``Limits``), and one source host holds at most a quarter
  of the handshakes in progress, so a flood from one address that answers its
  cookies cannot keep others out; a handshake has ``HANDSHAKE_TIMEOUT`` seconds
  to complete, an established session is closed after ``idle_timeout`` seconds
  without a datagram from its peer (unless ``keep(addr)`` says it is in use);
- every OpenSSL error, and any other exception while one peer's datagram is handled,
  ends that peer's session only; records that do not authenticate are dropped by
  OpenSSL, and datagrams from unknown addresses that are not ClientHellos are dropped
  before OpenSSL sees them.

A close_notify from the peer is answered with one and ends the session; ``close()``
sends one. A new ClientHello (epoch 0, valid cookie) from the address of an
established session replaces it once the cookie is verified (RFC 6347 4.2.8): the
client restarted with the same port.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from OpenSSL import SSL

from gateway.dtls import records
from gateway.dtls.cookies import Clock, CookieJar
from gateway.dtls.stats import DTLSStats
from gateway.tokenbucket import RateLimiter

HANDSHAKE_TIMEOUT = 30.0    # seconds from a verified ClientHello to Finished
MAX_RECORD = 16384 + 2048   # largest plaintext record, and then some
SWEEP_INTERVAL = 5.0        # seconds between looks for idle sessions (at most)


@dataclass(slots=True)
class Limits:
    max_sessions: int = 2000         # sessions, handshaking or established; -1 unlimited
    max_handshakes: int = 100        # handshakes past the cookie at once
    idle_timeout: float = 1800.0     # seconds without a datagram from the peer
    hellos: tuple[int, float] = (20, 1.0)   # per source host and kind (with/without cookie): COUNT per SECONDS
    mtu: int = 1200                  # largest datagram sent (records are not split)

    @classmethod
    def from_settings(cls, config: Any, listener: Any) -> Limits:
        """From the gateway's settings: ``dtls_*`` and the listener's
        ``max_connection_rate`` (which, on a DTLS listener, limits ClientHellos)."""
        limits = cls(config.dtls_max_sessions, config.dtls_max_handshakes,
                     float(config.dtls_idle_timeout))
        rate = getattr(listener, "max_connection_rate", None)
        if rate:
            limits.hellos = rate
        return limits


class Opened(NamedTuple):
    """A handshake completed; ``session`` says who the peer is."""

    addr: Any
    session: Session


class Closed(NamedTuple):
    """An established session ended: ``reason`` in words; ``kind`` is ``peer``
    (close_notify), ``idle``, ``replaced`` (a new handshake from the address) or
    ``error``."""

    addr: Any
    reason: str
    kind: str


class Failed(NamedTuple):
    """A handshake past the cookie did not complete."""

    addr: Any
    reason: str


Event = Opened | Closed | Failed


class Session:
    """One peer: its connection, and what the transport may want to know about it.

    ``getHandle()``/``getPeerCertificate()`` are those of a Twisted TLS transport, so
    ``gateway.tls.certificate_username`` reads a session as it reads a TLS connection.
    ``username`` and ``data`` are the transport's to fill.
    """

    __slots__ = ("addr", "conn", "jar", "established", "started", "last_rx", "deadline",
                 "username", "data")

    def __init__(self, addr: Any, conn: SSL.Connection, jar: CookieJar, now: float) -> None:
        self.addr = addr
        self.conn = conn
        self.jar = jar
        self.established = False
        self.started = now
        self.last_rx = now
        self.deadline: float | None = None  # OpenSSL's next retransmission
        self.username: str | None = None
        self.data: Any = None

    def cookie(self) -> bytes:
        return self.jar.make(self.addr)

    def cookie_ok(self, cookie: bytes) -> bool:
        return self.jar.check(self.addr, cookie)

    def getHandle(self) -> SSL.Connection:
        return self.conn

    def getPeerCertificate(self) -> Any:
        return self.conn.get_peer_certificate()

    @property
    def cipher(self) -> str | None:
        return self.conn.get_cipher_name()


def _reason(error: Exception) -> str:
    if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list):
        reasons = [str(item[2]) for item in error.args[0] if len(item) > 2 and item[2]]
        if reasons:
            return ", ".join(reasons)
    return str(error) or type(error).__name__


def _host(addr: Any) -> Any:
    return addr[0] if isinstance(addr, tuple) else addr


class DTLSServer:
    """The DTLS sessions of one listener (see the module docstring)."""

    def __init__(self, context: Callable[[], SSL.Context], clock: Clock,
                 limits: Limits | None = None, stats: DTLSStats | None = None,
                 keep: Callable[[Any], bool] | None = None) -> None:
        self.context = context          # asked per new session, so a reload applies to new ones
        self.clock = clock
        self.limits = limits or Limits()
        self.stats = stats or DTLSStats()
        self.keep = keep
        self.cookies = CookieJar(clock)
        self.hellos = RateLimiter(self.limits.hellos[0], self.limits.hellos[1], clock)
        self.answers = RateLimiter(self.limits.hellos[0], self.limits.hellos[1], clock)
        self.sessions: dict[Any, Session] = {}
        self.handshakes: dict[Any, Session] = {}
        self._by_host: dict[Any, int] = {}  # handshakes in progress per source host
        self._outgoing: list[tuple[bytes, Any]] = []
        self._events: deque[Event] = deque()
        self._sweep_at = clock.seconds() + self._sweep_interval()
        self.next_deadline = self._sweep_at  # earliest time handle_timer has work

    # the transport's side -----------------------------------------------------------

    def receive(self, data: bytes, addr: Any) -> list[bytes]:
        """One datagram from ``addr``; returns the application data it carried."""
        if not data:
            self.stats.dropped += 1  # a memory BIO takes no empty write
            return []
        session = self.sessions.get(addr)
        try:
            if session is None or (session.established and records.is_client_hello(data)):
                return self._hello(data, addr, session)
            session.last_rx = self.clock.seconds()
            session.conn.bio_write(data)
            if not session.established:
                return self._handshake(session)
            return self._read(session)
        except Exception as e:  # noqa: BLE001 - nothing a peer sends may escape
            if session is not None and self.sessions.get(addr) is session:
                self._end(session, f"internal error: {_reason(e)}")
            else:
                self.stats.dropped += 1
            return []

    def send(self, addr: Any, data: bytes) -> bool:
        """Encrypt ``data`` as one record to ``addr``; False without an open session."""
        session = self.sessions.get(addr)
        if session is None or not session.established:
            return False
        try:
            session.conn.send(data)
        except Exception as e:  # noqa: BLE001
            self._end(session, f"send failed: {_reason(e)}")
            return False
        self._flush(session)
        return True

    def close(self, addr: Any, reason: str = "closed by the server") -> None:
        """End the session with ``addr`` (close_notify); no event is reported."""
        session = self.sessions.get(addr)
        if session is not None:
            self._remove(session)
            if session.established:
                self._shutdown(session)

    def close_all(self) -> None:
        for addr in list(self.sessions):
            self.close(addr)

    def session(self, addr: Any) -> Session | None:
        """The established session with ``addr``, if any."""
        session = self.sessions.get(addr)
        return session if session is not None and session.established else None

    def datagrams_to_send(self) -> list[tuple[bytes, Any]]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        """When ``handle_timer`` next has work (a clock time; it may be early)."""
        return self.next_deadline

    def handle_timer(self) -> None:
        """Retransmit, give up on late handshakes, close idle sessions."""
        now = self.clock.seconds()
        for session in list(self.handshakes.values()):
            if now - session.started >= HANDSHAKE_TIMEOUT:
                self._fail(session, "handshake timed out")
            elif session.deadline is not None and now >= session.deadline:
                try:
                    session.conn.DTLSv1_handle_timeout()
                except Exception as e:  # noqa: BLE001
                    self._fail(session, _reason(e))
                    continue
                self._flush(session)
                self._arm(session, now)
        if now >= self._sweep_at:
            self._sweep(now)
        deadline = self._sweep_at
        for session in self.handshakes.values():
            deadline = min(deadline, session.started + HANDSHAKE_TIMEOUT)
            if session.deadline is not None:
                deadline = min(deadline, session.deadline)
        self.next_deadline = deadline

    # inside --------------------------------------------------------------------------

    def _hello(self, data: bytes, addr: Any, old: Session | None) -> list[bytes]:
        """A datagram from an address without a session (or a new ClientHello from one
        with an established session): the cookie exchange, then a new handshake."""
        stats = self.stats
        if not records.is_client_hello(data):
            stats.dropped += 1
            return []
        bucket = self.answers if records.has_cookie(data) else self.hellos
        if not bucket.allow(_host(addr)):
            stats.limited += 1
            return []
        now = self.clock.seconds()
        conn = SSL.Connection(self.context(), None)
        session = Session(addr, conn, self.cookies, now)
        conn.set_app_data(session)
        conn.set_ciphertext_mtu(self.limits.mtu)
        conn.bio_write(data)
        try:
            conn.DTLSv1_listen()
        except SSL.WantReadError:
            self._flush(session)  # the HelloVerifyRequest; nothing is kept
            stats.cookies += 1
            return []
        except SSL.Error:
            stats.dropped += 1
            return []
        limits = self.limits
        host = _host(addr)
        sessions = len(self.sessions) - (old is not None)
        if (len(self.handshakes) >= limits.max_handshakes
                or self._by_host.get(host, 0) >= max(1, limits.max_handshakes // 4)
                or 0 <= limits.max_sessions <= sessions):
            stats.refused += 1
            return []
        if old is not None:
            self._remove(old)
            self._events.append(Closed(addr, "the client started a new handshake", "replaced"))
        self.sessions[addr] = session
        self.handshakes[addr] = session
        self._by_host[host] = self._by_host.get(host, 0) + 1
        stats.started += 1
        stats.sessions += 1
        return self._handshake(session)

    def _handshake(self, session: Session) -> list[bytes]:
        conn = session.conn
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            self._flush(session)
            self._arm(session, self.clock.seconds())
            return []
        except Exception as e:  # noqa: BLE001
            self._flush(session)  # the alert, if OpenSSL wrote one
            self._fail(session, _reason(e))
            return []
        self._flush(session)
        self._handshake_over(session)
        session.established = True
        session.deadline = None
        self.stats.completed += 1
        self._events.append(Opened(session.addr, session))
        return self._read(session)

    def _read(self, session: Session) -> list[bytes]:
        conn = session.conn
        out = []
        while True:
            try:
                out.append(conn.recv(MAX_RECORD))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._remove(session)
                self._shutdown(session)
                self._events.append(Closed(session.addr, "closed by the client", "peer"))
                return out
            except Exception as e:  # noqa: BLE001
                self._flush(session)  # the alert, if OpenSSL wrote one
                self._end(session, _reason(e))
                return out
        self._flush(session)  # e.g. the last flight again, for a client that missed it
        return out

    def _arm(self, session: Session, now: float) -> None:
        left = session.conn.DTLSv1_get_timeout()
        session.deadline = None if left is None else now + left
        first = session.started + HANDSHAKE_TIMEOUT
        if session.deadline is not None:
            first = min(first, session.deadline)
        if first < self.next_deadline:
            self.next_deadline = first

    def _flush(self, session: Session) -> None:
        conn = session.conn
        data = b""
        while True:
            try:
                data += conn.bio_read(65536)
            except SSL.WantReadError:
                break
        if data:
            mtu = self.limits.mtu
            addr = session.addr
            if len(data) <= mtu:
                self._outgoing.append((data, addr))
            else:
                self._outgoing.extend((d, addr) for d in records.pack(data, mtu))

    def _shutdown(self, session: Session) -> None:
        """Send close_notify (best effort: the peer may be gone)."""
        try:
            session.conn.shutdown()
        except Exception:  # noqa: BLE001
            return
        self._flush(session)

    def _remove(self, session: Session) -> None:
        addr = session.addr
        if self.sessions.get(addr) is session:
            del self.sessions[addr]
            self.stats.sessions -= 1
        if self.handshakes.get(addr) is session:
            self._handshake_over(session)

    def _handshake_over(self, session: Session) -> None:
        del self.handshakes[session.addr]
        host = _host(session.addr)
        left = self._by_host[host] - 1
        if left:
            self._by_host[host] = left
        else:
            del self._by_host[host]

    def _fail(self, session: Session, reason: str) -> None:
        self._remove(session)
        self.stats.failed += 1
        self._events.append(Failed(session.addr, reason))

    def _end(self, session: Session, reason: str) -> None:
        """End a session on an error (its alert, if any, is already flushed)."""
        if not session.established:
            self._fail(session, reason)
            return
        self._remove(session)
        self.stats.errors += 1
        self._events.append(Closed(session.addr, reason, "error"))

    def _sweep_interval(self) -> float:
        return max(0.1, min(SWEEP_INTERVAL, self.limits.idle_timeout / 4))

    def _sweep(self, now: float) -> None:
        self._sweep_at = now + self._sweep_interval()
        idle = self.limits.idle_timeout
        keep = self.keep
        for session in [s for s in self.sessions.values()
                        if s.established and now - s.last_rx >= idle]:
            if keep is not None and keep(session.addr):
                continue
            self._remove(session)
            self._shutdown(session)
            self.stats.expired += 1
            self._events.append(Closed(session.addr, "idle", "idle"))
