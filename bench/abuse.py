"""What hostile clients cost a broker: memory, open sockets, log lines, latency.

Usage (from the repository root)::

    python bench/abuse.py [--only first,connect,filters,garbage]
                          [--brokers mqttgateway,mosquitto] [--config-line LINE ...]

first    14 connections each announce a 100 MB packet that is not CONNECT
         (PUBLISH, SUBACK, PUBACK, ...) as their first packet and stream its body
         for STREAM_SECONDS, reconnecting when closed: peak RSS, sockets still
         open one second later
connect  4 connections each announce a 240 MB CONNECT and stream it (reconnecting
         when closed), while one client measures QoS 1 round trips: peak RSS,
         round trip p50 / max
filters  one client subscribes to 50 filters of 65,535 bytes with 10,000 levels,
         then 50 of the deepest and longest filters allowed (200 '/', 65,535
         bytes): RSS after each step and after the client left
garbage  10,000 connections send 16 random bytes each: lines the broker logged

Each scenario starts a fresh broker (``bench/brokers.py``: one loopback listener,
anonymous clients, plus ``--config-line``s). RSS is sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import brokers
import mqttload
import report

HOST = brokers.HOST
STREAM_SECONDS = 12.0
CHUNK = bytes(64 * 1024)
FIRST_BYTES = (0x30, 0x90, 0x40, 0x50, 0x62, 0x70, 0x82, 0xA2, 0xB0, 0x20, 0x32, 0x34, 0x92, 0xC0)
SCENARIOS = ("first", "connect", "filters", "garbage")


class Peak:
    """Samples a broker's RSS in a thread; ``max`` is the highest seen."""

    def __init__(self, broker: brokers.Broker) -> None:
        self.broker = broker
        self.max = broker.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.max = max(self.max, self.broker.rss())
            except Exception:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.max


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def stream(first: int, announced: int, seconds: float, opened: list[socket.socket]) -> None:
    """For ``seconds``: announce ``announced`` bytes after ``first`` and send zeros; when
    the broker closes the connection, open another one and start again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection((HOST, PORT[0]))
        except OSError:
            continue
        opened.append(sock)
        try:
            sock.sendall(bytes([first]) + mqttload.varint(announced))
            sent = 0
            while sent < announced and time.monotonic() < deadline:
                sock.sendall(CHUNK)
                sent += len(CHUNK)
        except OSError:
            sock.close()


def is_open(sock: socket.socket) -> bool:
    """False once the broker closed (or reset) this connection."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


PORT = [0]


def scenario_first(broker: brokers.Broker) -> list[str]:
    base = broker.rss()
    peak = Peak(broker)
    opened: list[socket.socket] = []
    threads = [threading.Thread(target=stream, args=(b, 100_000_000, STREAM_SECONDS, opened))
               for b in FIRST_BYTES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)
    last = [s for s in opened if s.fileno() >= 0]
    still = sum(is_open(s) for s in last)
    top = peak.stop()
    for s in opened:
        s.close()
    return [f"RSS before {mib(base)}, peak {mib(top)} (+{mib(top - base)}); "
            f"{len(opened)} connections in {STREAM_SECONDS:.0f} s",
            f"sockets still open 1 s after streaming: {still} of {len(last)}"]


def qos1_prober(stop: threading.Event, rtts: list[float]) -> None:
    sock = mqttload.session(HOST, PORT[0], "abuse-probe")
    pid = 0
    while not stop.is_set():
        pid = pid % 65535 + 1
        t0 = time.perf_counter()
        sock.sendall(mqttload.publish("abuse/probe", b"x", qos=1, packet_id=pid))
        first, _ = mqttload.read_packet(sock)
        rtts.append(time.perf_counter() - t0)
        time.sleep(0.01)
    sock.close()


def scenario_connect(broker: brokers.Broker) -> list[str]:
    base = broker.rss()
    stop = threading.Event()
    rtts: list[float] = []
    prober = threading.Thread(target=qos1_prober, args=(stop, rtts), daemon=True)
    prober.start()
    time.sleep(0.5)
    idle_rtts = list(rtts)
    peak = Peak(broker)
    opened: list[socket.socket] = []
    threads = [threading.Thread(target=stream, args=(0x10, 240_000_000, STREAM_SECONDS, opened))
               for _ in range(4)]
    mark = len(rtts)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    prober.join()
    top = peak.stop()
    for s in opened:
        s.close()
    under = rtts[mark:] or [float("nan")]
    return [f"RSS before {mib(base)}, peak {mib(top)} (+{mib(top - base)}); "
            f"{len(opened)} connections in {STREAM_SECONDS:.0f} s",
            f"QoS 1 round trip idle p50 {statistics.median(idle_rtts) * 1e3:.1f} ms; "
            f"under load p50 {statistics.median(under) * 1e3:.1f} ms, "
            f"max {max(under) * 1e3:.1f} ms ({len(under)} round trips)"]


def deep_filter(levels: int, size: int, i: int) -> str:
    """A filter of exactly ``size`` bytes with ``levels`` levels, unique by ``i``."""
    head = f"f{i}"
    seps = levels - 1
    fill = size - len(head) - seps
    per, extra = divmod(fill, levels - 1) if levels > 1 else (fill, 0)
    parts = [head] + ["x" * (per + (1 if k < extra else 0)) for k in range(levels - 1)]
    text = "/".join(parts)
    assert len(text) == size and text.count("/") == seps, (len(text), text.count("/"))
    return text


def subscribe_all(filters: list[str]) -> tuple[int, socket.socket]:
    """Subscribe one per SUBSCRIBE on one connection; return how many were granted."""
    sock = mqttload.session(HOST, PORT[0], "abuse-filters")
    granted = 0
    for i, f in enumerate(filters, 1):
        try:
            sock.sendall(mqttload.subscribe(i, [(f, 0)]))
            first, body = mqttload.read_packet(sock)
        except (OSError, ConnectionError):
            break
        granted += first == mqttload.SUBACK and body[2:] != b"\x80"
    return granted, sock


def scenario_filters(broker: brokers.Broker) -> list[str]:
    out = []
    for label, levels in (("10,000 levels", 10_000), ("201 levels", 201)):
        base = broker.rss()
        filters = [deep_filter(levels, 65535, i) for i in range(50)]
        t0 = time.monotonic()
        granted, sock = subscribe_all(filters)
        took = time.monotonic() - t0
        time.sleep(0.5)
        during = broker.rss()
        sock.close()
        time.sleep(1.0)
        after = broker.rss()
        out.append(f"50 filters, 65,535 bytes, {label}: {granted} granted in {took:.2f} s; "
                   f"RSS {mib(base)} -> {mib(during)} (+{mib(during - base)}), "
                   f"after the client left {mib(after)} (+{mib(after - base)})")
    return out


def scenario_garbage(broker: brokers.Broker) -> list[str]:
    before = len(broker.log.read_bytes().splitlines())
    rng = os.urandom
    t0 = time.monotonic()
    for _ in range(10_000):
        try:
            with socket.create_connection((HOST, PORT[0])) as s:
                s.sendall(rng(16))
        except OSError:
            pass
    took = time.monotonic() - t0
    time.sleep(11.0)  # past a summary interval
    lines = broker.log.read_bytes().splitlines()[before:]
    size = sum(len(x) + 1 for x in lines)
    return [f"10,000 garbage connections in {took:.1f} s: {len(lines)} log lines ({size:,} bytes)"]


RUNNERS: dict[str, Callable[[brokers.Broker], list[str]]] = {
    "first": scenario_first, "connect": scenario_connect,
    "filters": scenario_filters, "garbage": scenario_garbage,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--brokers", default="mqttgateway")
    parser.add_argument("--config-line", action="append", default=[])
    parser.add_argument("--out", type=Path, help="results file (default bench/results/abuse-DATE.txt)")
    args = parser.parse_args()
    say = report.Tee(args.out or report.results_file("abuse"))
    say(report.header())
    brokers.CONFIG += "".join(line + "\n" for line in args.config_line)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.brokers.split(","):
            for scenario in args.only.split(","):
                broker = brokers.start(name, Path(tmp))
                PORT[0] = broker.port
                try:
                    lines = RUNNERS[scenario](broker)
                finally:
                    alive = broker.alive()
                    broker.stop()
                for line in lines:
                    say(f"{name:12} {scenario:8} {line}")
                if not alive:
                    say(f"{name:12} {scenario:8} broker died: {broker.log_tail()}")
    say.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
