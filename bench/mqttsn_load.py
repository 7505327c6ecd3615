"""MQTT-SN load: sensor clients over UDP into one MQTT subscriber, and idle clients.

Usage (from the repository root)::

    python bench/mqttsn_load.py [--duration S] [--warmup S] [--only sn-qos0,sn-qos1,sn-idle]
                                [--clients 100] [--idle-clients 10000]

sn-qos0  100 sensors (one UDP socket each, registered topic bench/sn/N/data) publish
         QoS 0 from one generator process; one MQTT subscriber on bench/sn/+/data
         counts them.  The generator keeps at most --window messages between sent
         and received, so it runs as fast as the gateway delivers without flooding
         the socket; with --rate it sends open loop at that rate instead.  Kernel
         drops at the gateway's socket are counted from /proc/net/udp.
sn-qos1  the same at QoS 1: each sensor has one PUBLISH outstanding (MQTT-SN v1.2
         allows no more) and sends the next on its PUBACK.  The subscriber takes
         QoS 0 unless --sub-qos 1 (then it acknowledges every message, and the
         gateway's max_inflight_messages window of 20 paces the delivery).
sn-idle  --idle-clients sensors connect (keepalive 600) from 4 processes and stay;
         gateway RSS growth per client.

The reference column is the Eclipse Paho MQTT-SN gateway 1.5.1 in front of Mosquitto,
measured on the same machine with the same 100-client scenario (issue 4); it is a
constant here because that gateway is built outside the repository.  CPU figures are
% of one core over the measured window, from psutil.
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
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import brokers  # noqa: E402
import mqttload  # noqa: E402

HOST = "127.0.0.1"
CTX = mp.get_context("fork")
SCENARIOS = ("sn-qos0", "sn-qos1", "sn-idle")
CORES = psutil.cpu_count() or 1
REFERENCE = {  # Paho MQTT-SN gateway + Mosquitto, issue 4
    ("sn-qos0", "msgs/s"): 26_800,
    ("sn-qos1", "msgs/s"): 20_300,
    ("sn-qos0", "CPU s/1k msgs"): 0.045,
    ("sn-qos1", "CPU s/1k msgs"): 0.045,
    ("sn-idle", "RSS KiB/client"): 1.6,
}

GATEWAY_CONFIG = """\
listener {mqtt} {host}
allow_anonymous true
listener {sn} {host}
protocol mqttsn
"""


# --- MQTT-SN datagrams (independent of the gateway's codec) -----------------------------


def sn_connect(client_id: str, keepalive: int) -> bytes:
    body = struct.pack("!BBH", 0x04, 0x01, keepalive) + client_id.encode()
    return bytes([len(body) + 2, 0x04]) + body


def sn_register(msg_id: int, topic: str) -> bytes:
    body = struct.pack("!HH", 0, msg_id) + topic.encode()
    return bytes([len(body) + 2, 0x0A]) + body


def sn_publish(topic_id: int, msg_id: int, payload: bytes, qos: int) -> bytes:
    body = struct.pack("!BHH", qos << 5, topic_id, msg_id) + payload
    return bytes([len(body) + 2, 0x0C]) + body


def ask(sock: socket.socket, datagram: bytes, want: int, tries: int = 5) -> bytes:
    """Send and wait for a reply of type ``want``; resend on timeout (UDP)."""
    for _ in range(tries):
        sock.send(datagram)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                reply = sock.recv(2048)
            except socket.timeout:
                break
            if len(reply) > 1 and reply[1] == want:
                return reply
    raise RuntimeError(f"no reply of type 0x{want:02x} to {datagram[:12].hex()}")


def sensor(port: int, name: str, topic: str | None, keepalive: int = 600) -> tuple[socket.socket, int]:
    """A connected MQTT-SN client on its own socket; (socket, topic id)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((HOST, port))
    reply = ask(sock, sn_connect(name, keepalive), 0x05)
    if reply[2] != 0:
        raise RuntimeError(f"CONNACK {reply[2]} for {name}")
    if topic is None:
        return sock, 0
    reply = ask(sock, sn_register(1, topic), 0x0B)
    topic_id, _, rc = struct.unpack("!HHB", reply[2:7])
    if rc != 0:
        raise RuntimeError(f"REGACK {rc} for {topic}")
    return sock, topic_id


# --- workers (forked processes) ----------------------------------------------------------------


def publishers(port: int, n: int, qos: int, payload_len: int, window: int, rate: int, barrier: Any,
               stop: Any, sent: Any, acked: Any, received: Any, results: Any) -> None:
    """``n`` sensors on their own sockets, QoS 1: one outstanding each; QoS 0: at most
    ``window`` between sent and received, or (``rate`` > 0) open loop at ``rate``/s."""
    try:
        pairs = [sensor(port, f"bench-sensor-{i}", f"bench/sn/{i}/data") for i in range(n)]
    except Exception as exc:  # noqa: BLE001
        mqttload._fail(results, barrier, "sensors", exc)
        return
    socks = [s for s, _ in pairs]
    payload = b"x" * payload_len
    for s in socks:
        s.setblocking(False)
    if not mqttload._go(barrier):
        return
    error = None
    if qos == 0:
        datagrams = [sn_publish(tid, 0, payload, 0) for _, tid in pairs]
        sends = [s.send for s in socks]
        count = j = 0
        start = time.monotonic()
        while not stop.is_set():
            if rate:
                budget = int((time.monotonic() - start) * rate) - count
            else:
                budget = window - (count - received[0])
            if budget <= 0:
                time.sleep(0.0002)
                continue
            for _ in range(min(budget, 200)):
                try:
                    sends[j](datagrams[j])
                except BlockingIOError:
                    break
                count += 1
                j = j + 1 if j + 1 < n else 0
            sent[0] = count
    else:
        tids = [tid for _, tid in pairs]
        mids = [1] * n
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
            s.send(sn_publish(tids[i], 1, payload, 1))
        count, done = n, 0
        while not stop.is_set():
            for key, _ in sel.select(0.2):
                i = key.data
                s = socks[i]
                while True:
                    try:
                        reply = s.recv(64)
                    except BlockingIOError:
                        break
                    if reply[1] != 0x0D or reply[6] != 0:
                        error = error or f"sensor {i}: unexpected {reply.hex()}"
                        continue
                    if struct.unpack("!H", reply[4:6])[0] != mids[i]:
                        continue  # a late duplicate
                    done += 1
                    mid = mids[i] = mids[i] % 0xFFFF + 1
                    s.send(sn_publish(tids[i], mid, payload, 1))
                    count += 1
            sent[0], acked[0] = count, done
    for s in socks:
        s.close()
    results.put({"who": "sensors", "error": error} if error else {"who": "sensors"})


def subscriber(mqtt_port: int, topic_filter: str, qos: int, barrier: Any, stop: Any,
               received: Any, results: Any) -> None:
    """One MQTT session; counts PUBLISH packets and acknowledges QoS 1 ones."""
    try:
        sock = mqttload.session(HOST, mqtt_port, "bench-sn-sub", subs=[(topic_filter, qos)])
    except Exception as exc:  # noqa: BLE001
        mqttload._fail(results, barrier, "subscriber", exc)
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.settimeout(0.2)
    if not mqttload._go(barrier):
        return
    buf = bytearray()
    error = None
    while not stop.is_set():
        try:
            data = sock.recv(1 << 18)
        except socket.timeout:
            continue
        # ACK at once: with Nagle on the gateway's side, a delayed ACK stalls its next write.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if not data:
            error = "broker closed the subscriber's connection"
            break
        buf += data
        acks = bytearray()
        i, n = 0, 0
        end = len(buf)
        while i + 2 <= end:
            first = buf[i]
            length, j = buf[i + 1], i + 2
            if length & 0x80:
                length, used = mqttload._long_length(buf, i + 1)
                if used < 0:
                    break
                j = i + 1 + used
            if j + length > end:
                break
            if first & 0xF0 == 0x30:
                n += 1
                if first & 0x06:
                    tlen = (buf[j] << 8) | buf[j + 1]
                    acks += b"\x40\x02" + buf[j + 2 + tlen : j + 4 + tlen]
            i = j + length
        del buf[:i]
        if acks:
            sock.sendall(acks)
        received[0] += n
    sock.close()
    results.put({"who": "subscriber", "error": error} if error else {"who": "subscriber"})


def idlers(port: int, first: int, count: int, barrier: Any, release: Any, connected: Any,
           slot: int, results: Any) -> None:
    """``count`` clients that connect (keepalive 600) and stay until released."""
    socks = []
    try:
        for i in range(first, first + count):
            socks.append(sensor(port, f"bench-idle-{i}", None)[0])
            connected[slot] += 1
    except Exception as exc:  # noqa: BLE001
        mqttload._fail(results, barrier, f"idle {slot}", exc)
        return
    results.put({"who": f"idle {slot}"})
    mqttload._go(barrier)
    release.wait(600)
    for s in socks:
        s.close()


# --- the gateway and the measurements --------------------------------------------------


class Gateway(brokers.Server):
    """mqttgateway with an MQTT listener and an MQTT-SN UDP listener on free ports."""

    grace = 10.0

    def __init__(self, workdir: Path, checkout: Path = brokers.REPO) -> None:
        self.mqtt = brokers.free_port()
        self.sn = brokers.free_port(socket.SOCK_DGRAM)
        conf = workdir / f"mqttsn-{self.sn}.conf"
        conf.write_text(GATEWAY_CONFIG.format(mqtt=self.mqtt, sn=self.sn, host=HOST))
        log = workdir / f"mqttsn-{self.sn}.log"
        super().__init__("mqttgateway", brokers.spawn("mqttgateway", conf, log, checkout), log)
        self.wait_port(self.mqtt)

    def kernel_drops(self) -> int:
        """Datagrams dropped at the gateway's UDP socket (``drops`` in /proc/net/udp)."""
        local = f"0100007F:{self.sn:04X}"
        with open("/proc/net/udp") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 12 and fields[1] == local:
                    return int(fields[-1])
        return 0


def traffic(gw: Gateway, args: argparse.Namespace, qos: int) -> dict[str, float]:
    sent, acked, received = CTX.RawArray("q", 1), CTX.RawArray("q", 1), CTX.RawArray("q", 1)
    stop = CTX.Event()
    barrier = CTX.Barrier(3)
    results: Any = CTX.Queue()
    sub = CTX.Process(target=subscriber, args=(gw.mqtt, "bench/sn/+/data", args.sub_qos, barrier,
                                               stop, received, results), daemon=True)
    sub.start()
    time.sleep(0.5)  # subscribed before anything is published
    pub = CTX.Process(target=publishers, args=(gw.sn, args.clients, qos, args.payload, args.window,
                                               args.rate, barrier, stop, sent, acked, received, results),
                      daemon=True)
    pub.start()
    barrier.wait(60)
    time.sleep(args.warmup)
    t0, n0, g0, c0, d0 = time.monotonic(), received[0], gw.cpu(), brokers.cpu_of([pub, sub]), gw.kernel_drops()
    h0 = brokers.host_busy()
    done = sent if qos == 0 else acked  # QoS 1: what the gateway acknowledged
    s0 = done[0]
    time.sleep(args.duration)
    t1, n1, g1, c1, d1 = time.monotonic(), received[0], gw.cpu(), brokers.cpu_of([pub, sub]), gw.kernel_drops()
    h1 = brokers.host_busy()
    s1 = done[0]
    stop.set()
    reports = [results.get(timeout=10) for _ in range(2)]
    for p in (pub, sub):
        p.join(5)
        if p.is_alive():
            p.kill()
    errors = [r["error"] for r in reports if r.get("error")]
    if errors:
        raise RuntimeError("; ".join(errors))
    dt, n = t1 - t0, n1 - n0
    return {
        "msgs/s": n / dt,
        "sensor msgs/s (sent or PUBACKed)": (s1 - s0) / dt,
        "CPU s/1k msgs": (g1 - g0) / n * 1000 if n else float("nan"),
        "gateway CPU %": (g1 - g0) / dt * 100,
        "generator CPU %": (c1[0] - c0[0]) / dt * 100,
        "subscriber CPU %": (c1[1] - c0[1]) / dt * 100,
        "kernel drops": d1 - d0,
        f"other procs CPU % (of {CORES * 100})":
            max(0.0, (h1 - h0) - (g1 - g0) - sum(c1) + sum(c0)) / dt * 100,
        "gateway RSS MiB": gw.rss() / 2**20,
    }


def idle(gw: Gateway, args: argparse.Namespace) -> dict[str, float]:
    mqttload.raise_nofile()
    nproc = 4
    counts = [args.idle_clients // nproc + (i < args.idle_clients % nproc) for i in range(nproc)]
    connected = CTX.RawArray("q", nproc)
    barrier, release = CTX.Barrier(nproc + 1), CTX.Event()
    results: Any = CTX.Queue()
    time.sleep(0.5)
    rss0 = gw.rss()
    t0 = time.monotonic()
    procs = []
    first = 0
    for i, c in enumerate(counts):
        p = CTX.Process(target=idlers, args=(gw.sn, first, c, barrier, release, connected, i, results),
                        daemon=True)
        p.start()
        procs.append(p)
        first += c
    reports = [results.get(timeout=300) for _ in range(nproc)]
    t1 = time.monotonic()
    errors = [r["error"] for r in reports if r.get("error")]
    barrier.wait(30)
    time.sleep(1.0)
    rss1 = gw.rss()
    release.set()
    for p in procs:
        p.join(10)
    if errors:
        raise RuntimeError("; ".join(errors))
    n = sum(connected)
    return {
        "clients": n,
        "connects/s": n / (t1 - t0),
        "RSS KiB/client": (rss1 - rss0) / n / 1024,
        "gateway RSS MiB": rss1 / 2**20,
    }


def run(scenario: str, workdir: Path, args: argparse.Namespace,
        checkout: Path = brokers.REPO) -> dict[str, float]:
    """Run ``scenario`` against a fresh gateway from ``checkout``."""
    gw = Gateway(workdir, checkout)
    try:
        if scenario == "sn-idle":
            return idle(gw, args)
        return traffic(gw, args, 0 if scenario == "sn-qos0" else 1)
    finally:
        gw.stop()


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [("scenario", "metric", "mqttgateway", "paho+mosquitto", "ratio")]
    for scen, metrics in rows:
        for i, (label, value) in enumerate(metrics.items()):
            ref = REFERENCE.get((scen, label))
            fmt = "{:,.3f}" if abs(value) < 10 else "{:,.0f}"
            lines.append((scen if i == 0 else "", label, fmt.format(value),
                          "" if ref is None else f"{ref:,}", f"{value / ref:.2f}" if ref else ""))
    widths = [max(len(r[c]) for r in lines) for c in range(5)]
    out = ["  ".join(c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
           for r in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    """The options (and defaults ``bench/run.py`` uses for these scenarios)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured window, s")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up before the window, s")
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    ap.add_argument("--clients", type=int, default=100, help="sensors publishing")
    ap.add_argument("--idle-clients", type=int, default=10_000, help="sn-idle: clients")
    ap.add_argument("--payload", type=int, default=16, help="payload bytes")
    ap.add_argument("--sub-qos", type=int, default=0, choices=(0, 1), help="the subscriber's QoS")
    ap.add_argument("--window", type=int, default=4000,
                    help="sn-qos0: most messages between sent and received")
    ap.add_argument("--rate", type=int, default=0,
                    help="sn-qos0: send open loop at this many msgs/s instead (kernel drops "
                    "then show where the gateway saturates)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario: {', '.join(bad)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mqttsn-bench-") as tmp:
        for scen in scenarios:
            t = time.monotonic()
            rows.append((scen, run(scen, Path(tmp), args)))
            print(f"{scen}: {time.monotonic() - t:.0f} s", file=sys.stderr)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
