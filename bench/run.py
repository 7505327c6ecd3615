"""Benchmark mqttgateway against Mosquitto with identical MQTT 3.1.1 load.

Usage (from the repository root)::

    python bench/run.py [--duration S] [--warmup S] [--only fanin,qos1]
                        [--brokers mqttgateway,mosquitto] [--connections N]

Each scenario starts a fresh broker on a free 127.0.0.1 port (the same
generated config for both brokers), runs the load from forked generator
processes, measures a fixed window after a warm-up, and stops the broker.

fanin    QoS 0, 8 publisher processes -> 1 subscriber on ``bench/+/data``
fanout   QoS 0, 1 publisher -> 50 subscribers (3 processes) on one topic
qos1     QoS 1 round trip on one session, 20 in flight; p50/p99 latency
paho-rtt a paho-mqtt client (loop_start thread, Nagle on) publishing to its own
         topic one message at a time at QoS 0, 1, 2; publish -> on_message
         p50/p99 (see bench/paho_rtt.py)
idle     open N idle sessions (keepalive 600) from 4 processes, 12
         handshakes in flight each; connections/s and RSS per session
sn-qos0, sn-qos1, sn-idle
         MQTT-SN over UDP, mqttgateway only: see bench/mqttsn_load.py

The table shows both brokers and the ratio mqttgateway/mosquitto.  CPU
figures are % of one core, sampled with psutil before/after the window:
broker CPU seconds per 100k messages (per 1k connections for idle), the
busiest generator process ("gen max"), all generator processes, and
"other": everything else the host ran meanwhile.  ``!`` marks a generator
process >= 90 % busy (the generator, not the broker, may be the limit), a
host busy with other work (numbers are then noisy), or a failed sanity
check.  QoS 0 loss is only reported; QoS 1 loss or duplication fails the
scenario.  With defaults, both brokers and all scenarios take ~3 minutes.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

import brokers
import mqttload
import coap_load
import mqttsn_load
import paho_rtt

HOST = brokers.HOST
SATURATED = 90.0  # % of one core: a generator process this busy is flagged
NOISY = 25.0      # % of one core used by unrelated processes: flagged
CORES = psutil.cpu_count() or 1
SCENARIOS = ("fanin", "fanout", "qos1", "paho-rtt", "ws-rtt", "idle")
CTX = mp.get_context("fork")


class ScenarioError(Exception):
    """A scenario could not complete."""


@dataclass
class Metric:
    """One table cell: value plus how to print it."""

    label: str
    value: float | None
    fmt: str = "{:,.0f}"
    flag: bool = False
    ratio: bool = True

    def text(self) -> str:
        if self.value is None:
            return "-"
        return self.fmt.format(self.value) + ("!" if self.flag else "")


class Pool:
    """Generator processes sharing a start barrier and a result queue."""

    def __init__(self, n: int) -> None:
        self.barrier = CTX.Barrier(n + 1)
        self.results: Any = CTX.Queue()
        self.procs: list[Any] = []
        self.n = n

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        p = CTX.Process(target=target, args=args, daemon=True)
        p.start()
        self.procs.append(p)

    def ready(self, timeout: float = 30.0) -> None:
        """Wait until every worker has its sessions up (releases them)."""
        try:
            self.barrier.wait(timeout)
        except threading.BrokenBarrierError:
            errors = [r.get("error") for r in self.drain(1.0) if r.get("error")]
            self.kill()
            raise ScenarioError("; ".join(errors) or "workers failed to start") from None

    def drain(self, timeout: float) -> list[dict[str, Any]]:
        """Collect up to one result per worker (before joining them)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < self.n:
            try:
                out.append(self.results.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
        return out

    def cpu(self) -> list[float]:
        """CPU seconds of each live worker."""
        return brokers.cpu_of(self.procs, math.nan)

    def kill(self, grace: float = 2.0) -> None:
        """Join the workers; SIGKILL those still running after ``grace`` s."""
        deadline = time.monotonic() + grace
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join()


@dataclass
class Snap:
    """State sampled at one end of the measurement window."""

    t: float
    count: int
    broker_cpu: float
    gen_cpu: list[float]
    host_busy: float
    rss: int
    offered: int = 0


def snap(broker: brokers.Broker, pool: Pool, counter: Callable[[], int],
         offered: Callable[[], int] | None = None) -> Snap:
    if not broker.alive():
        raise ScenarioError(f"broker exited with status {broker.proc.returncode}")
    return Snap(time.monotonic(), counter(), broker.cpu(), pool.cpu(), brokers.host_busy(),
                broker.rss(), offered() if offered else 0)


def window(broker: brokers.Broker, pool: Pool, counter: Callable[[], int],
           args: argparse.Namespace, unit: str, measuring: Any = None,
           offered: Callable[[], int] | None = None) -> list[Metric]:
    """Warm up, measure ``args.duration`` seconds; rate/CPU/generator metrics.

    ``offered`` counts messages the publishers got into the broker's socket;
    its rate is reported next to the delivered rate.
    """
    time.sleep(args.warmup)
    a = snap(broker, pool, counter, offered)
    if measuring is not None:
        measuring.value = 1
    time.sleep(args.duration)
    b = snap(broker, pool, counter, offered)
    if measuring is not None:
        measuring.value = 0
    metrics = cpu_metrics(a, b, unit)
    if offered:
        metrics.insert(1, Metric("published msgs/s", (b.offered - a.offered) / (b.t - a.t)))
    metrics.insert(-3, Metric("broker RSS MiB at end", b.rss / 2**20, "{:.1f}"))
    return metrics


def cpu_metrics(a: Snap, b: Snap, unit: str) -> list[Metric]:
    """Rate, broker CPU and generator CPU over the window a..b.

    CPU figures are % of one core.  "other" is whatever else ran on the
    host meanwhile (the broker and generator subtracted); a large value
    means the numbers were taken on a busy machine.
    """
    dt = b.t - a.t
    n = b.count - a.count
    bcpu = b.broker_cpu - a.broker_cpu
    gen = [(y - x) / dt * 100 for x, y in zip(a.gen_cpu, b.gen_cpu)]
    gmax = max(gen) if gen else math.nan
    other = max(0.0, (b.host_busy - a.host_busy - bcpu) / dt * 100 - sum(gen))
    per = 1_000 if unit == "conns" else 100_000
    return [
        Metric(f"{unit}/s", n / dt),
        Metric(f"broker CPU s/{per // 1000}k {unit}", bcpu / n * per if n else None, "{:.3f}"),
        Metric("broker CPU %", bcpu / dt * 100, "{:.0f}"),
        Metric("gen max proc CPU %", gmax, "{:.0f}", gmax >= SATURATED, ratio=False),
        Metric(f"gen total CPU % ({len(gen)} procs)", sum(gen), "{:.0f}", ratio=False),
        Metric(f"other procs CPU % (of {CORES * 100})", other, "{:.0f}",
               other >= NOISY, ratio=False),
    ]


def settle(counter: Callable[[], int], quiet: float = 1.0, timeout: float = 15.0) -> None:
    """Wait until ``counter`` has not moved for ``quiet`` s (backlog drained)."""
    last, since = counter(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = counter()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def qos0(broker: brokers.Broker, args: argparse.Namespace, publishers: int,
         sub_groups: list[list[int]], topic: Callable[[int], str],
         topic_filter: str, unit: str) -> list[Metric]:
    """Shared body of fanin/fanout: QoS 0 publishers -> counting subscribers."""
    nsubs = sum(len(g) for g in sub_groups)
    sent = CTX.RawArray("q", publishers)
    received = CTX.RawArray("q", nsubs)
    stop_pub, stop_sub = CTX.Event(), CTX.Event()
    pool = Pool(publishers + len(sub_groups))
    for group in sub_groups:
        pool.spawn(mqttload.subscriber, HOST, broker.port, group, topic_filter,
                   pool.barrier, stop_sub, received, pool.results)
    # Subscriptions must be in place before anything is published.
    time.sleep(0.5)
    for i in range(publishers):
        pool.spawn(mqttload.publisher, HOST, broker.port, i, topic(i), args.payload,
                   args.batch, pool.barrier, stop_pub, sent, pool.results)
    pool.ready()
    try:
        metrics = window(broker, pool, lambda: sum(received), args, unit,
                         offered=lambda: sum(sent))
    finally:
        stop_pub.set()
        settle(lambda: sum(received))
        stop_sub.set()
        results = pool.drain(5.0)
        pool.kill()
    errors = [r["error"] for r in results if r.get("error")]
    total_sent, total_recv = sum(sent), sum(received)
    expected = total_sent * nsubs  # every subscriber matches every topic
    metrics += [
        Metric("sanity: published", total_sent, ratio=False),
        Metric("sanity: delivered", total_recv, ratio=False),
        Metric("sanity: not delivered %",
               (expected - total_recv) / expected * 100 if expected else None,
               "{:.1f}", ratio=False),
    ]
    if errors:
        raise ScenarioError("; ".join(errors))
    return metrics


def fanin(broker: brokers.Broker, args: argparse.Namespace) -> list[Metric]:
    return qos0(broker, args, 8, [[0]], lambda i: f"bench/{i}/data", "bench/+/data",
                "msgs")


def fanout(broker: brokers.Broker, args: argparse.Namespace) -> list[Metric]:
    groups = [list(range(g, 50, 3)) for g in range(3)]
    return qos0(broker, args, 1, groups, lambda i: "bench/fanout", "bench/fanout",
                "deliveries")


def qos1(broker: brokers.Broker, args: argparse.Namespace) -> list[Metric]:
    counters = CTX.RawArray("q", 2)
    measuring = CTX.RawValue("b", 0)
    stop = CTX.Event()
    pool = Pool(1)
    pool.spawn(mqttload.roundtrip, HOST, broker.port, args.window, args.payload,
               not args.no_quickack, pool.barrier, stop, measuring, counters, pool.results)
    pool.ready()
    try:
        metrics = window(broker, pool, lambda: counters[0], args, "msgs", measuring)
    finally:
        stop.set()
        results = pool.drain(10.0)
        pool.kill()
    if not results:
        raise ScenarioError("qos1 client did not report")
    r = results[0]
    if r.get("error"):
        raise ScenarioError(r["error"])
    lat = sorted(r["latencies"])

    def pct(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else None

    metrics[1:1] = [Metric("latency p50 ms", pct(50), "{:.3f}"),
                    Metric("latency p99 ms", pct(99), "{:.3f}")]
    metrics += [
        Metric("sanity: published", r["sent"], ratio=False),
        Metric("sanity: delivered", r["delivered"], ratio=False),
        Metric("sanity: lost/dup/reordered", r["lost"] + r["dups"] + r["reordered"],
               flag=bool(r["lost"] or r["dups"] or r["reordered"]), ratio=False),
        Metric("sanity: PUBACKs missing", r["sent"] - r["acked"],
               flag=r["sent"] != r["acked"], ratio=False),
    ]
    if r["lost"] or r["dups"]:
        raise ScenarioError(f"QoS 1 loss: lost={r['lost']} dup={r['dups']} "
                            f"(sent {r['sent']}, delivered {r['delivered']})")
    return metrics


def paho_roundtrip(broker: brokers.Broker, args: argparse.Namespace,
                   transport: str = "tcp") -> list[Metric]:
    pool = Pool(1)
    port = broker.ws_port if transport == "websockets" else broker.port
    pool.spawn(paho_rtt.worker, HOST, port, args.rtt_count, args.duration,
               args.payload, pool.barrier, pool.results, transport)
    pool.ready()
    try:
        results = pool.drain(len(paho_rtt.LEVELS) * (args.duration + 2 * paho_rtt.TIMEOUT))
    finally:
        pool.kill()
    if not results:
        raise ScenarioError("paho client did not report")
    if results[0].get("error"):
        raise ScenarioError(results[0]["error"])
    metrics: list[Metric] = []
    sanity: list[Metric] = []
    for qos, lat in sorted(results[0]["latencies"].items()):
        lat = sorted(lat)
        for p in (50, 99):
            value = lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else None
            metrics.append(Metric(f"QoS {qos} p{p} ms", value, "{:.3f}"))
        sanity.append(Metric(f"sanity: QoS {qos} round trips", len(lat), ratio=False))
    return metrics + sanity


def idle(broker: brokers.Broker, args: argparse.Namespace) -> list[Metric]:
    nproc = 4
    counts = [args.connections // nproc + (i < args.connections % nproc) for i in range(nproc)]
    connected = CTX.RawArray("q", nproc)
    release = CTX.Event()
    pool = Pool(nproc)
    for i, n in enumerate(counts):
        pool.spawn(mqttload.idle, HOST, broker.port, i, n, args.idle_window,
                   pool.barrier, release, connected, pool.results)
    time.sleep(0.5)  # let the broker settle before sampling RSS
    rss0 = broker.rss()
    a = snap(broker, pool, lambda: sum(connected))
    pool.ready()
    results: list[dict[str, Any]] = []
    try:
        results = pool.drain(120.0)
        b = snap(broker, pool, lambda: sum(connected))
        time.sleep(1.0)
        rss1 = broker.rss()
    finally:
        release.set()
        pool.kill()
    errors = [r["error"] for r in results if r.get("error")]
    if errors or len(results) < nproc:
        raise ScenarioError("; ".join(errors) or "idle workers did not report")
    n = sum(connected)
    t0, t1 = min(r["t0"] for r in results), max(r["t1"] for r in results)
    metrics = cpu_metrics(a, b, "conns")
    metrics[0] = Metric("conns/s", n / (t1 - t0))
    metrics[1:1] = [
        Metric("slowest handshake ms", max(r["slowest"] for r in results) * 1000),
        Metric("broker RSS KiB/conn", (rss1 - rss0) / n / 1024, "{:.2f}"),
        Metric("broker RSS MiB before", rss0 / 2**20, "{:.1f}"),
        Metric("broker RSS MiB after", rss1 / 2**20, "{:.1f}"),
    ]
    metrics.append(Metric("sanity: connected", n, ratio=False))
    return metrics


RUNNERS: dict[str, Callable[[brokers.Broker, argparse.Namespace], list[Metric]]] = {
    "fanin": fanin, "fanout": fanout, "qos1": qos1, "paho-rtt": paho_roundtrip,
    "ws-rtt": lambda broker, args: paho_roundtrip(broker, args, "websockets"), "idle": idle}


def table(results: dict[str, dict[str, list[Metric] | str]], names: list[str]) -> str:
    """Rows per scenario metric; one column per broker plus the ratio."""
    cols = names + (["ratio"] if names == list(brokers.BROKERS) else [])
    rows: list[list[str]] = [["scenario", "metric", *cols]]
    for scen, per in results.items():
        labels: list[Metric] = next((m for m in per.values() if isinstance(m, list)), [])
        if not labels:
            rows.append([scen, "error", *[str(per.get(n, "-"))[:40] for n in names]])
            continue
        for i, m in enumerate(labels):
            row = [scen if i == 0 else "", m.label]
            vals: list[Metric | None] = []
            for n in names:
                got = per.get(n)
                cell = got[i] if isinstance(got, list) and i < len(got) else None
                vals.append(cell)
                row.append(cell.text() if cell else (got.split(":")[0] if isinstance(got, str)
                                                     else "-"))
            if "ratio" in cols:
                g, q = vals
                ok = m.ratio and g and q and g.value is not None and q.value
                row.append(f"{g.value / q.value:.2f}" if ok else "")  # type: ignore[union-attr,operator]
            rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c < 2 else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured window, s")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up before window, s")
    ap.add_argument("--only", default=",".join(SCENARIOS + mqttsn_load.SCENARIOS
                                               + coap_load.SCENARIOS),
                    help="comma-separated scenarios")
    ap.add_argument("--brokers", default=",".join(brokers.BROKERS))
    ap.add_argument("--connections", type=int, default=5000, help="idle: sessions")
    ap.add_argument("--idle-window", type=int, default=12,
                    help="idle: handshakes in flight per generator process (4 x 12 "
                    "stays under Twisted's default listen backlog of 50)")
    ap.add_argument("--payload", type=int, default=64, help="payload bytes")
    ap.add_argument("--batch", type=int, default=1000, help="QoS 0 packets per sendall")
    ap.add_argument("--window", type=int, default=20, help="qos1: messages in flight")
    ap.add_argument("--no-quickack", action="store_true",
                    help="qos1: leave the client's delayed ACKs on")
    ap.add_argument("--rtt-count", type=int, default=1000,
                    help="paho-rtt: round trips per QoS level (at most --duration s each)")
    args = ap.parse_args(argv)
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    sn = [s for s in scenarios if s in mqttsn_load.SCENARIOS]
    co = [s for s in scenarios if s in coap_load.SCENARIOS]
    scenarios = [s for s in scenarios if s not in sn and s not in co]
    names = [b.strip() for b in args.brokers.split(",") if b.strip()]
    bad = [s for s in scenarios if s not in RUNNERS] + [b for b in names if b not in brokers.BROKERS]
    if bad:
        ap.error(f"unknown scenario/broker: {', '.join(bad)}")
    names = [b for b in brokers.BROKERS if b in names]  # fixed column order
    limit = mqttload.raise_nofile()
    if "idle" in scenarios and limit < args.connections + 100:
        print(f"warning: RLIMIT_NOFILE hard limit {limit} < connections", file=sys.stderr)
    before = brokers.host_busy()
    time.sleep(1.0)
    busy = (brokers.host_busy() - before) * 100
    print(f"{CORES} CPUs, other processes busy {busy:.0f} % of a core before the run; "
          f"window {args.duration:g} s after {args.warmup:g} s warm-up; "
          f"payload {args.payload} B", file=sys.stderr)
    if busy >= NOISY:
        print("warning: the host is busy; numbers will be noisy", file=sys.stderr)
    results: dict[str, dict[str, list[Metric] | str]] = {s: {} for s in scenarios}
    dead: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mqttbench-") as tmp:
        for scen in scenarios:
            for name in names:
                if name in dead:
                    results[scen][name] = "skipped"
                    continue
                try:
                    broker = brokers.start(name, Path(tmp))
                except brokers.BrokerError as exc:
                    print(f"skipping {name}: {exc}", file=sys.stderr)
                    dead[name] = str(exc)
                    results[scen][name] = "skipped"
                    continue
                t = time.monotonic()
                try:
                    res: list[Metric] | str = RUNNERS[scen](broker, args)
                except ScenarioError as exc:
                    res = f"error: {exc}"
                    tail = broker.log_tail(5)
                    print(f"[{name}] {scen} failed: {exc}" + (f"\n{tail}" if tail else ""),
                          file=sys.stderr)
                finally:
                    broker.stop()
                results[scen][name] = res
                if isinstance(res, list):
                    head = ", ".join(f"{m.label} {m.text()}" for m in res[:3])
                    print(f"[{name}] {scen} ({time.monotonic() - t:.0f} s): {head}",
                          file=sys.stderr)
    if scenarios:
        print(table(results, names))
    if sn:
        print()
        mqttsn_load.main(["--only", ",".join(sn), "--duration", str(args.duration),
                          "--warmup", str(args.warmup)])
    if co:
        print()
        coap_load.main(["--only", ",".join(co), "--duration", str(args.duration),
                        "--warmup", str(args.warmup), "--payload", str(args.payload)])
    for name, why in dead.items():
        print(f"\n{name} skipped: {why.splitlines()[0]}")
    for scen, per in results.items():
        for name, res in per.items():
            if isinstance(res, str) and res.startswith("error"):
                print(f"\n{scen} on {name}: {res}")
    if any(isinstance(m, list) and any(x.flag for x in m)
           for per in results.values() for m in per.values()):
        print(f"\n! = generator process >= {SATURATED:.0f} % of a core (the generator "
              f"may be the bottleneck), other processes >= {NOISY:.0f} % of a core "
              "(busy host), or a sanity check failed")
    return 1 if any(isinstance(v, str) and v.startswith("error") for per in results.values()
                    for v in per.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
