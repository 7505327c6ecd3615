"""CoAP clients that hold hub state: observers and EMQX connection-mode clients.

A plain publish or GET keeps nothing. A client that observes gets one hub session,
keyed like EMQX's channel by its source address (connectionless mode) or by the
``clientid`` of its ``/mqtt/connection`` (connection mode); every observed filter is a
subscription of that session, and the client is the session's hub ``Endpoint``. Each
observation's subscription carries its own subscription identifier, so a delivery
(which names the identifiers it matched) reaches exactly the observations it is for:
retained messages sent for a new observation do not repeat on the client's others.
Notifications of QoS >= 1 deliveries are confirmable and the hub's inflight slot is
released when the CON is acknowledged, so the hub's inflight window and queue limits
bound what waits for a slow observer. An observation ends when the client deregisters,
answers a notification with RST, leaves a CON unacknowledged through all
retransmissions, or its address reports ICMP unreachable; a connectionless client
whose last observation ends leaves the hub.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections import deque
from typing import Any

from aiocoap import Message
from aiocoap.blockwise import _extract_block_key
from aiocoap.numbers.codes import CONTENT, SERVICE_UNAVAILABLE, Code
from aiocoap.numbers.constants import Unreliable
from aiocoap.numbers.types import CON, NON
from twisted.logger import Logger

from gateway.hub.api import ClientInfo, Denied, Message as HubMessage, Reason, Subscribed, Subscription
from gateway.hub.hub import Hub
from gateway.coap.content import representation
from gateway.coap.manager import CoAPStats
from gateway.coap.refusals import AUTHENTICATION, code_for
from gateway.coap.settings import CoAPSettings
from gateway.logtext import clip

#: A NON observation gets a confirmable notification at least this often (seconds),
#: so an observer that vanished without a trace is noticed (RFC 7641 section 4.5).
CON_CHECK_INTERVAL = 60.0
OBSERVE_MODULUS = 1 << 24
#: Subscription identifiers (MQTT 5's range), one per observation of a client.
MAX_SUBSCRIPTION_ID = 268_435_455

UNRELIABLE = Unreliable()


def peer_string(remote: Any) -> str:
    """``host:port`` as the MQTT transport writes it (``gateway.hub.auth.peer_host``
    splits it again), without aiocoap's costly address formatting."""
    sockaddr = getattr(remote, "sockaddr", None) or getattr(remote, "address", None)
    if not sockaddr:
        return str(remote)
    host = sockaddr[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"{host}:{sockaddr[1]}"


class Observation:
    """One Observe registration: the aiocoap pipe that carries its notifications."""

    __slots__ = ("client", "pipe", "request", "topic_filter", "qos", "sub_id", "seq", "pids",
                 "last_con", "block_key", "active")

    def __init__(self, client: CoAPClient, pipe: Any, topic_filter: str, qos: int,
                 sub_id: int) -> None:
        self.client = client
        self.pipe = pipe
        self.request = pipe.request
        self.topic_filter = topic_filter
        self.qos = qos
        self.sub_id = sub_id
        self.seq = 0
        self.pids: set[int] = set()  # hub packet ids waiting for this observer's ACK
        self.last_con = client.registry.clock.seconds()
        self.block_key: Any = None
        self.active = True

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) % OBSERVE_MODULUS
        return self.seq

    def end(self, code: Any = SERVICE_UNAVAILABLE, why: str = "") -> None:
        """End it from the server side with a final error response (RFC 7641 3.2)."""
        if self.active:
            # NON: a peer that stopped answering must not get a CON that would queue
            # behind its unacknowledged notifications for the whole retransmission span.
            final = Message(code=code, payload=why.encode(), transport_tuning=UNRELIABLE)
            self.pipe.add_response(final, is_last=True)
            self.ended()

    def ended(self) -> None:
        """The pipe lost interest (deregistration, RST, timeout) or ``end`` ran."""
        if not self.active:
            return
        self.active = False
        self.client.observation_ended(self)


class CoAPClient:
    """A CoAP client with a hub session; the session's ``Endpoint``."""

    log = Logger()

    def __init__(self, registry: Clients, info: ClientInfo, key: Any, remote: Any,
                 token: str | None = None) -> None:
        self.registry = registry
        self.info = info
        self.key = key  # (remote, clientid) or clientid
        self.remote = remote
        self.token = token  # connection mode only
        self.observations: dict[str, Observation] = {}
        self.by_id: dict[int, Observation] = {}  # subscription identifier -> observation
        self._last_id = 0
        self.inflight: dict[int, int] = {}  # packet id -> CON notifications unacknowledged
        self.last_seen = registry.clock.seconds()
        self.timer: Any = None
        self.closed = False
        self._to_ack: deque[int] = deque()
        self._acking = False
        # A CoAP client's session ends with it (expiry 0): nothing to resume.
        self.session, _ = registry.hub.connect(info, self, True, 0)

    # observations ----------------------------------------------------------------

    def observe(self, pipe: Any, topic_filter: str,
                qos: int) -> tuple[Observation, Subscribed] | Denied:
        """Register (or replace) the observation of ``topic_filter``: the observation
        and its subscription, or why the hub refused it."""
        sub_id = self._allocate_id()
        result = self.registry.hub.subscribe(self.session, topic_filter,
                                             Subscription(qos, identifier=sub_id))
        if not result:
            if not self.observations and self.token is None:
                self.registry.drop(self)
            return result  # type: ignore[return-value]
        old = self.observations.pop(topic_filter, None)
        obs = Observation(self, pipe, topic_filter, qos, sub_id)
        obs.block_key = _extract_block_key(pipe.request)
        self.observations[topic_filter] = obs
        self.by_id[sub_id] = obs
        self.registry.stats.observers += 1
        if old is not None:
            # Out of the table first, so its end neither unsubscribes nor drops the client.
            old.end(SERVICE_UNAVAILABLE, "replaced by a newer observation")
        pipe.on_interest_end(obs.ended)
        return obs, result  # type: ignore[return-value]

    def _allocate_id(self) -> int:
        sub_id = self._last_id
        while True:
            sub_id = sub_id + 1 if sub_id < MAX_SUBSCRIPTION_ID else 1
            if sub_id not in self.by_id:
                self._last_id = sub_id
                return sub_id

    def deregister(self, topic_filter: str) -> None:
        """GET with Observe=1 (EMQX deregisters by topic, whatever the token)."""
        obs = self.observations.get(topic_filter)
        if obs is not None:
            obs.end(CONTENT)

    def observation_ended(self, obs: Observation) -> None:
        registry = self.registry
        registry.stats.observers -= 1
        for pid in list(obs.pids):
            self._release(pid)
        obs.pids.clear()
        if self.by_id.get(obs.sub_id) is obs:
            del self.by_id[obs.sub_id]
        if self.observations.get(obs.topic_filter) is obs:
            del self.observations[obs.topic_filter]
            if not self.closed:
                registry.hub.unsubscribe(self.session, obs.topic_filter)
        if not self.observations and self.token is None and not self.closed:
            registry.drop(self)

    # hub Endpoint ----------------------------------------------------------------

    def send_publish(self, message: HubMessage, qos: int, packet_id: int | None,
                     dup: bool, retain: bool, sub_ids: tuple[int, ...] = ()) -> bool:
        """Notify the observations the delivery matched (by subscription identifier);
        a QoS 1/2 delivery is finished once each CON notification is acknowledged, or
        at once when none is waiting (the client handles its packet id itself)."""
        by_id = self.by_id
        waiting = 0
        for sub_id in sub_ids:
            obs = by_id.get(sub_id)
            if obs is not None and self.notify(obs, message, qos, packet_id):
                waiting += 1
        if packet_id is not None:
            if waiting:
                self.inflight[packet_id] = self.inflight.get(packet_id, 0) + waiting
            else:
                self._acknowledge(packet_id)
        return True

    def notify(self, obs: Observation, message: HubMessage, qos: int,
               packet_id: int | None) -> bool:
        """Send one notification; True if it is a CON whose ACK releases ``packet_id``."""
        if not obs.active:
            return False
        registry = self.registry
        notify_type = registry.settings.notify_type
        now = registry.clock.seconds()
        con = notify_type == "con" or (notify_type == "qos" and qos > 0)
        if not con and now - obs.last_con >= CON_CHECK_INTERVAL:
            con = True
        if con:
            obs.last_con = now
        response = representation(message, now)
        response.mtype = CON if con else NON  # set here, so the backlog bound sees it
        response = registry.site.prepare_notification(obs, response)
        response.opt.observe = obs.next_seq()
        hooked = con and packet_id is not None
        if hooked:
            obs.pids.add(packet_id)  # type: ignore[arg-type]
            response.on_ack = lambda: self._acked(obs, packet_id)  # type: ignore[attr-defined]
        stats = registry.hub.stats
        registry.traffic.sent[qos] += 1
        stats.messages_sent += 1
        stats.bytes_sent += len(message.payload)
        registry.stats.notifications += 1
        obs.pipe.add_response(response, is_last=False)
        return hooked and obs.active

    def _acked(self, obs: Observation, pid: int) -> None:
        if pid in obs.pids:
            obs.pids.discard(pid)
            self._release(pid)

    def _release(self, pid: int) -> None:
        left = self.inflight.get(pid, 0) - 1
        if left > 0:
            self.inflight[pid] = left
            return
        self.inflight.pop(pid, None)
        self._acknowledge(pid)

    def _acknowledge(self, pid: int) -> None:
        """``session.acknowledge`` without recursion: it pumps the session's queue into
        ``send_publish``, which may acknowledge at once (no observation matches any
        more), which would pump again, one stack frame per queued message."""
        self._to_ack.append(pid)
        if self._acking:
            return
        self._acking = True
        try:
            while self._to_ack:
                pid = self._to_ack.popleft()
                if not self.closed:
                    self.session.acknowledge(pid)
        finally:
            self._acking = False

    def send_pubrel(self, packet_id: int) -> None:
        # CoAP has no QoS 2 handshake towards the client: an ACKed CON completes it.
        self._acknowledge(packet_id)

    def close(self, reason: Reason) -> None:
        """The hub ended this client (client id taken over, no longer authorized after
        a reload); it already detached the session."""
        self.end(reason.value, code_for(reason, AUTHENTICATION), detach=False)

    # lifetime --------------------------------------------------------------------

    def touch(self) -> None:
        self.last_seen = self.registry.clock.seconds()

    def end(self, why: str, code: Code = SERVICE_UNAVAILABLE, detach: bool = True) -> None:
        """End every observation (final response ``code``) and leave the hub."""
        if self.closed:
            return
        self.closed = True
        registry = self.registry
        registry.forget(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        for obs in list(self.observations.values()):
            obs.end(code, why)
        self.observations.clear()
        self.by_id.clear()
        if detach:
            registry.hub.disconnect(self.session, graceful=True, endpoint=self)


class Clients:
    """The stateful CoAP clients of one listener."""

    log = Logger()

    def __init__(self, hub: Hub, settings: CoAPSettings, stats: CoAPStats, clock: Any,
                 listener: Any = None) -> None:
        self.hub = hub
        self.settings = settings
        self.stats = stats
        self.traffic = hub.stats.traffic_of("coap")
        self.clock = clock
        self.listener = listener
        self.site: Any = None  # set by the site: it shapes notifications (Block2)
        self.observers: dict[Any, CoAPClient] = {}  # (remote, clientid) -> client
        self.connections: dict[str, CoAPClient] = {}  # clientid -> client

    def count(self) -> int:
        return len(self.observers) + len(self.connections)

    def full(self) -> bool:
        limit = self.settings.max_clients
        return 0 <= limit <= self.count()

    def observer(self, info: ClientInfo, remote: Any) -> CoAPClient:
        """The connectionless client for this address and client id, created if needed."""
        key = (remote, info.client_id)
        client = self.observers.get(key)
        if client is None or client.closed:
            if not info.client_id:
                info = dataclasses.replace(info, client_id=anonymous_client_id())
            client = CoAPClient(self, info, key, remote)
            self.observers[key] = client
        client.touch()
        return client

    def open_connection(self, info: ClientInfo, remote: Any) -> CoAPClient:
        """POST /mqtt/connection: a new token; an older connection of the id is closed."""
        old = self.connections.get(info.client_id)
        if old is not None:
            old.end("connection replaced")
        token = str(secrets.randbelow(0xFFFFFFFF) + 1)  # EMQX's 32-bit decimal token
        client = CoAPClient(self, info, info.client_id, remote, token)
        self.connections[info.client_id] = client
        self.stats.connections += 1
        client.timer = self.clock.callLater(self.settings.heartbeat, self._check, client)
        return client

    def connection(self, client_id: str | None, token: str | None) -> CoAPClient | None:
        """The live connection for ``clientid`` if ``token`` is its token."""
        if not client_id or not token:
            return None
        client = self.connections.get(client_id)
        if client is None or client.closed or not secrets.compare_digest(client.token or "", token):
            return None
        client.touch()
        return client

    def _check(self, client: CoAPClient) -> None:
        client.timer = None
        if client.closed:
            return
        idle = self.clock.seconds() - client.last_seen
        heartbeat = self.settings.heartbeat
        if idle >= heartbeat:
            self.log.info("CoAP connection {client_id} expired after {idle:.0f}s without a "
                          "heartbeat", client_id=clip(client.info.client_id), idle=idle)
            client.end("heartbeat expired")
            return
        client.timer = self.clock.callLater(heartbeat - idle, self._check, client)

    def forget(self, client: CoAPClient) -> None:
        if client.token is not None:
            if self.connections.get(client.key) is client:
                del self.connections[client.key]
                self.stats.connections -= 1
        elif self.observers.get(client.key) is client:
            del self.observers[client.key]

    def drop(self, client: CoAPClient) -> None:
        """A connectionless client's last observation ended."""
        client.end("no observation left")

    def close_all(self, why: str) -> None:
        for client in list(self.observers.values()) + list(self.connections.values()):
            client.end(why)


def anonymous_client_id() -> str:
    """EMQX gives a client without ``clientid`` a random one; so do we."""
    return "coap-" + os.urandom(8).hex()
