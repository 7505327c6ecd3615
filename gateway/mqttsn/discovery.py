"""Gateway discovery: periodic ADVERTISE, and GWINFO in answer to SEARCHGW.

ADVERTISE carries the seconds until the next one, so clients can tell a gateway that
went away. It goes to every network's broadcast (XBee broadcast frames, a plain
serial line, a UDP multicast group when one is configured). SEARCHGW is answered at
once, from the socket the client will then talk to: the Paho clients take the GWINFO
source address as the gateway's address.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from gateway.mqttsn.codec import Advertise, GwInfo, SearchGw, encode

if TYPE_CHECKING:
    from gateway.mqttsn.settings import MQTTSNSettings


class Broadcasting(Protocol):
    """What discovery needs of a network (``gateway.mqttsn.context.Network``)."""

    def broadcast(self, data: bytes) -> None: ...

    def answer_searchgw(self, addr: Any, gwinfo: bytes) -> None: ...


class Discovery:
    """One per context: the ADVERTISE timer and the SEARCHGW answer."""

    def __init__(self, settings: MQTTSNSettings, clock: IReactorTime,
                 networks: Sequence[Broadcasting]) -> None:
        self.settings = settings
        self.clock = clock
        self.networks = networks  # the context's list, as it changes
        self._call: IDelayedCall | None = None
        self.advertised = 0

    @property
    def gwinfo(self) -> bytes:
        return encode(GwInfo(self.settings.gateway_id))

    def start(self) -> None:
        interval = self.settings.advertise_interval
        if interval > 0 and self._call is None:
            # The first ADVERTISE goes out as soon as the networks are up.
            self._call = self.clock.callLater(0, self.advertise)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def advertise(self) -> None:
        settings = self.settings
        interval = settings.advertise_interval
        data = encode(Advertise(settings.gateway_id, interval))
        for network in self.networks:
            network.broadcast(data)
        self.advertised += 1
        self._call = self.clock.callLater(interval, self.advertise)

    def handle(self, network: Broadcasting, addr: Any, msg: object) -> bool:
        """Answer discovery traffic; False if ``msg`` is something else."""
        if type(msg) is SearchGw:
            network.answer_searchgw(addr, self.gwinfo)
            return True
        # ADVERTISE and GWINFO from other gateways or clients: nothing to do.
        return type(msg) in (Advertise, GwInfo)
