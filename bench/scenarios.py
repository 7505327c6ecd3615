"""The scenarios of ``bench/run.py``: what each one loads and measures.

MQTT (against every broker; level 5 variants skip brokers without MQTT 5):

fanin     QoS 0, 8 publisher processes -> 1 subscriber on ``bench/+/data``
fanout    QoS 0, 1 publisher -> 50 subscribers (3 processes) on one topic; counts
          deliveries (50 per message published)
qos1      QoS 1 round trip on one session, 20 in flight; p50/p99 latency
fanin5, fanout5, qos1-5
          the same at MQTT level 5: a user property on every PUBLISH, a
          subscription identifier on every subscription (bench/mqttload.py)
lowrate   1 publisher at --rate messages/s (1,000: one per ms), QoS 0, one per
          send, 1 subscriber: broker CPU per message when it is mostly idle
idle      open N idle sessions (keepalive 600) from 4 processes, 12 handshakes
          in flight each; connections/s and RSS per session
paho-rtt  a paho-mqtt client publishing to its own topic one message at a time at
          QoS 0, 1, 2; publish -> on_message p50/p99 (bench/paho_rtt.py)
ws-rtt    paho-rtt over WebSockets
paho-pub  a paho-mqtt client publishing QoS 0 every 2 ms and reading nothing, a
          second one subscribed; publish -> on_message p50/p90/p99
paho-mixed  paho-pub while the publisher also receives a message every 5 ms

Gateway only (every gateway checkout; no Mosquitto peer):

sn-qos0, sn-qos1, sn-idle          MQTT-SN over UDP: bench/mqttsn_load.py
coap-con, coap-non, coap-notify    CoAP, bare aiocoap as reference: bench/coap_load.py

CPU figures are % of one core: the broker's from its process CPU clock, the
generator processes' and the host's from psutil.  "other" is everything else
the host ran meanwhile.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

import brokers
import coap_load
import mqttload
import mqttsn_load
import paho_rtt

HOST = brokers.HOST
HALF = 50.0       # % of one core: a generator process this busy is marked "*"
SATURATED = 90.0  # % of one core: a generator process this busy is marked "!"
NOISY = 25.0      # % of one core used by unrelated processes: marked "!"
CORES = psutil.cpu_count() or 1
CTX = mp.get_context("fork")
MQTT_KINDS = ("mqttgateway", "mosquitto", "aedes")
MQTT5 = ("mqttgateway", "mosquitto")  # aedes speaks MQTT 3.1 and 3.1.1 only
FLOOR_SCENARIOS = ("lowrate",)  # where bench/floor.py is a floor (one write per packet)


class ScenarioError(Exception):
    """A scenario could not complete."""


class Skip(Exception):
    """A broker cannot run this scenario (reported, not a failure)."""


@dataclass
class Metric:
    """One table cell: value plus how to print it.

    ``gen`` marks a generator process's CPU %: ``*`` from HALF, ``!`` from
    SATURATED (the load generator, not the broker, may be the limit).
    """

    label: str
    value: float | None
    fmt: str = "{:,.0f}"
    flag: bool = False
    ratio: bool = True
    gen: bool = False

    def mark(self, value: float | None = None) -> str:
        v = self.value if value is None else value
        if self.flag or (self.gen and v is not None and v >= SATURATED):
            return "!"
        return "*" if self.gen and v is not None and v >= HALF else ""

    def text(self) -> str:
        if self.value is None or self.value != self.value:
            return "-"
        return self.fmt.format(self.value) + self.mark()


class Pool:
    """Generator processes sharing a start barrier and a result queue."""

    def __init__(self, n: int) -> None:
        self.barrier = CTX.Barrier(n + 1)
        self.results: Any = CTX.Queue()
        self.procs: list[Any] = []
        self.n = n

    def spawn(self, target: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        p = CTX.Process(target=target, args=args, kwargs=kwargs, daemon=True)
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
    broker_ns: int
    gen_cpu: list[float]
    host_busy: float
    rss: int
    offered: int = 0


def snap(broker: brokers.Broker, pool: Pool, counter: Callable[[], int],
         offered: Callable[[], int] | None = None) -> Snap:
    if not broker.alive():
        raise ScenarioError(f"broker exited with status {broker.proc.returncode}")
    return Snap(time.monotonic(), counter(), broker.cpu_ns(), pool.cpu(), brokers.host_busy(),
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
    bcpu = (b.broker_ns - a.broker_ns) / 1e9
    gen = [(y - x) / dt * 100 for x, y in zip(a.gen_cpu, b.gen_cpu)]
    gmax = max(gen) if gen else math.nan
    other = max(0.0, (b.host_busy - a.host_busy - bcpu) / dt * 100 - sum(gen))
    one = {"msgs": "msg", "deliveries": "delivery", "conns": "conn"}.get(unit, unit)
    return [
        Metric(f"{unit}/s", n / dt),
        Metric(f"broker CPU µs/{one}", bcpu / n * 1e6 if n else None, "{:.2f}"),
        Metric("broker CPU %", bcpu / dt * 100, "{:.0f}"),
        Metric("gen max proc CPU %", gmax, "{:.0f}", ratio=False, gen=True),
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
         topic_filter: str, unit: str, level: int = 4, rate: float = 0) -> list[Metric]:
    """Shared body of fanin/fanout/lowrate: QoS 0 publishers -> counting subscribers.

    With ``rate`` the publishers are paced (one PUBLISH per send) instead of
    writing batches as fast as TCP takes them.
    """
    nsubs = sum(len(g) for g in sub_groups)
    sent = CTX.RawArray("q", publishers)
    received = CTX.RawArray("q", nsubs)
    stop_pub, stop_sub = CTX.Event(), CTX.Event()
    pool = Pool(publishers + len(sub_groups))
    for group in sub_groups:
        pool.spawn(mqttload.subscriber, HOST, broker.port, group, topic_filter,
                   pool.barrier, stop_sub, received, pool.results, level=level)
    # Subscriptions must be in place before anything is published.
    time.sleep(0.5)
    for i in range(publishers):
        if rate:
            pool.spawn(mqttload.paced_publisher, HOST, broker.port, i, topic(i), args.payload,
                       rate, pool.barrier, stop_pub, sent, pool.results, level=level)
        else:
            pool.spawn(mqttload.publisher, HOST, broker.port, i, topic(i), args.payload,
                       args.batch, pool.barrier, stop_pub, sent, pool.results, level=level)
    pool.ready()
    try:
        metrics = window(broker, pool, lambda: sum(received), args, unit,
                         offered=lambda: sum(sent))
    finally:
        stop_pub.set()
        # A broker that queues QoS 0 output drains it here; bounded so that a
        # slow one does not double the run (what is left counts as not delivered).
        settle(lambda: sum(received), timeout=args.duration + 2)
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


def fanin(broker: brokers.Broker, args: argparse.Namespace, level: int = 4) -> list[Metric]:
    return qos0(broker, args, 8, [[0]], lambda i: f"bench/{i}/data", "bench/+/data",
                "msgs", level)


def fanout(broker: brokers.Broker, args: argparse.Namespace, level: int = 4) -> list[Metric]:
    groups = [list(range(g, 50, 3)) for g in range(3)]
    return qos0(broker, args, 1, groups, lambda i: "bench/fanout", "bench/fanout",
                "deliveries", level)


def lowrate(broker: brokers.Broker, args: argparse.Namespace, level: int = 4) -> list[Metric]:
    return qos0(broker, args, 1, [[0]], lambda i: "bench/low", "bench/low", "msgs", level,
                rate=args.rate)


def qos1(broker: brokers.Broker, args: argparse.Namespace, level: int = 4) -> list[Metric]:
    counters = CTX.RawArray("q", 2)
    measuring = CTX.RawValue("b", 0)
    stop = CTX.Event()
    pool = Pool(1)
    pool.spawn(mqttload.roundtrip, HOST, broker.port, args.window, args.payload,
               not args.no_quickack, pool.barrier, stop, measuring, counters, pool.results,
               level=level)
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
    metrics[1:1] = [Metric("latency p50 ms", percentile(lat, 50), "{:.3f}"),
                    Metric("latency p99 ms", percentile(lat, 99), "{:.3f}")]
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


def percentile(sorted_s: list[float], p: float) -> float | None:
    """The ``p``-th percentile of sorted seconds, in ms."""
    if not sorted_s:
        return None
    return sorted_s[min(len(sorted_s) - 1, int(p / 100 * len(sorted_s)))] * 1000


def _paho(timeout: float, worker: Callable[..., None], *args: Any) -> Any:
    """Run one paho generator process (``bench/paho_rtt.py``) and return what it measured."""
    pool = Pool(1)
    pool.spawn(worker, pool.barrier, pool.results, *args)
    pool.ready()
    try:
        results = pool.drain(timeout)
    finally:
        pool.kill()
    if not results:
        raise ScenarioError("paho client did not report")
    if results[0].get("error"):
        raise ScenarioError(results[0]["error"])
    return results[0]["latencies"]


def paho_roundtrip(broker: brokers.Broker, args: argparse.Namespace,
                   transport: str = "tcp") -> list[Metric]:
    port = broker.ws_port if transport == "websockets" else broker.port
    latencies = _paho(len(paho_rtt.LEVELS) * (args.duration + 2 * paho_rtt.TIMEOUT),
                      paho_rtt.worker, HOST, port, args.rtt_count, args.duration, args.payload,
                      transport)
    metrics: list[Metric] = []
    sanity: list[Metric] = []
    for qos, lat in sorted(latencies.items()):
        lat = sorted(lat)
        for p in (50, 99):
            metrics.append(Metric(f"QoS {qos} p{p} ms", percentile(lat, p), "{:.3f}"))
        sanity.append(Metric(f"sanity: QoS {qos} round trips", len(lat), ratio=False))
    return metrics + sanity


def paho_publisher(broker: brokers.Broker, args: argparse.Namespace,
                   chatter: float = 0.0) -> list[Metric]:
    lat = sorted(_paho(args.duration + 3 * paho_rtt.TIMEOUT, paho_rtt.oneway_worker, HOST,
                       broker.port, args.duration, args.payload, chatter))
    return [*(Metric(f"QoS 0 p{p} ms", percentile(lat, p), "{:.3f}") for p in (50, 90, 99)),
            Metric("sanity: messages", len(lat), ratio=False)]


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


# --------------------------------------------------- MQTT-SN and CoAP (own servers)

# How the dict figures of mqttsn_load / coap_load become table rows:
# label -> (new label, scale, format, ratio, generator CPU)
IMPORTED: dict[str, tuple[str, float, str, bool, bool]] = {
    "CPU s/1k msgs": ("gateway CPU µs/msg", 1000, "{:.2f}", True, False),
    "CPU ms/unit": ("server CPU µs/unit", 1000, "{:.1f}", True, False),
    "generator CPU %": ("generator CPU %", 1, "{:.0f}", False, True),
    "subscriber CPU %": ("subscriber CPU %", 1, "{:.0f}", False, True),
    "gen max %": ("gen max proc CPU %", 1, "{:.0f}", False, True),
    "gateway CPU %": ("gateway CPU %", 1, "{:.0f}", True, False),
    "server CPU %": ("server CPU %", 1, "{:.0f}", True, False),
    "kernel drops": ("kernel drops", 1, "{:,.0f}", False, False),
    "RSS KiB/client": ("RSS KiB/client", 1, "{:.2f}", True, False),
    "gateway RSS MiB": ("gateway RSS MiB", 1, "{:.1f}", True, False),
    "RSS MiB": ("server RSS MiB", 1, "{:.1f}", True, False),
}


def imported(figures: dict[str, float]) -> list[Metric]:
    """Metrics from the figures another benchmark module returns."""
    out = []
    for label, value in figures.items():
        if label.startswith("other procs"):
            out.append(Metric(label, value, "{:.0f}", value >= NOISY, ratio=False))
            continue
        name, scale, fmt, ratio, gen = IMPORTED.get(label, (label, 1, "{:,.0f}", True, False))
        out.append(Metric(name, value * scale, fmt, ratio=ratio, gen=gen))
    return out


def mqttsn(scenario: str, target: brokers.Target, workdir: Path,
           args: argparse.Namespace) -> list[Metric]:
    try:
        return imported(mqttsn_load.run(scenario, workdir, args.sn, target.checkout))
    except Exception as exc:  # noqa: BLE001 - any failure of that module is this run's
        raise ScenarioError(f"{type(exc).__name__}: {exc}") from None


def coap(scenario: str, target: brokers.Target, workdir: Path,
         args: argparse.Namespace) -> list[Metric]:
    try:
        server = coap_load.Server("bare" if target.kind == "aiocoap" else "mqttgateway",
                                  workdir, target.checkout)
    except Exception as exc:  # noqa: BLE001
        raise ScenarioError(f"{type(exc).__name__}: {exc}") from None
    try:
        return imported(coap_load.run_scenario(scenario, server, args.coap))
    except Exception as exc:  # noqa: BLE001
        raise ScenarioError(f"{type(exc).__name__}: {exc}") from None
    finally:
        server.stop()


# ------------------------------------------------------------------- registry

MqttRunner = Callable[[brokers.Broker, argparse.Namespace], list[Metric]]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: which brokers it applies to and how it runs."""

    name: str
    family: str  # mqtt, mqttsn or coap
    run: Any
    level: int = 4
    ws: bool = False

    def applies(self, kind: str) -> bool:
        """Whether a column of this kind has a cell for this scenario at all."""
        if kind in brokers.FLOORS:
            return self.name in FLOOR_SCENARIOS
        if self.family == "mqtt":
            return kind in MQTT_KINDS
        if self.family == "coap":
            return kind in ("mqttgateway", "aiocoap")
        return kind == "mqttgateway"


def _mqtt(name: str, fn: Callable[..., list[Metric]], level: int = 4, **kw: Any) -> Scenario:
    return Scenario(name, "mqtt", fn if level == 4 else
                    (lambda broker, args: fn(broker, args, level)), level, **kw)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    _mqtt("fanin", fanin), _mqtt("fanin5", fanin, 5),
    _mqtt("fanout", fanout), _mqtt("fanout5", fanout, 5),
    _mqtt("qos1", qos1), _mqtt("qos1-5", qos1, 5),
    _mqtt("lowrate", lowrate), _mqtt("idle", idle),
    Scenario("paho-rtt", "mqtt", paho_roundtrip),
    Scenario("paho-pub", "mqtt", paho_publisher),
    Scenario("paho-mixed", "mqtt",
             lambda broker, args: paho_publisher(broker, args, paho_rtt.CHATTER)),
    Scenario("ws-rtt", "mqtt", lambda broker, args: paho_roundtrip(broker, args, "websockets"),
             ws=True),
    *[Scenario(s, "mqttsn", mqttsn) for s in mqttsn_load.SCENARIOS],
    *[Scenario(s, "coap", coap) for s in coap_load.SCENARIOS],
]}
# What the performance targets are stated on: the default of ``--only``.
DEFAULT = ("fanin", "fanin5", "fanout", "fanout5", "qos1", "qos1-5", "lowrate", "idle",
           "sn-qos0", "sn-qos1", "coap-con")


def run_one(scenario: Scenario, target: brokers.Target, workdir: Path,
            args: argparse.Namespace) -> list[Metric]:
    """One run of ``scenario`` against a fresh ``target``.

    Raises Skip when the target cannot take part, ScenarioError when the run fails.
    """
    if scenario.level == 5 and target.kind not in MQTT5:
        raise Skip(f"{target.kind} has no MQTT 5")
    if scenario.family == "mqttsn":
        return mqttsn(scenario.name, target, workdir, args)
    if scenario.family == "coap":
        return coap(scenario.name, target, workdir, args)
    try:
        broker = brokers.start(target, workdir, ws=scenario.ws)
    except brokers.BrokerError as exc:
        raise ScenarioError(str(exc)) from None
    try:
        return scenario.run(broker, args)
    except ScenarioError as exc:
        if "(level 5 refused)" in str(exc):
            raise Skip("this checkout has no MQTT 5") from None
        tail = broker.log_tail(5)
        raise ScenarioError(f"{exc}" + (f"\n{tail}" if tail else "")) from None
    finally:
        broker.stop()
