"""paho-rtt: publish -> on_message round trips of one paho-mqtt client.

The client most users have, used the way most use it: paho-mqtt 2.x, MQTT 3.1.1,
the network loop in its own thread (``loop_start``) and Nagle's algorithm left on,
as paho leaves it.  For QoS 0, 1 and 2 in turn, a fresh client subscribes to its
own topic at that QoS and publishes one message at a time, waiting for it to come
back before sending the next; the time from ``publish()`` to ``on_message`` is
what a request/response application on one connection sees.  Unlike the raw
``qos1`` scenario, nothing is tuned on the client side: a broker that leaves the
ACK of the client's last packet (its PUBACK or PUBCOMP for the delivery) to the
kernel's delayed-ACK timer makes paho's next PUBLISH wait for it (40 ms on Linux).
``ws-rtt`` (``bench/run.py``) is the same over WebSockets (paho's websocket transport).

paho-pub (``oneway``): one paho client publishes QoS 0 at a fixed pace and reads
nothing, a second one subscribes; the time from ``publish()`` to the second's
``on_message``.  The publisher's Nagle holds each message until the broker has
ACKed the one before, so a broker whose ACKs wait for the kernel's delayed-ACK
timer shows it here.  paho-mixed: the same, while the publisher also receives a
QoS 0 message every ``CHATTER`` seconds from a third client, so the broker writes
to it too (Linux then delays the ACKs of what it reads from it).

Each level runs ``count`` round trips after ``WARMUP`` unmeasured ones, or stops
after ``seconds``, whichever comes first.  A message that does not come back
within ``TIMEOUT`` seconds, or comes back altered, fails the scenario.
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Any, Callable

LEVELS = (0, 1, 2)
WARMUP = 10
TIMEOUT = 10.0  # seconds for a SUBACK or a round trip; only to avoid hangs


def roundtrips(host: str, port: int, qos: int, count: int, seconds: float,
               payload_len: int, transport: str = "tcp") -> list[float]:
    """Round-trip times in seconds at ``qos``, one message at a time."""
    import paho.mqtt.client as mqtt

    topic = f"bench/rtt/{qos}"
    expected = [b""]
    arrived = threading.Event()
    subscribed = threading.Event()
    wrong: list[bytes] = []

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if msg.payload == expected[0]:
            arrived.set()
        else:
            wrong.append(msg.payload[:8])

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-rtt-{qos}",
                         protocol=mqtt.MQTTv311, transport=transport)
    if transport == "websockets":
        client.ws_set_options(path="/mqtt")
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    latencies: list[float] = []
    try:
        client.subscribe(topic, qos)
        if not subscribed.wait(TIMEOUT):
            raise TimeoutError(f"QoS {qos}: no SUBACK in {TIMEOUT:g} s")
        pad = b"x" * max(0, payload_len - 8)
        deadline = None
        for i in range(WARMUP + count):
            if i == WARMUP:
                deadline = time.monotonic() + seconds
            payload = struct.pack("!Q", i) + pad
            expected[0] = payload
            arrived.clear()
            t = time.perf_counter()
            client.publish(topic, payload, qos)
            if not arrived.wait(TIMEOUT):
                raise TimeoutError(f"QoS {qos}: message {i} not back in {TIMEOUT:g} s")
            if deadline is not None:
                latencies.append(time.perf_counter() - t)
                if time.monotonic() > deadline:
                    break
            if wrong:
                raise ValueError(f"QoS {qos}: unexpected message {wrong[0]!r}")
    finally:
        client.disconnect()
        client.loop_stop()
    return latencies


def _report(barrier: Any, results: Any, measure: Callable[[], Any]) -> None:
    """In a forked generator process: wait for the start, then put what ``measure``
    returns, or why it failed, to ``results``."""
    try:
        barrier.wait()
        out = measure()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        barrier.abort()
        results.put({"who": "paho client", "error": f"{type(exc).__name__}: {exc}"})
        return
    results.put({"who": "paho client", "latencies": out})


def worker(barrier: Any, results: Any, host: str, port: int, count: int, seconds: float,
           payload_len: int, transport: str = "tcp") -> None:
    """Forked generator process: every level in turn, latencies to ``results``."""
    _report(barrier, results, lambda: {
        qos: roundtrips(host, port, qos, count, seconds, payload_len, transport)
        for qos in LEVELS})


ONEWAY_INTERVAL = 0.002  # seconds between the publisher's messages
CHATTER = 0.005          # paho-mixed: seconds between the messages the publisher receives


def oneway(host: str, port: int, seconds: float, payload_len: int,
           chatter: float = 0.0) -> list[float]:
    """Publish-to-delivery times in seconds of paced QoS 0 messages between two
    paho clients (the first ``WARMUP`` left out); with ``chatter`` the publisher
    also receives a message that often."""
    import paho.mqtt.client as mqtt

    topic = "bench/oneway"
    latencies: list[float] = []
    subscribed = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        latencies.append(time.perf_counter() - struct.unpack("!d", msg.payload[:8])[0])

    def client(name: str) -> Any:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                        protocol=mqtt.MQTTv311)
        c.connect(host, port, keepalive=60)
        c.loop_start()
        return c

    sub = client("bench-oneway-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    pub = client("bench-oneway-pub")
    talker = client("bench-oneway-talker") if chatter else None
    stop = threading.Event()
    try:
        sub.subscribe(topic, 0)
        if not subscribed.wait(TIMEOUT):
            raise TimeoutError(f"no SUBACK in {TIMEOUT:g} s")
        if talker is not None:
            pub.subscribe(topic + "/chatter", 0)

            def talk() -> None:
                while not stop.wait(chatter):
                    talker.publish(topic + "/chatter", b"c" * 16, 0)

            threading.Thread(target=talk, daemon=True).start()
            time.sleep(0.2)
        pad = b"x" * max(0, payload_len - 8)
        count = WARMUP + int(seconds / ONEWAY_INTERVAL)
        due = time.perf_counter()
        for _ in range(count):
            pub.publish(topic, struct.pack("!d", time.perf_counter()) + pad, 0)
            due += ONEWAY_INTERVAL
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        deadline = time.monotonic() + TIMEOUT
        while len(latencies) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        if len(latencies) < count:
            raise TimeoutError(f"{count - len(latencies)} of {count} messages not delivered")
    finally:
        stop.set()
        for c in (pub, sub, talker):
            if c is not None:
                c.disconnect()
                c.loop_stop()
    return latencies[WARMUP:]


def oneway_worker(barrier: Any, results: Any, host: str, port: int, seconds: float,
                  payload_len: int, chatter: float = 0.0) -> None:
    """Forked generator process for ``oneway``."""
    _report(barrier, results, lambda: oneway(host, port, seconds, max(payload_len, 8), chatter))
