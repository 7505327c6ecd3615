"""aiocoap's message layer with bounded state, a per-source rate limit and ACK hooks.

aiocoap 0.4.17 remembers every incoming request for EXCHANGE_LIFETIME (247 s) to
recognise retransmissions, with one timer per request: under sustained load that is
hundreds of thousands of live objects, RSS in the gigabytes and multi-second full
garbage collections, which in this process would stall every MQTT client too.
``GatewayMessageManager`` keeps the same RFC 7252 deduplication in a dict plus a
FIFO of expiry times (no timers), capped at ``coap_deduplication_entries``; when full,
the oldest message ids are forgotten first. It also answers requests above
``coap_max_requests_per_second`` from one endpoint (address and port), or above
``coap_max_requests_per_address`` from one address, with 5.03 and Max-Age before
anything else is allocated for them, tells a notification's sender when its CON was
acknowledged, and ends observations whose NON notification was answered with RST.

These overrides use aiocoap's private ``MessageManager`` methods; setup.cfg pins the
aiocoap versions they were written against and tests/coap checks the hooks exist.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

from aiocoap import Message
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.codes import SERVICE_UNAVAILABLE
from aiocoap.numbers.types import ACK, CON, NON, RST

#: RFC 7252 EXCHANGE_LIFETIME with the default transmission parameters.
EXCHANGE_LIFETIME = 247.0
#: NON notifications remembered so a RST can end their observation.
NON_NOTIFICATIONS_REMEMBERED = 2048
#: CON messages queued behind the one in flight to a single peer (NSTART = 1). The
#: hub's inflight window (max_inflight_messages) normally keeps it far below this.
MAX_BACKLOG = 100
#: Max-Age of a 5.03 for a rate-limited request: the limit's window.
RETRY_AFTER = 1


class CoAPStats:
    """Counters published under ``$SYS/broker/coap/``; plain attributes on the hot path."""

    __slots__ = (
        "requests",
        "limited",
        "limited_address",
        "duplicates",
        "errors",
        "notifications",
        "dropped",
        "observers",
        "connections",
    )

    def __init__(self) -> None:
        self.requests = 0  # requests received (all methods, all paths)
        self.limited = 0  # answered 5.03 by a rate limit
        self.limited_address = 0  # of which by the per-address one
        self.duplicates = 0  # retransmissions recognised by message id
        self.errors = 0  # 4.xx and 5.xx responses sent
        self.notifications = 0  # Observe notifications sent
        self.dropped = 0  # notifications dropped (peer backlog full)
        self.observers = 0  # live observations
        self.connections = 0  # live connection-mode clients

    def register(self, hub: Any) -> None:
        """Publish the counters in the hub's $SYS tree."""
        for name, attr in (
            ("coap/requests/received", "requests"),
            ("coap/requests/limited", "limited"),
            ("coap/requests/duplicates", "duplicates"),
            ("coap/errors", "errors"),
            ("coap/notifications/sent", "notifications"),
            ("coap/notifications/dropped", "dropped"),
            ("coap/observers", "observers"),
            ("coap/connections", "connections"),
        ):
            hub.extra_counter(name, lambda attr=attr: getattr(self, attr))
        for name, kind, help, attr in (
            ("coap_observations", "gauge", "Live CoAP observations", "observers"),
            ("coap_requests", "counter", "CoAP requests received", "requests"),
            ("coap_notifications", "counter", "CoAP notifications sent", "notifications"),
        ):
            hub.probe(name, kind, help, (), lambda attr=attr: [((), getattr(self, attr))], "coap")
        hub.probe("rate_limited", "counter", "Answers delayed or refused by a rate limit",
                  ("protocol", "limit"),
                  lambda: [(("coap", "request_rate"), self.limited - self.limited_address),
                           (("coap", "address_request_rate"), self.limited_address)], "coap")


def source_host(remote: Any) -> Any:
    """The address part of a remote (udp6, simplesocketserver or DTLS), port left out."""
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr is not None:
        return sockaddr[0]
    address = getattr(remote, "address", None)
    if address is not None:
        return address[0]
    return remote


class RateLimiter:
    """Requests per endpoint (address and port) and per address, in fixed one-second
    windows.

    The endpoint limit is one device's share; the address limit, higher, lets many
    devices behind one NAT address through while a client spraying source ports
    still meets a ceiling. Two dicts, cleared when a window ends, so memory is
    bounded by the senders of one second whatever the load.
    """

    __slots__ = ("limit", "address_limit", "_endpoints", "_addresses", "_window_end", "_clock")

    def __init__(self, limit: int, address_limit: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.address_limit = address_limit
        self._endpoints: dict[Any, int] = {}
        self._addresses: dict[Any, int] = {}
        self._window_end = 0.0
        self._clock = clock

    def allow(self, endpoint: Any, address: Any) -> str | None:
        """None if the request fits; else which limit it is over (``"endpoint"`` or
        ``"address"``)."""
        now = self._clock()
        endpoints = self._endpoints
        addresses = self._addresses
        if now >= self._window_end:
            endpoints.clear()
            addresses.clear()
            self._window_end = now + 1.0
        limit = self.limit
        if limit:
            n = endpoints.get(endpoint, 0) + 1
            endpoints[endpoint] = n
            if n > limit:
                return "endpoint"
        limit = self.address_limit
        if limit:
            n = addresses.get(address, 0) + 1
            addresses[address] = n
            if n > limit:
                return "address"
        return None


def exchange_peer(remote: Any) -> Any:
    """What identifies a peer for deduplication: udp6's (host, port, flowinfo), as in
    its ``__eq__``; the address object itself for other transports."""
    sockaddr = getattr(remote, "sockaddr", None)
    return sockaddr[:3] if sockaddr is not None else remote


class _Sent:
    """Encoded bytes to send to ``remote``; the interface only asks for these two."""

    __slots__ = ("remote", "data")

    def __init__(self, remote: Any, data: bytes) -> None:
        self.remote = remote
        self.data = data

    def encode(self) -> bytes:
        return self.data


class GatewayMessageManager(MessageManager):
    """aiocoap's ``MessageManager`` with bounded deduplication and rate limiting."""

    def __init__(self, token_manager: Any, stats: CoAPStats, limits: Any) -> None:
        super().__init__(token_manager)
        self.stats = stats
        self.limits = limits  # CoAPSettings: read live, so a reload applies at once
        self._limiter = RateLimiter(limits.max_requests_per_second, limits.max_requests_per_address)
        # Keys and values are plain tuples, strings, ints and bytes: the garbage
        # collector stops tracking them, so a full table adds nothing to GC pauses.
        self._recent: dict[tuple[Any, int], bytes | None] = {}
        self._expiry: deque[tuple[float, tuple[Any, int]]] = deque()
        self._ack_hooks: dict[tuple[Any, int], Callable[[], None]] = {}
        self._non_sent: dict[tuple[Any, int], Callable[[], None]] = {}
        self._clock = time.monotonic

    # incoming ------------------------------------------------------------------

    def dispatch_message(self, message: Message) -> None:
        if message.code.is_request():
            self.stats.requests += 1
            limits = self.limits
            limiter = self._limiter
            limiter.limit = limits.max_requests_per_second
            limiter.address_limit = limits.max_requests_per_address
            if limiter.limit or limiter.address_limit:
                remote = message.remote
                over = limiter.allow(exchange_peer(remote), source_host(remote))
                if over is not None:
                    if over == "address":
                        self.stats.limited_address += 1
                    self._refuse_busy(message)
                    return
        super().dispatch_message(message)

    def _refuse_busy(self, request: Message) -> None:
        """5.03 + Max-Age, sent without creating an exchange or remembering the id."""
        self.stats.limited += 1
        self.stats.errors += 1
        response = Message(code=SERVICE_UNAVAILABLE, max_age=RETRY_AFTER)
        response.token = request.token
        response.remote = request.remote.as_response_address()
        if request.mtype is CON:
            response.mtype = ACK
            response.mid = request.mid
        else:
            response.mtype = NON
            response.mid = self._next_message_id()
        self._send_via_transport(response)

    def _deduplicate_message(self, message: Message) -> bool:
        """True for a duplicate (its stored response is sent again); else remember it."""
        key = (exchange_peer(message.remote), message.mid)
        recent = self._recent
        if key in recent:
            self.stats.duplicates += 1
            stored = recent[key]
            if message.mtype is CON and stored is not None:
                self._send_via_transport(_Sent(message.remote, stored))
            return True
        now = self._clock()
        expiry = self._expiry
        cap = self.limits.deduplication_entries
        while expiry and (expiry[0][0] <= now or len(recent) >= cap):
            recent.pop(expiry.popleft()[1], None)
        recent[key] = None
        expiry.append((now + EXCHANGE_LIFETIME, key))
        return False

    def _send_initially(self, message: Message, messageerror_monitor: Any = None) -> None:
        """As aiocoap's, but an answer kept for duplicates is encoded once, for both."""
        if message.mtype is CON:
            self._add_exchange(message, messageerror_monitor)
        elif message.mtype is ACK:
            key = (exchange_peer(message.remote), message.mid)
            recent = self._recent
            if key in recent:
                data = recent[key] = message.encode()
                self.message_interface.send(_Sent(message.remote, data))
                return
        self.message_interface.send(message)

    def remembered(self) -> int:
        """Message ids currently kept for deduplication."""
        return len(self._recent)

    # confirmable notifications -------------------------------------------------

    def _add_exchange(self, message: Message, messageerror_monitor: Any) -> None:
        super()._add_exchange(message, messageerror_monitor)
        hook = getattr(message, "on_ack", None)
        if hook is not None:
            self._ack_hooks[(message.remote, message.mid)] = hook

    def _remove_exchange(self, message: Message) -> None:
        key = (message.remote, message.mid)
        hook = self._ack_hooks.pop(key, None)
        if message.mtype is RST and key not in self._active_exchanges:
            stop = self._non_sent.pop(key, None)
            if stop is not None:
                stop()  # the peer rejected a NON notification: it forgot the observation
                return
        super()._remove_exchange(message)
        if hook is not None and message.mtype is ACK:
            hook()

    def _retransmit(self, message: Message, timeout: float, retransmission_counter: int) -> None:
        super()._retransmit(message, timeout, retransmission_counter)
        key = (message.remote, message.mid)
        if key not in self._active_exchanges:
            self._ack_hooks.pop(key, None)

    def dispatch_error(self, error: Exception, remote: Any) -> None:
        super().dispatch_error(error, remote)
        for table in (self._ack_hooks, self._non_sent):
            for key in [k for k in table if k[0] == remote]:
                del table[key]

    # outgoing ------------------------------------------------------------------

    def send_message(self, message: Message, messageerror_monitor: Any) -> None:
        if message.mtype is CON and self._active_exchanges is not None:
            backlog = self._backlogs.get(message.remote)
            if backlog is not None and len(backlog) >= MAX_BACKLOG:
                # Dropped without its ACK hook: what waits for it stays waiting until the
                # observation ends, so the hub's window stays full and the hub queues,
                # and drops, further messages under its own limits.
                self.stats.dropped += 1
                return
        super().send_message(message, messageerror_monitor)
        if message.mtype is NON and message.opt.observe is not None:
            sent = self._non_sent
            if len(sent) >= NON_NOTIFICATIONS_REMEMBERED:
                del sent[next(iter(sent))]
            sent[(message.remote, message.mid)] = messageerror_monitor
        if message.code.is_response() and message.code >= 128:
            self.stats.errors += 1
