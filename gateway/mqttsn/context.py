"""What every MQTT-SN transport of one hub shares: settings, timers, counters, networks.

UDP listeners and serial lines are each a ``Network``: a map from an address (a UDP
source address, a forwarder's address plus wireless node id, a radio's 64-bit address,
a serial device) to the channel of the client there. Channels live in the network
until they disconnect or are lost; the client id namespace and sessions are the hub's,
so a client that comes back on another address, or another network, keeps its session.
The context makes a client's channel with the factory it was given (``Channel`` says
what it needs of one), so the channel may use the context without a loop between them.

Timers: thousands of sleeping sensors each need a supervision deadline, so instead of
one ``DelayedCall`` per client the context keeps one heap and one reactor call for its
earliest entry. A cancelled entry drops its callable at once (a closed channel is not
kept alive until its deadline, up to 1.5 × a keepalive of 18 hours) and leaves the
heap when it reaches the top or when cancelled entries are half of it.
"""

from __future__ import annotations

import heapq
import itertools
import weakref
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gateway.hub.api import ALLOWED, WRITE, AuthResult, ClientInfo, Message
from gateway.hub.hub import Hub
from gateway.hub.sessions import SLEEP_KEY
from gateway.netaddr import transport_label
from gateway.mqttsn.codec import (
    Connect,
    Disconnect,
    Encapsulated,
    MQTTSNError,
    PingReq,
    Publish,
    TopicIdType,
    decode,
    encode,
    short_name,
)
from gateway.mqttsn.discovery import Discovery
from gateway.mqttsn.registry import Predefined
from gateway.mqttsn.settings import MQTTSNSettings

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.hub.sessions import Session

DISCONNECT = encode(Disconnect())

Timer = list  # a ``Timers`` entry, opaque to its owner


class Counters:
    """MQTT-SN specific ``$SYS/broker/mqttsn/...`` values (plain increments)."""

    __slots__ = (
        "connected", "asleep", "registrations", "frames_dropped", "messages_dropped",
        "qos_minus_one", "retransmissions", "clients_lost",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


class Timers:
    """One heap of ``[deadline, seq, fn, args]`` entries behind a single reactor call."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._call: IDelayedCall | None = None
        self._call_at = 0.0
        self._cancelled = 0

    def schedule(self, delay: float, fn: Callable[..., None], *args: Any) -> Timer:
        """Call ``fn(*args)`` in ``delay`` seconds; the entry returned can be cancelled."""
        when = self.clock.seconds() + delay
        entry = [when, next(self._seq), fn, args]
        heapq.heappush(self._heap, entry)
        if self._call is None or when < self._call_at:
            self._arm(when)
        return entry

    def cancel(self, entry: Timer | None) -> None:
        """Forget ``entry`` (None, fired or already cancelled: nothing to do)."""
        if entry is None or entry[2] is None:
            return
        entry[2] = None
        entry[3] = ()
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _arm(self, when: float) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call_at = when
        self._call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._run)

    def _run(self) -> None:
        self._call = None
        heap = self._heap
        now = self.clock.seconds()
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            fn, args = entry[2], entry[3]
            if fn is None:
                self._cancelled -= 1
                continue
            entry[2] = None  # fired: a later cancel is a no-op
            entry[3] = ()
            fn(*args)
        if heap and self._call is None:
            self._arm(heap[0][0])

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._heap.clear()
        self._cancelled = 0

    def __len__(self) -> int:
        """Entries still to fire."""
        return len(self._heap) - self._cancelled


class Forwarded(NamedTuple):
    """The address of a client behind a forwarder: replies go back encapsulated."""

    via: Any
    node_id: bytes


class Channel(Protocol):
    """What a network and the context ask of the channel of one client
    (``gateway.mqttsn.channel.MQTTSNChannel``)."""

    ctx: MQTTSNContext

    @property
    def sleeping(self) -> bool: ...

    def datagram(self, data: bytes) -> None: ...

    def handle(self, msg: Any) -> None: ...

    def refuse_congestion(self) -> None: ...

    def move(self, network: Network, addr: Any) -> None: ...

    def lost(self, why: str) -> None: ...

    def shutdown(self) -> None: ...

    def resume_asleep(self, session: Session) -> None: ...


#: Makes the channel for a client that sends a CONNECT: (context, network, address, listener).
ChannelFactory = Callable[["MQTTSNContext", "Network", Any, Any], Channel]


class Network:
    """Base of the UDP and serial transports: addresses to channels, bytes both ways."""

    log = Logger()
    max_message = 65535
    #: The transport names each client (a DTLS identity), and CONNECTs without a name are
    #: refused (use_identity_as_username).
    requires_identity = False

    def __init__(self, ctx: MQTTSNContext, listener: Any) -> None:
        self.ctx = ctx
        self.listener = listener
        self.channels: dict[Any, Channel] = {}

    # subclasses --------------------------------------------------------------------

    def write(self, addr: Any, data: bytes) -> None:
        """Put one message on the wire to ``addr`` (a real address, not ``Forwarded``)."""
        raise NotImplementedError

    def broadcast(self, data: bytes) -> None:
        """Send to every client at once (ADVERTISE); networks without broadcast skip it."""

    def describe(self, addr: Any) -> str:
        return str(addr)

    def identity(self, addr: Any) -> str | None:
        """The username the transport authenticated ``addr`` as (DTLS), or None."""
        return None

    @property
    def transport_name(self) -> str:
        """How its clients reach the gateway, for status pages and metrics."""
        return transport_label(self.listener)

    def answer_searchgw(self, addr: Any, gwinfo: bytes) -> None:
        """GWINFO back to the searcher; radio networks broadcast it instead."""
        self.send(addr, gwinfo)

    @property
    def frames_dropped(self) -> int:
        """Frames the transport itself dropped (bad checksums, line noise)."""
        return 0

    def kernel_drops(self) -> int:
        """Datagrams the operating system dropped before we could read them."""
        return 0

    # shared ------------------------------------------------------------------------

    def send(self, addr: Any, data: bytes) -> None:
        if type(addr) is Forwarded:
            data = encode(Encapsulated(addr.node_id, data))
            addr = addr.via
        self.write(addr, data)

    def received(self, addr: Any, data: bytes) -> None:
        """One message (datagram, frame payload) from ``addr``."""
        channel = self.channels.get(addr)
        if channel is not None:
            channel.datagram(data)
        else:
            self.ctx.unknown(self, addr, data)

    def attach(self, addr: Any, channel: Channel) -> None:
        self.channels[addr] = channel

    def release(self, addr: Any, channel: Channel) -> None:
        if self.channels.get(addr) is channel:
            del self.channels[addr]

    def close_all(self) -> None:
        for channel in list(self.channels.values()):
            channel.shutdown()


class Nowhere(Network):
    """Where the clients that slept through a restart of the gateway are until they wake
    up: their addresses were not kept, and nothing is sent to a sleeping client."""

    def write(self, addr: Any, data: bytes) -> None:
        pass

    def describe(self, addr: Any) -> str:
        return "(asleep since the restart)"


class MQTTSNContext:
    """Shared by every MQTT-SN network of one hub (see the module docstring)."""

    log = Logger()

    def __init__(self, hub: Hub, settings: MQTTSNSettings, clock: IReactorTime,
                 channel_factory: ChannelFactory) -> None:
        self.hub = hub
        self.settings = settings
        self.clock = clock
        self.channel_factory = channel_factory
        self.predefined = Predefined(settings.predefined)
        self.counters = Counters()
        self.traffic = hub.stats.traffic_of("mqttsn")  # PUBLISH by QoS: in, out, dropped
        self.timers = Timers(clock)
        self.networks: list[Network] = []
        self.discovery = Discovery(settings, clock, self.networks)
        c = self.counters
        for name, fn in (
            ("mqttsn/clients/connected", lambda: c.connected),
            ("mqttsn/clients/sleeping", lambda: c.asleep),
            ("mqttsn/clients/lost", lambda: c.clients_lost),
            ("mqttsn/registrations", lambda: c.registrations),
            ("mqttsn/frames/dropped", lambda: c.frames_dropped + self._network_drops()),
            ("mqttsn/messages/dropped", lambda: c.messages_dropped),
            ("mqttsn/messages/retransmitted", lambda: c.retransmissions),
            ("mqttsn/publish/qos-1", lambda: c.qos_minus_one),
            ("mqttsn/udp/kernel dropped", self._kernel_drops),
        ):
            hub.extra_counter(name, fn)
        for name, kind, help, fn in (
            ("mqttsn_clients_sleeping", "gauge", "MQTT-SN clients asleep", lambda: c.asleep),
            ("mqttsn_retransmissions", "counter", "MQTT-SN messages sent again", lambda: c.retransmissions),
            ("mqttsn_udp_kernel_drops", "counter", "MQTT-SN datagrams the kernel dropped",
             self._kernel_drops),
        ):
            hub.probe(name, kind, help, (), lambda fn=fn: [((), fn())], "mqttsn")
        self._take_up_sleepers()

    def _network_drops(self) -> int:
        return sum(n.frames_dropped for n in self.networks)

    def _kernel_drops(self) -> int:
        return sum(n.kernel_drops() for n in self.networks)

    def add_network(self, network: Network) -> None:
        self.networks.append(network)
        self.discovery.start()

    def remove_network(self, network: Network) -> None:
        if network in self.networks:
            self.networks.remove(network)
        network.close_all()
        if not self.networks:
            self.discovery.stop()
            self.timers.stop()

    def _take_up_sleepers(self) -> None:
        """Clients that were asleep when the process stopped (sessions a store gave
        back): a channel each again, asleep, that a PINGREQ with their client id finds."""
        nowhere = None
        for session in list(self.hub.sessions.values()):
            if session.endpoint is None and session.client.protocol == "mqttsn" and session.extra.get(SLEEP_KEY):
                if nowhere is None:
                    nowhere = Nowhere(self, None)
                channel = self.channel_factory(self, nowhere, session.client_id, session.client.listener)
                nowhere.attach(session.client_id, channel)
                channel.resume_asleep(session)

    # addresses without a channel ---------------------------------------------------------

    def unknown(self, network: Network, addr: Any, data: bytes) -> None:
        """A message from an address with no channel: CONNECT, discovery, QoS -1, or a nudge."""
        try:
            msg = decode(data)
        except MQTTSNError:
            self.counters.frames_dropped += 1
            return
        t = type(msg)
        if t is Connect:
            listener = network.listener
            limit = getattr(listener, "max_connections", -1)
            channel = self.channel_factory(self, network, addr, listener)
            if 0 <= limit <= len(network.channels):
                channel.refuse_congestion()
                return
            network.attach(addr, channel)
            channel.handle(msg)
        elif t is Encapsulated:
            network.received(Forwarded(addr, msg.node_id), msg.message)  # type: ignore[union-attr]
        elif t is Publish and msg.qos == -1:  # type: ignore[union-attr]
            self.qos_minus_one(network, addr, msg)  # type: ignore[arg-type]
        elif t is PingReq and msg.client_id:  # type: ignore[union-attr]
            channel = self._sleeping(msg.client_id)  # type: ignore[union-attr]
            if channel is None:
                network.send(addr, DISCONNECT)
                return
            channel.move(network, addr)
            channel.handle(msg)
        elif self.discovery.handle(network, addr, msg):
            return
        elif t is Disconnect:
            return  # mqtt_sn_pub -q -1 says goodbye although it never connected
        else:
            # Not connected (never, or lost): DISCONNECT tells the client to CONNECT again.
            network.send(addr, DISCONNECT)

    def _sleeping(self, client_id: str) -> Channel | None:
        session = self.hub.session(client_id)
        endpoint: Any = session.endpoint if session is not None else None
        # One of this context's channels (not an MQTT connection with that client id).
        if getattr(endpoint, "ctx", None) is self and endpoint.sleeping:
            return endpoint  # type: ignore[no-any-return]
        return None

    def qos_minus_one(self, network: Network, addr: Any, p: Publish) -> None:
        """QoS -1: a connectionless publish to a predefined id or a short name."""
        if p.topic_type == TopicIdType.PREDEFINED:
            topic = self.predefined.by_id.get(p.topic_id)
        elif p.topic_type == TopicIdType.SHORT:
            topic = short_name(p.topic_id)
        else:
            topic = None
        if topic is None:
            self.counters.frames_dropped += 1
            return
        settings = self.settings
        hub = self.hub
        # No session, so no publish_from: the same checks, made here.
        if (settings.message_size_limit and len(p.data) > settings.message_size_limit) or (
            p.retain and not hub.settings.retain_available
        ):
            return
        username = network.identity(addr)
        if username is None:
            if network.requires_identity:
                return
            username = settings.default_username
        client = ClientInfo("", "mqttsn", network.describe(addr), username, network.listener,
                            transport=network.transport_name)
        message = Message(topic, p.data, 0, p.retain)

        def publish(result: AuthResult) -> None:
            if not result:
                return
            if not hub.authorize(client, WRITE, topic):  # type: ignore[arg-type]
                hub.denials.denied(client, WRITE, topic)  # type: ignore[arg-type]
                return
            self.counters.qos_minus_one += 1
            self.traffic.received[-1] += 1
            message.source = client
            hub.publish(message)

        result = ALLOWED if client.username is not None else hub.authenticate(client, None)
        if isinstance(result, Deferred):
            result.addCallback(publish).addErrback(lambda f: self.log.failure("QoS -1 authentication failed", f))
        else:
            publish(result)


_CONTEXTS: weakref.WeakKeyDictionary[Hub, MQTTSNContext] = weakref.WeakKeyDictionary()


def context_for(hub: Hub, config: Config, clock: IReactorTime, channel_factory: ChannelFactory,
                verbose: bool = False) -> MQTTSNContext:
    """The hub's one MQTT-SN context, created by whichever transport starts first."""
    ctx = _CONTEXTS.get(hub)
    if ctx is None:
        settings = MQTTSNSettings.from_config(config, verbose)
        ctx = _CONTEXTS[hub] = MQTTSNContext(hub, settings, clock, channel_factory)
    return ctx
