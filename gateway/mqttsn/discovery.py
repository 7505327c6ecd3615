"""Gateway discovery: periodic ADVERTISE, and GWINFO in answer to SEARCHGW.

ADVERTISE carries the seconds until the next one, so clients can tell a gateway that
went away. It goes to every network's broadcast (XBee broadcast frames, a plain
serial line, a UDP multicast group when one is configured). SEARCHGW is answered at
once, from the socket the client will then talk to: the Paho clients take the GWINFO
source address as the gateway's address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall

from gateway.mqttsn.codec import Advertise, GwInfo, SearchGw, encode

if TYPE_CHECKING:
    from gateway.mqttsn.context import MQTTSNContext, Network


class Discovery:
    """One per context: the ADVERTISE timer and the SEARCHGW answer."""

    def __init__(self, ctx: MQTTSNContext) -> None:
        self.ctx = ctx
        self._call: IDelayedCall | None = None
        self.advertised = 0

    @property
    def gwinfo(self) -> bytes:
        return encode(GwInfo(self.ctx.settings.gateway_id))

    def start(self) -> None:
        interval = self.ctx.settings.advertise_interval
        if interval > 0 and self._call is None:
            # The first ADVERTISE goes out as soon as the networks are up.
            self._call = self.ctx.clock.callLater(0, self.advertise)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def advertise(self) -> None:
        settings = self.ctx.settings
        interval = settings.advertise_interval
        data = encode(Advertise(settings.gateway_id, interval))
        for network in self.ctx.networks:
            network.broadcast(data)
        self.advertised += 1
        self._call = self.ctx.clock.callLater(interval, self.advertise)

    def handle(self, network: Network, addr: Any, msg: object) -> bool:
        """Answer discovery traffic; False if ``msg`` is something else."""
        if type(msg) is SearchGw:
            network.answer_searchgw(addr, self.gwinfo)
            return True
        # ADVERTISE and GWINFO from other gateways or clients: nothing to do.
        return type(msg) in (Advertise, GwInfo)
