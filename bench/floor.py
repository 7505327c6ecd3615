"""The least a Python broker does: a QoS 0 forwarder, the floor under the gateway's figures.

Usage (started by bench/run.py as the ``floor-asyncio``, ``floor-uvloop`` and
``floor-twisted`` columns; by hand)::

    python bench/floor.py [--uvloop | --twisted] -c CONF

It reads the ``listener PORT HOST`` line of a Mosquitto-syntax ``CONF``, answers
CONNECT, SUBSCRIBE and PINGREQ as a level 4 broker does, and sends every PUBLISH
it reads to every connection that subscribed, whatever the topic. No ACL, no
sessions, no QoS above 0, no topic matching: it is a reference, not a broker. It
runs only in ``lowrate`` (one message per wake-up), where it is the floor of a
Python broker's CPU per message; at full speed it writes each packet on its own,
so it is no floor there.

With asyncio (the default) it is an ``asyncio.Protocol`` on the stock event loop:
what any asyncio broker pays per wake-up before doing a broker's work; ``--uvloop``
runs the same protocol on uvloop's loop (the gateway's default). With
``--twisted`` it is a Twisted ``Protocol`` on Twisted's asyncio reactor (stock
loop), writing through ``transport.write`` as a plain Twisted application does.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import mqttload

CONNACK = b"\x20\x02\x00\x00"
PINGRESP = b"\xd0\x00"


class Forwarder:
    """The protocol logic both loops share; ``send`` is the loop's write."""

    subscribers: list[Any] = []

    def start(self) -> None:
        self.buffer = bytearray()

    def stop(self) -> None:
        if self in self.subscribers:
            self.subscribers.remove(self)

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def received(self, data: bytes) -> None:
        self.buffer += data
        for first, body in mqttload.split_packets(self.buffer):
            kind = first >> 4
            if kind == 3:
                packet = mqttload.packet(first, body)
                for sub in self.subscribers:
                    sub.send(packet)
            elif kind == 1:
                self.send(CONNACK)
            elif kind == 8:
                self.subscribers.append(self)
                self.send(b"\x90\x03" + body[:2] + b"\x00")
            elif kind == 12:
                self.send(PINGRESP)


class AsyncioForwarder(asyncio.Protocol, Forwarder):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.start()

    def data_received(self, data: bytes) -> None:
        self.received(data)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop()


def listener(conf: str) -> tuple[str, int]:
    with open(conf, encoding="utf-8") as fh:
        for line in fh:
            words = line.split()
            if words[:1] == ["listener"]:
                return (words[2] if len(words) > 2 else "127.0.0.1"), int(words[1])
    raise SystemExit(f"{conf}: no listener line")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", dest="conf", required=True, help="Mosquitto-syntax config file")
    kind = ap.add_mutually_exclusive_group()
    kind.add_argument("--uvloop", action="store_true", help="asyncio protocol on uvloop's loop")
    kind.add_argument("--twisted", action="store_true", help="Twisted's asyncio reactor")
    args = ap.parse_args(argv)
    host, port = listener(args.conf)
    if not args.twisted:
        if args.uvloop:
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        loop.run_until_complete(loop.create_server(AsyncioForwarder, host, port))
        loop.run_forever()
        return
    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import protocol, reactor

    class TwistedForwarder(protocol.Protocol, Forwarder):
        def connectionMade(self) -> None:
            self.start()

        def dataReceived(self, data: bytes) -> None:
            self.received(data)

        def send(self, data: bytes) -> None:
            self.transport.write(data)

        def connectionLost(self, reason: Any = None) -> None:
            self.stop()

    reactor.listenTCP(port, protocol.Factory.forProtocol(TwistedForwarder), interface=host)
    reactor.run()


if __name__ == "__main__":
    main()
