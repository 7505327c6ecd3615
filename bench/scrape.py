"""What a look at the gateway costs: one Prometheus scrape, one status page poll, one
``/api/v1/systree``, with N sessions in the hub (mqttgateway only: Mosquitto 2.0 has
no HTTP API to compare with, and these run outside the message path).

Usage (from the repository root)::

    python bench/scrape.py [--sessions 10000] [--repeat 20]

The hub is real, the sessions are attached to endpoints that drop what they are sent
(one in five offline with a queued QoS 1 message); each client has two subscriptions.
Prints the median and worst time of each request body and its size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import task  # noqa: E402

from gateway.hub.api import ClientInfo, Message, Subscription  # noqa: E402
from gateway.hub.hub import Hub  # noqa: E402
from gateway.web import mosquitto  # noqa: E402
from gateway.web.metrics import Exposition  # noqa: E402
from gateway.web.status import TopicRates, status  # noqa: E402


class Sink:
    def send_publish(self, *args: object) -> bool:
        return True

    def send_pubrel(self, packet_id: int) -> None:
        pass

    def close(self, reason: object) -> None:
        pass


class Listener:
    def __init__(self, protocol: str, port: int) -> None:
        self.protocol, self.port, self.certfile, self.keyfile = protocol, port, None, None


def populated(n: int) -> Hub:
    clock = task.Clock()
    clock.advance(time.time())
    hub = Hub(clock=clock)
    listeners = [Listener("mqtt", 1883), Listener("mqttsn", 1884), Listener("coap", 5683)]
    for i in range(n):
        listener = listeners[i % 3]
        client = ClientInfo(f"client-{i}", listener.protocol, f"10.0.{i // 250}.{i % 250}:4000",
                            None, listener)
        session, _ = hub.connect(client, Sink(), True, None)
        for f in (f"plant/{i % 50}/#", f"cmd/{i}"):
            hub.subscribe(session, f, Subscription(1))
        if i % 5 == 0:
            hub.disconnect(session, graceful=True)
            hub.publish(Message(f"cmd/{i}", b"queued", 1, False))
        stats = hub.stats.traffic_of(listener.protocol)
        stats.received[i % 3] += 1
    return hub


def timed(fn, repeat: int) -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        body = fn()
        times.append(time.perf_counter() - start)
        size = len(body)
    return statistics.median(times), max(times), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    hub = populated(args.sessions)
    exposition = Exposition(hub)
    rates = TopicRates(hub, hub.clock)
    cases = {
        "/metrics": lambda: exposition.render(None)[0],
        "/api/status": lambda: json.dumps(status(hub, rates)).encode(),
        "/api/v1/systree": lambda: json.dumps(mosquitto.systree(hub)).encode(),
    }
    print(f"{args.sessions} sessions ({len(hub.sessions)} in the hub), {args.repeat} runs each")
    for name, fn in cases.items():
        median, worst, size = timed(fn, args.repeat)
        print(f"{name:18} median {median * 1000:7.2f} ms   max {worst * 1000:7.2f} ms   {size:8d} bytes")
    rates.stop()


if __name__ == "__main__":
    main()
