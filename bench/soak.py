"""Soak: mixed traffic on every transport for a long time, sampled as it goes.

Usage (from the repository root)::

    python bench/soak.py [--minutes 30] [--interval 30] [--scale 1.0]

One gateway (``bench/churn.py``'s: MQTT, MQTT-SN UDP and CoAP listeners) and, from
forked processes, paced traffic (per second, times ``--scale``):

q0     MQTT QoS 0, 1000 publishes to ``soak/q0/N``, one QoS 0 subscriber
q1     MQTT QoS 1, 300 publishes (10 in flight) to ``soak/q1``, one QoS 1 subscriber
q2     MQTT QoS 2, 200 publishes (10 in flight, PUBREC/PUBREL/PUBCOMP) to ``soak/q2``,
       one QoS 2 subscriber
sn     MQTT-SN over UDP, 20 sensors, 200 QoS 1 publishes in all (one in flight
       per sensor) to ``soak/sn/N``, received by an MQTT subscriber
coap   CoAP CON PUT, 200 to ``/ps/soak/coap/put`` (4 in flight), received by an
       MQTT subscriber; and 20 observers of ``/ps/soak/obs``, to which an MQTT
       client publishes 10 times a second (200 notifications a second)

Every ``--interval`` seconds a line gives the rate of each stream over the interval,
the gateway's RSS and CPU (% of one core) and the error count. Publishers carry a
sequence number, so subscribers count unique messages and duplicates. At the end
the publishers stop, the streams drain, and the summary gives min/max RSS, the RSS
slope (least squares over the samples after the first, and over those after 300 s:
CoAP deduplication holds each request for 247 s, so RSS rises until then by design),
totals and the checks:
QoS 1 and QoS 2 loss 0 (every acknowledged message received), QoS 2 duplicates 0,
no error, gateway alive. Output goes to stdout and ``bench/results/soak-DATE.txt``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import selectors
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import brokers  # noqa: E402
import churn  # noqa: E402
import coap_load  # noqa: E402
import mqttload as mq  # noqa: E402
import report  # noqa: E402

HOST = brokers.HOST
CTX = mp.get_context("fork")
COUNTERS = [
    "q0 sent", "q0 recv", "q1 sent", "q1 acked", "q1 recv", "q1 dup", "q2 sent", "q2 done", "q2 recv",
    "q2 dup", "sn sent", "sn acked", "sn recv", "coap sent", "coap acked", "coap recv", "obs pub",
    "obs notes", "errors",
]
C = {name: i for i, name in enumerate(COUNTERS)}
RATES = {"q0": 1000, "q1": 300, "q2": 200, "sn": 200, "coap": 200, "obs": 10}
OBSERVERS = 20
SENSORS = 20
WARM = 300.0  # seconds: past the CoAP EXCHANGE_LIFETIME (247 s)


# --- pacing and packet streams -------------------------------------------------------------


class Pacer:
    """``due()`` says how many sends are owed at ``rate`` per second since the start."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.sent = 0

    def due(self) -> int:
        return max(0, int((time.monotonic() - self.t0) * self.rate) - self.sent)


def publish_fields(first: int, body: bytes) -> tuple[str, int | None, bytes]:
    tlen = struct.unpack_from("!H", body)[0]
    topic = body[2 : 2 + tlen].decode()
    if first & 0x06:
        return topic, struct.unpack_from("!H", body, 2 + tlen)[0], body[4 + tlen :]
    return topic, None, body[2 + tlen :]


def _error(counters: Any, errors: Any, who: str, exc: BaseException) -> None:
    counters[C["errors"]] += 1
    errors.put(f"{who}: {type(exc).__name__}: {exc}"[:200])


# --- MQTT workers ------------------------------------------------------------------------


def subscriber(port: int, filters: list[tuple[str, int]], counters: Any, errors: Any, ready: Any,
               stop: Any) -> None:
    """Counts what arrives per stream; acknowledges QoS 1 and 2; checks sequence numbers."""
    try:
        sock = mq.session(HOST, port, f"soak-sub-{filters[0][0].split('/')[1]}", 0, filters)
    except Exception as exc:  # noqa: BLE001
        _error(counters, errors, "subscriber", exc)
        ready.release()
        return
    ready.release()
    sock.settimeout(0.5)
    buf = bytearray()
    seen: dict[str, set[int]] = {"q1": set(), "q2": set()}
    while True:
        try:
            data = sock.recv(1 << 16)
        except socket.timeout:
            if stop.is_set():
                break
            continue
        except OSError as exc:
            _error(counters, errors, "subscriber", exc)
            break
        if not data:
            _error(counters, errors, "subscriber", ConnectionError("closed by the gateway"))
            break
        buf += data
        for first, body in mq.split_packets(buf):
            kind = first & 0xF0
            if kind == mq.PUBLISH:
                topic, pid, payload = publish_fields(first, body)
                stream = topic.split("/")[1]
                if first & 0x06 == 0x02:
                    sock.sendall(mq.puback(pid))  # type: ignore[arg-type]
                elif first & 0x06 == 0x04:
                    sock.sendall(b"\x50\x02" + struct.pack("!H", pid))
                if stream in seen:
                    seq = int(payload)
                    if seq in seen[stream]:
                        counters[C[f"{stream} dup"]] += 1
                        continue
                    seen[stream].add(seq)
                key = {"sn": "sn recv", "coap": "coap recv"}.get(stream, f"{stream} recv")
                counters[C[key]] += 1
            elif kind == 0x60:  # PUBREL
                sock.sendall(b"\x70\x02" + body[:2])
    sock.close()


def qos0_publisher(port: int, rate: float, counters: Any, errors: Any, stop: Any) -> None:
    try:
        sock = mq.session(HOST, port, "soak-q0", 0)  # keepalive 0: no PINGREQ needed
        pacer = Pacer(rate)
        packets = [mq.publish(f"soak/q0/{n}", b"x" * 32) for n in range(10)]
        while not stop.is_set():
            n = pacer.due()
            if n:
                sock.sendall(b"".join(packets[(pacer.sent + k) % 10] for k in range(n)))
                pacer.sent += n
                counters[C["q0 sent"]] += n
            time.sleep(0.01)
        sock.sendall(b"\xe0\x00")
        churn.closed_by_peer(sock)
    except Exception as exc:  # noqa: BLE001
        _error(counters, errors, "q0 publisher", exc)


def qos_publisher(port: int, qos: int, rate: float, window: int, counters: Any, errors: Any, stop: Any) -> None:
    """QoS 1 or 2 with ``window`` in flight; payload is the sequence number."""
    stream = f"q{qos}"
    try:
        sock = mq.session(HOST, port, f"soak-{stream}", 0)  # keepalive 0: no PINGREQ needed
        sock.settimeout(0.01)
        pacer = Pacer(rate)
        free = list(range(window, 0, -1))
        buf = bytearray()
        seq = 0
        while not stop.is_set() or len(free) < window:
            if not stop.is_set():
                n = min(pacer.due(), len(free))
                out = []
                for _ in range(n):
                    seq += 1
                    out.append(mq.publish(f"soak/{stream}", b"%d" % seq, qos, free.pop()))
                if out:
                    sock.sendall(b"".join(out))
                    pacer.sent += n
                    counters[C[f"{stream} sent"]] += n
            try:
                data = sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionError("closed by the gateway")
            buf += data
            for first, body in mq.split_packets(buf):
                kind = first & 0xF0
                if kind == mq.PUBACK or kind == 0x70:  # PUBACK, PUBCOMP
                    free.append(struct.unpack_from("!H", body)[0])
                    counters[C["q1 acked" if qos == 1 else "q2 done"]] += 1
                elif kind == 0x50:  # PUBREC
                    sock.sendall(b"\x62\x02" + body[:2])
        sock.sendall(b"\xe0\x00")
        churn.closed_by_peer(sock)
    except Exception as exc:  # noqa: BLE001
        _error(counters, errors, f"{stream} publisher", exc)


# --- MQTT-SN and CoAP workers ------------------------------------------------------------


def sn_publishers(port: int, rate: float, counters: Any, errors: Any, stop: Any) -> None:
    """SENSORS sensors, one QoS 1 PUBLISH in flight each, paced in all."""
    try:
        udp = churn.Datagrams(port, SENSORS)
        sensors = udp.socks
        ids = []
        for k, s in enumerate(sensors):
            udp.ask(s, churn.sn_connect(f"soak-sn-{k}", True), lambda r: len(r) > 2 and r[1] == 0x05)
            reg = udp.ask(s, churn.sn(0x0A, struct.pack("!HH", 0, 1) + f"soak/sn/{k}".encode()),
                          lambda r: len(r) > 6 and r[1] == 0x0B)
            ids.append(struct.unpack_from("!H", reg, 2)[0])
        sel = selectors.DefaultSelector()
        for k, s in enumerate(sensors):
            sel.register(s, selectors.EVENT_READ, k)
        pacer = Pacer(rate)
        busy: dict[int, float] = {}
        mid = 0
        while not stop.is_set() or busy:
            now = time.monotonic()
            if not stop.is_set():
                for k in range(min(pacer.due(), SENSORS)):
                    idle = [j for j in range(SENSORS) if j not in busy]
                    if not idle:
                        break
                    j = idle[mid % len(idle)]
                    mid = mid % 0xFFFF + 1
                    sensors[j].send(churn.sn(0x0C, struct.pack("!BHH", 0x20, ids[j], mid) + b"%d" % mid))
                    busy[j] = now
                    pacer.sent += 1
                    counters[C["sn sent"]] += 1
            for key, _ in sel.select(0.005):
                try:
                    reply = key.fileobj.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if len(reply) > 6 and reply[1] == 0x0D and key.data in busy:
                    del busy[key.data]
                    counters[C["sn acked"]] += 1
            for j, t in list(busy.items()):
                if now - t > 10:
                    del busy[j]
                    _error(counters, errors, "mqtt-sn sensor", TimeoutError(f"sensor {j}: no PUBACK in 10 s"))
        for s in sensors:
            s.send(churn.sn(0x18, b""))
            s.close()
    except Exception as exc:  # noqa: BLE001
        _error(counters, errors, "mqtt-sn publishers", exc)


def coap_putter(port: int, rate: float, window: int, counters: Any, errors: Any, stop: Any) -> None:
    path = ["ps", "soak", "coap", "put"]
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((HOST, port))
        s.settimeout(0.005)
        pacer = Pacer(rate)
        pending: dict[int, tuple[float, bytes]] = {}
        mid = 0
        while not stop.is_set() or pending:
            now = time.monotonic()
            if not stop.is_set():
                for _ in range(min(pacer.due(), window - len(pending))):
                    mid = mid % 0xFFFF + 1
                    req = coap_load.request(coap_load.CON, coap_load.PUT_CODE, mid, struct.pack("!H", mid), path,
                                            payload=b"%d" % mid)
                    s.send(req)
                    pending[mid] = (now, req)
                    pacer.sent += 1
                    counters[C["coap sent"]] += 1
            try:
                reply = s.recv(2048)
            except socket.timeout:
                reply = b""
            if len(reply) >= 4:
                m = struct.unpack_from("!H", reply, 2)[0]
                if m in pending:
                    del pending[m]
                    counters[C["coap acked"] if reply[1] == 0x44 else C["errors"]] += 1
            for m, (t, req) in list(pending.items()):
                if now - t > 30:
                    del pending[m]
                    _error(counters, errors, "coap put", TimeoutError(f"message id {m}: no answer in 30 s"))
                elif now - t > 2:
                    s.send(req)  # CON retransmission; the gateway deduplicates
                    pending[m] = (now, req)
        s.close()
    except Exception as exc:  # noqa: BLE001
        _error(counters, errors, "coap put", exc)


def observers(port: int, counters: Any, errors: Any, ready: Any, stop: Any) -> None:
    """OBSERVERS observers of /ps/soak/obs; count notifications, ACK the CON ones."""
    path = ["ps", "soak", "obs"]
    try:
        udp = churn.Datagrams(port, OBSERVERS)
        udp.exchange([churn.coap_request(n + 1, b"so%d" % n, path, 0) for n in range(OBSERVERS)],
                     lambda k, r: churn.coap_reply(b"so%d" % k, k + 1)(r))
    except Exception as exc:  # noqa: BLE001
        _error(counters, errors, "observers", exc)
        ready.release()
        return
    ready.release()
    sel = selectors.DefaultSelector()
    for s in udp.socks:
        sel.register(s, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in sel.select(0.5):
            s = key.fileobj
            while True:
                try:
                    data = s.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                if len(data) >= 4 and data[1] == 0x45:
                    counters[C["obs notes"]] += 1
                    if data[0] >> 4 & 3 == coap_load.CON:
                        s.send(bytes([0x60, 0, data[2], data[3]]))  # type: ignore[union-attr]
    for n, s in enumerate(udp.socks):
        s.setblocking(True)
        s.send(churn.coap_request(0x8000 + n, b"so%d" % n, path, 1))
    udp.close()


def obs_publisher(port: int, rate: float, counters: Any, errors: Any, stop: Any) -> None:
    try:
        sock = mq.session(HOST, port, "soak-obs-pub", 0)  # keepalive 0: no PINGREQ needed
        pacer = Pacer(rate)
        while not stop.is_set():
            n = pacer.due()
            if n:
                sock.sendall(mq.publish("soak/obs", b"v%d" % pacer.sent) * n)
                pacer.sent += n
                counters[C["obs pub"]] += n
            time.sleep(0.02)
        sock.sendall(b"\xe0\x00")
        churn.closed_by_peer(sock)
    except Exception as exc:  # noqa: BLE001
        _error(counters, errors, "obs publisher", exc)


# --- the run --------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def start_load(gw: churn.Gateway, scale: float, counters: Any, errors: Any, stop: Any, stop_sub: Any) -> list[Any]:
    r = {k: v * scale for k, v in RATES.items()}
    ready = CTX.Semaphore(0)
    subs: list[tuple[Callable[..., None], tuple]] = [
        (subscriber, (gw.mqtt, [("soak/q0/#", 0), ("soak/sn/#", 0), ("soak/coap/#", 0)], counters, errors, ready,
                      stop_sub)),
        (subscriber, (gw.mqtt, [("soak/q1", 1)], counters, errors, ready, stop_sub)),
        (subscriber, (gw.mqtt, [("soak/q2", 2)], counters, errors, ready, stop_sub)),
        (observers, (gw.coap, counters, errors, ready, stop_sub)),
    ]
    procs = [CTX.Process(target=f, args=a, daemon=True) for f, a in subs]
    for p in procs:
        p.start()
    for _ in subs:
        ready.acquire(timeout=60)
    pubs: list[tuple[Callable[..., None], tuple]] = [
        (qos0_publisher, (gw.mqtt, r["q0"], counters, errors, stop)),
        (qos_publisher, (gw.mqtt, 1, r["q1"], 10, counters, errors, stop)),
        (qos_publisher, (gw.mqtt, 2, r["q2"], 10, counters, errors, stop)),
        (sn_publishers, (gw.sn, r["sn"], counters, errors, stop)),
        (coap_putter, (gw.coap, r["coap"], 4, counters, errors, stop)),
        (obs_publisher, (gw.mqtt, r["obs"], counters, errors, stop)),
    ]
    more = [CTX.Process(target=f, args=a, daemon=True) for f, a in pubs]
    for p in more:
        p.start()
    return procs + more


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every rate")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/soak-DATE.txt)")
    args = parser.parse_args(argv)

    say = report.Tee(args.out or report.results_file("soak"))
    say(report.header(sys.argv if argv is None else [sys.argv[0], *argv]))
    say("# rates per second: " + ", ".join(f"{k} {v * args.scale:g}" for k, v in RATES.items())
        + f"; {OBSERVERS} observers, {SENSORS} MQTT-SN sensors")
    counters = CTX.RawArray("q", len(COUNTERS))
    errors: Any = CTX.Queue()
    stop_pub, stop_sub = CTX.Event(), CTX.Event()
    samples: list[tuple[float, int]] = []
    alive = True
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        gw = churn.Gateway(Path(tmp), "max_queued_messages 10000\n")
        subs_pubs: list[Any] = []
        try:
            rss0 = gw.rss()
            subs_pubs = start_load(gw, args.scale, counters, errors, stop_pub, stop_sub)
            streams = ["q0 recv", "q1 recv", "q2 recv", "sn recv", "coap recv", "obs notes"]
            say(f"{'t s':>6} " + " ".join(f"{s.split()[0] + '/s':>7}" for s in streams)
                + f" {'RSS MiB':>8} {'CPU %':>6} {'errors':>6}")
            t0 = last_t = time.monotonic()
            last = list(counters)
            last_cpu = gw.cpu()
            end = t0 + args.minutes * 60
            while time.monotonic() < end and gw.alive():
                time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
                now, cur, cpu, rss = time.monotonic(), list(counters), gw.cpu(), gw.rss()
                dt = now - last_t
                samples.append((now - t0, rss))
                say(f"{now - t0:>6.0f} " + " ".join(f"{(cur[C[s]] - last[C[s]]) / dt:>7.0f}" for s in streams)
                    + f" {rss / 2**20:>8.1f} {(cpu - last_cpu) / dt * 100:>6.1f} {cur[C['errors']]:>6}")
                last, last_t, last_cpu = cur, now, cpu
            alive = gw.alive()
            stop_pub.set()
            # Drain: publishers finish their in-flight messages, subscribers catch up.
            quiet = 0
            drained = list(counters)
            deadline = time.monotonic() + 60
            while quiet < 3 and time.monotonic() < deadline:
                time.sleep(1.0)
                cur = list(counters)
                quiet = quiet + 1 if cur == drained else 0
                drained = cur
            stop_sub.set()
        finally:
            stop_pub.set()
            stop_sub.set()
            for p in subs_pubs:
                p.join(5)
                if p.is_alive():
                    p.kill()
            rss_end = gw.rss() if gw.alive() else 0
            gw.stop()
    total = list(counters)
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    minutes = samples[-1][0] / 60 if samples else 0.0
    rss = [r for _, r in samples]
    per_hour = slope([(t / 3600, r / 2**20) for t, r in samples[1:]])
    # CoAP deduplication keeps every request for EXCHANGE_LIFETIME (247 s): RSS grows
    # until then by design, so the slope after WARM is the one that tells a leak.
    late = [(t / 3600, r / 2**20) for t, r in samples if t >= WARM]
    late_slope = f"{slope(late):+.2f} MiB/hour after {WARM:.0f} s" if len(late) >= 2 else f"none after {WARM:.0f} s"
    q1_loss = total[C["q1 acked"]] - total[C["q1 recv"]]
    q2_loss = total[C["q2 done"]] - total[C["q2 recv"]]
    checks = {
        "QoS 1 loss 0": q1_loss == 0,
        "QoS 2 loss 0": q2_loss == 0,
        "QoS 2 duplicates 0": total[C["q2 dup"]] == 0,
        "no errors": total[C["errors"]] == 0,
        "gateway alive": alive,
    }
    say("")
    say(f"summary over {minutes:.1f} min: RSS at start {rss0 / 2**20:.1f} MiB, min {min(rss, default=0) / 2**20:.1f}, "
        f"max {max(rss, default=0) / 2**20:.1f}, at the end {rss_end / 2**20:.1f}; slope {per_hour:+.2f} MiB/hour "
        f"(from the second sample), {late_slope}")
    say("totals: " + ", ".join(f"{name} {total[i]:,}" for i, name in enumerate(COUNTERS)))
    say(f"QoS 1: {total[C['q1 acked']]:,} acknowledged, {total[C['q1 recv']]:,} received, loss {q1_loss}, "
        f"duplicates {total[C['q1 dup']]}; QoS 2: {total[C['q2 done']]:,} completed, {total[C['q2 recv']]:,} "
        f"received, loss {q2_loss}, duplicates {total[C['q2 dup']]}")
    say(f"QoS 0: {total[C['q0 sent']]:,} sent, {total[C['q0 recv']]:,} received; MQTT-SN: {total[C['sn acked']]:,} "
        f"acknowledged, {total[C['sn recv']]:,} received; CoAP PUT: {total[C['coap acked']]:,} acknowledged, "
        f"{total[C['coap recv']]:,} received; notifications {total[C['obs notes']]:,} for {total[C['obs pub']]:,} "
        f"publishes x {OBSERVERS} observers")
    for e in errs[:20]:
        say(f"  error: {e}")
    say("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    say.close()
    print(f"results in {say.path}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
