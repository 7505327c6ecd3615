"""DTLS load: handshakes/s, encrypted CoAP requests/s against plaintext, and MQTT
latency under a DTLS handshake flood.

Usage (from the repository root)::

    python bench/dtls_load.py [--duration S] [--warmup S]
                              [--only handshakes-psk,handshakes-cert,requests,flood]

Servers, each scenario against both in the same invocation (Mosquitto has no DTLS):

mqttgateway  a CoAP listener in clear and a DTLS one (PSK and a certificate; the
             per-source ClientHello limit raised out of the way), and MQTT
libcoap      Debian's ``coap-server-openssl`` (C, system OpenSSL), coap on PORT and
             coaps on PORT+1, PUT to its ``/example_data``

handshakes-psk   2 processes x 16 clients, each doing whole DTLS 1.2 handshakes with a
handshakes-cert  pre-shared key (or checking the server's ECDSA certificate): cookie
                 exchange, handshake, close_notify, then again from a new source port
requests         8 DTLS sessions x 8 outstanding CON PUTs (the gateway: /ps/bench/put,
                 published into the hub), then the same in clear: requests/s of each
flood            the gateway only: one MQTT client's QoS 1 round trips (one at a time)
                 for D seconds quiet, then for D seconds under a handshake flood from
                 200 source ports (tests/dtls/client.py ``flood``), while a good client
                 on 127.0.0.2 opens a DTLS session every half second

The clients are pyOpenSSL on memory BIOs in forked processes (``gen max`` shows the
busiest); CPU per unit is the server's user+system CPU over the window.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import brokers  # noqa: E402
import mqttload  # noqa: E402
import report  # noqa: E402
from tests.dtls.client import ClientEnd, DTLSClient, client_context, flood  # noqa: E402
from tests.security.pki import make_pki  # noqa: E402

HOST = "127.0.0.1"
CTX = mp.get_context("fork")
SCENARIOS = ("handshakes-psk", "handshakes-cert", "requests", "flood")
IDENTITY, KEY = "bench", b"bench-dtls-key"
CON, PUT = 0, 3
STALL = 1.0  # seconds without an answer before a client starts over (a lost datagram)

GATEWAY_CONFIG = """\
listener {coap} {host}
protocol coap
listener {coaps} {host}
protocol coap
certfile {pki[server]}
keyfile {pki[server_key]}
psk_hint bench
max_connection_rate 1000000
dtls_max_handshakes 10000
listener {mqtt} {host}
allow_anonymous true
psk_file {psk}
sys_interval 0
coap_max_requests_per_second 0
coap_max_requests_per_address 0
"""


# ------------------------------------------------------------------ clients

def context(mode: str, pki: dict[str, str]) -> Any:
    return client_context(psk=(IDENTITY, KEY)) if mode == "psk" else client_context(ca=pki["ca"])


def handshake_worker(port: int, mode: str, pki: dict[str, str], clients: int, barrier: Any,
                     stop: Any, counter: Any, slot: int) -> None:
    """``clients`` handshakes at a time; counter[slot] += 1 for each one completed."""
    ctx = context(mode, pki)
    sel = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}

    def begin() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((HOST, port))
        s.setblocking(False)
        end = ClientEnd(ctx)
        sel.register(s, selectors.EVENT_READ, end)
        started[s] = time.monotonic()
        for d in end.start():
            s.send(d)

    def finish(s: socket.socket) -> None:
        sel.unregister(s)
        started.pop(s, None)
        s.close()

    if not mqttload._go(barrier):
        return
    for _ in range(clients):
        begin()
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            s, end = key.fileobj, key.data
            try:
                data = s.recv(4096)  # type: ignore[union-attr]
                for d in end.feed(data):
                    s.send(d)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a failed handshake: start over
                finish(s)  # type: ignore[arg-type]
                begin()
                continue
            if end.done:
                counter[slot] += 1
                for d in end.close():
                    s.send(d)  # type: ignore[union-attr]
                finish(s)  # type: ignore[arg-type]
                begin()
        now = time.monotonic()
        for s in [s for s, t in started.items() if now - t > STALL]:
            finish(s)
            begin()


def request_worker(port: int, secure: bool, path: list[str], sessions: int, window: int,
                   barrier: Any, stop: Any, counter: Any, slot: int) -> None:
    """``window`` CON PUTs outstanding per session; counter[slot] += answers."""
    socks, ends = [], []
    for _ in range(sessions):
        if secure:
            client = DTLSClient(port, psk=(IDENTITY, KEY)).handshake()
            client.sock.setblocking(False)
            socks.append(client.sock)
            ends.append(client.end)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((HOST, port))
            s.setblocking(False)
            socks.append(s)
            ends.append(None)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sel.register(s, selectors.EVENT_READ, i)
    options = b"".join(bytes([(11 if n == 0 else 0) << 4 | len(p)]) + p.encode()
                       for n, p in enumerate(path))
    mids = [slot * 4096 + i * 256 for i in range(sessions)]

    def fire(i: int, n: int) -> None:
        for _ in range(n):
            mids[i] = mid = (mids[i] + 1) & 0xFFFF
            message = bytes([0x42, PUT]) + struct.pack("!H", mid) + struct.pack("!H", mid) \
                + options + b"\xff" + b"x" * 64
            end = ends[i]
            for d in (end.send(message) if end is not None else [message]):
                try:
                    socks[i].send(d)
                except OSError:
                    return

    if not mqttload._go(barrier):
        return
    for i in range(sessions):
        fire(i, window)
    while not stop.is_set():
        events = sel.select(0.2)
        if not events:
            for i in range(sessions):
                fire(i, window)
            continue
        for key, _ in events:
            i = key.data
            n = 0
            while True:
                try:
                    data = socks[i].recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                end = ends[i]
                if end is None:
                    n += 1
                else:
                    end.feed(data)
                    n += len(end.received)
                    end.received.clear()
            counter[slot] += n
            fire(i, n)


# ------------------------------------------------------------------ servers

class Server(brokers.Server):
    """The gateway, or libcoap's server: ``coap`` in clear, ``coaps`` with DTLS."""

    def __init__(self, name: str, workdir: Path, pki: dict[str, str]) -> None:
        log = workdir / f"{name}.log"
        self.mqtt: int | None = None
        if name == "mqttgateway":
            self.coap = brokers.free_port(socket.SOCK_DGRAM)
            self.coaps = brokers.free_port(socket.SOCK_DGRAM)
            self.mqtt = brokers.free_port()
            self.path = ["ps", "bench", "put"]
            psk = workdir / "psk"
            psk.write_text(f"{IDENTITY}:{KEY.hex()}\n")
            conf = workdir / "gateway.conf"
            conf.write_text(GATEWAY_CONFIG.format(coap=self.coap, coaps=self.coaps, mqtt=self.mqtt,
                                                  host=HOST, pki=pki, psk=psk))
            super().__init__(name, brokers.spawn("mqttgateway", conf, log), log)
            self.wait_port(self.mqtt)
        else:
            self.coap = free_pair()
            self.coaps = self.coap + 1
            self.path = ["example_data"]
            argv = ["coap-server-openssl", "-A", HOST, "-p", str(self.coap), "-k", KEY.decode(),
                    "-h", "bench", "-c", pki["server"], "-j", pki["server_key"]]
            with open(log, "wb") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            super().__init__(name, proc, log)
            time.sleep(0.5)
            if not self.alive():
                raise RuntimeError(f"coap-server-openssl did not start: {self.log_tail()}")


def free_pair() -> int:
    """A UDP port whose next port is free too (libcoap's coaps is PORT+1)."""
    while True:
        port = brokers.free_port(socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((HOST, port + 1))
            return port
        except OSError:
            continue


# ------------------------------------------------------------------ scenarios

def measure(server: Server, procs: list[Any], counters: Any, barrier: Any, stop: Any,
            args: argparse.Namespace) -> tuple[float, float, float, float]:
    """Start ``procs``, let them warm up, then measure: (units/s, server CPU s, window s,
    busiest generator's CPU share)."""
    for p in procs:
        p.start()
    barrier.wait(60)
    time.sleep(args.warmup)
    t0, c0, g0, n0 = time.monotonic(), server.cpu(), brokers.cpu_of(procs), sum(counters)
    time.sleep(args.duration)
    t1, c1, g1, n1 = time.monotonic(), server.cpu(), brokers.cpu_of(procs), sum(counters)
    stop.set()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    dt = t1 - t0
    return (n1 - n0) / dt, c1 - c0, dt, max((b - a) / dt * 100 for a, b in zip(g0, g1))


def handshakes(server: Server, mode: str, pki: dict[str, str],
               args: argparse.Namespace) -> dict[str, float]:
    counters, stop, barrier = CTX.RawArray("q", 2), CTX.Event(), CTX.Barrier(3)
    procs = [CTX.Process(target=handshake_worker, daemon=True, args=(
        server.coaps, mode, pki, 16, barrier, stop, counters, i)) for i in range(2)]
    rate, cpu, dt, gen = measure(server, procs, counters, barrier, stop, args)
    return {"handshakes/s": rate, "CPU ms/hs": cpu / (rate * dt) * 1000 if rate else float("nan"),
            "server CPU %": cpu / dt * 100, "gen max %": gen}


def requests(server: Server, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, secure, port in (("dtls", True, server.coaps), ("clear", False, server.coap)):
        counters, stop, barrier = CTX.RawArray("q", 1), CTX.Event(), CTX.Barrier(2)
        procs = [CTX.Process(target=request_worker, daemon=True, args=(
            port, secure, server.path, 8, 8, barrier, stop, counters, 0))]
        rate, cpu, dt, gen = measure(server, procs, counters, barrier, stop, args)
        out[f"{label} req/s"] = rate
        out[f"{label} CPU ms/req"] = cpu / (rate * dt) * 1000 if rate else float("nan")
        out[f"{label} gen %"] = gen
    out["dtls/clear"] = out["dtls req/s"] / out["clear req/s"] if out["clear req/s"] else float("nan")
    return out


def probe(port: int, seconds: float, good_port: int | None) -> tuple[list[float], int]:
    """QoS 1 round trips, one at a time, for ``seconds``; and, with ``good_port``, a DTLS
    session every half second from 127.0.0.2 (the count that completed)."""
    sock = mqttload.session(HOST, port, "bench-probe", subs=[("bench/probe", 1)])
    latencies: list[float] = []
    good = 0
    next_good = time.monotonic()
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n = n % 65535 + 1
        t0 = time.perf_counter()
        sock.sendall(mqttload.publish("bench/probe", b"p", qos=1, packet_id=n))
        seen = 0
        while seen != 3:
            first, body = mqttload.read_packet(sock)
            if first & 0xF0 == 0x40:
                seen |= 1
            elif first & 0xF0 == 0x30:
                latencies.append(time.perf_counter() - t0)
                sock.sendall(b"\x40\x02" + body[2 + (body[0] << 8 | body[1]):][:2])
                seen |= 2
        if good_port is not None and time.monotonic() >= next_good:
            next_good += 0.5
            try:
                client = DTLSClient(good_port, psk=(IDENTITY, KEY), bind="127.0.0.2").handshake(5)
                client.close()
                good += 1
            except (OSError, TimeoutError):
                pass
        time.sleep(0.002)
    sock.close()
    return latencies, good


def flood_scenario(server: Server, args: argparse.Namespace) -> dict[str, float]:
    assert server.mqtt is not None
    out: dict[str, float] = {}
    quiet, _ = probe(server.mqtt, args.duration, None)
    gen = CTX.Process(target=flood, args=([server.coaps], args.duration + 1, 1), daemon=True)
    gen.start()
    time.sleep(0.5)
    c0 = server.cpu()
    loud, good = probe(server.mqtt, args.duration, server.coaps)
    cpu = server.cpu() - c0
    gen.join(10)
    for label, values in (("quiet", quiet), ("flood", loud)):
        values.sort()
        out[f"{label} p50 ms"] = values[len(values) // 2] * 1000
        out[f"{label} p99 ms"] = values[int(len(values) * 0.99)] * 1000
        out[f"{label} max ms"] = values[-1] * 1000
    out["good sessions"] = good
    out["flood server CPU %"] = cpu / args.duration * 100
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--out", type=Path, help="results file (default bench/results/dtls-DATE.txt)")
    args = ap.parse_args(argv)
    say = report.Tee(args.out or report.results_file("dtls"))
    say(report.header(sys.argv if argv is None else [sys.argv[0], *argv]))
    rows: list[tuple[str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="dtlsbench-") as tmp:
        pki = make_pki(Path(tmp))
        for scen in [s for s in args.only.split(",") if s]:
            for name in ("mqttgateway", "libcoap"):
                if scen == "flood" and name != "mqttgateway":
                    continue
                server = Server(name, Path(tmp), pki)
                try:
                    if scen.startswith("handshakes"):
                        result = handshakes(server, scen.split("-")[1], pki, args)
                    elif scen == "requests":
                        result = requests(server, args)
                    else:
                        result = flood_scenario(server, args)
                finally:
                    server.stop()
                rows.append((scen, name, result))
                say(f"[{name}] {scen}: " + ", ".join(f"{k} {v:,.2f}" for k, v in result.items()))
    say(report.versus(rows, "libcoap", "libcoap"))
    say.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
