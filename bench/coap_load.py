"""CoAP load: mqttgateway's CoAP listener against a bare aiocoap server, same transport.

Usage (from the repository root)::

    python bench/coap_load.py [--duration S] [--warmup S] [--only coap-con,coap-non,coap-notify]

(``bench/run.py`` runs the same scenarios, one column per gateway checkout and one for
bare aiocoap, with its repeats and results file.)

Scenarios, each run against both servers in the same invocation:

coap-con     CON PUT /ps/bench/put, 8 sockets x 8 outstanding; the gateway publishes each
             into the hub, where one MQTT QoS 0 subscriber counts them
coap-non     the same with NON requests (their NON 2.04 responses pace the generator)
coap-notify  100 observers (raw sockets, NON notifications) of one resource; CON PUTs to
             it, 8 outstanding; each PUT is one notification per observer

"bare" is aiocoap 0.4.17 alone on the udp6 transport (the gateway's): a ``Site`` with
a ``Resource`` whose PUT does nothing, and an ``ObservableResource`` whose PUT calls
``updated_state()`` (aiocoap coalesces triggers, so under load it sends fewer
notifications than PUTs; the table counts what observers receive). The generator
sends pre-encoded datagrams from forked processes, so it is not the bottleneck
(``gen max`` shows its busiest process). CPU per request is the server's user+system
CPU over the window divided by completed requests (notifications for ``coap-notify``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
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
import brokers  # noqa: E402
import mqttload  # noqa: E402
import report  # noqa: E402

HOST = "127.0.0.1"
CTX = mp.get_context("fork")
SCENARIOS = ("coap-con", "coap-non", "coap-notify")
CON, NON, ACK, RST = 0, 1, 2, 3
PUT_CODE, GET_CODE = 3, 1
OBSERVERS = 100

# The CoAP listener first: listeners are bound in file order, and the MQTT port
# accepting is what says the gateway is up.
GATEWAY_CONFIG = """\
listener {coap} {host}
protocol coap
listener {mqtt} {host}
allow_anonymous true
sys_interval 0
coap_max_requests_per_second 0
"""


# ------------------------------------------------------------------ datagrams

def _option(delta: int, value: bytes) -> bytes:
    assert delta < 13 and len(value) < 13
    return bytes([delta << 4 | len(value)]) + value


def request(mtype: int, code: int, mid: int, token: bytes, path: list[str],
            query: list[str] = (), payload: bytes = b"", observe: bool = False) -> bytes:  # type: ignore[assignment]
    """One CoAP request, encoded by hand (RFC 7252 section 3)."""
    out = bytes([0x40 | mtype << 4 | len(token), code]) + struct.pack("!H", mid) + token
    last = 0
    if observe:
        out += _option(6, b"")
        last = 6
    for seg in path:
        out += _option(11 - last, seg.encode())
        last = 11
    for q in query:
        out += _option(15 - last, q.encode())
        last = 15
    return out + (b"\xff" + payload if payload else b"")


def prepared(mtype: int, path: list[str], payload: bytes, query: list[str] = ()) -> list[bytes]:  # type: ignore[assignment]
    """The request for every message id, token = message id, encoded once."""
    return [request(mtype, PUT_CODE, mid, struct.pack("!H", mid), path, query, payload)
            for mid in range(65536)]


# ------------------------------------------------------------------ workers

def put_worker(port: int, nsock: int, window: int, mtype: int, path: list[str],
               payload: bytes, barrier: Any, stop: Any, counter: Any, slot: int,
               results: Any) -> None:
    """Keep ``window`` requests outstanding per socket; count responses."""
    try:
        datagrams = prepared(mtype, path, payload)
        sel = selectors.DefaultSelector()
        socks = []
        for i in range(nsock):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((HOST, port))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sel.register(s, selectors.EVENT_READ, i)
            socks.append(s)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put({"who": f"put {slot}", "error": repr(exc)})
        barrier.abort()
        return
    mids = [(slot * 7919 + i * 8191) & 0xFFFF for i in range(nsock)]
    if not mqttload._go(barrier):
        return

    def fire(i: int, n: int) -> None:
        s = socks[i]
        for _ in range(n):
            mid = mids[i] = (mids[i] + 1) & 0xFFFF
            try:
                s.send(datagrams[mid])
            except OSError:
                return

    for i in range(nsock):
        fire(i, window)
    done = 0
    while not stop.is_set():
        events = sel.select(0.2)
        if not events:  # lost datagrams: start the windows again
            for i in range(nsock):
                fire(i, window)
            continue
        for key, _ in events:
            i = key.data
            s = key.fileobj
            n = 0
            while True:
                try:
                    s.recv(2048)  # type: ignore[union-attr]
                except (BlockingIOError, ConnectionRefusedError):
                    break
                n += 1
            done += n
            counter[slot] += n
            fire(i, n)
    results.put({"who": f"put {slot}", "done": done})


def observer_worker(port: int, count: int, path: list[str], query: list[str], barrier: Any,
                    stop: Any, counter: Any, slot: int, results: Any) -> None:
    """``count`` observers on raw sockets; count notifications, ACK the CON ones."""
    sel = selectors.DefaultSelector()
    try:
        for i in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((HOST, port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.settimeout(10)
            s.send(request(CON, GET_CODE, i + 1, b"ob%d" % i, path, query, observe=True))
            first = s.recv(2048)
            if first[1] != 0x45:  # 2.05 Content
                raise RuntimeError(f"observe registration answered {first[1] >> 5}."
                                   f"{first[1] & 31:02d}")
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
    except Exception as exc:  # noqa: BLE001
        results.put({"who": f"observers {slot}", "error": repr(exc)})
        barrier.abort()
        return
    if not mqttload._go(barrier):
        return
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            s = key.fileobj
            n = 0
            while True:
                try:
                    data = s.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                n += 1
                if data[0] >> 4 & 3 == CON:
                    s.send(bytes([0x60, 0, data[2], data[3]]))  # type: ignore[union-attr]
            counter[slot] += n
    results.put({"who": f"observers {slot}"})


# ------------------------------------------------------------------ servers

def serve_bare(port: int, transport: str) -> None:
    """The comparison server: aiocoap alone, resources that do nothing."""
    import asyncio

    import aiocoap
    from aiocoap import resource

    class Nop(resource.Resource):
        async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(code=aiocoap.CHANGED)

    class Notify(resource.ObservableResource):
        value = b""

        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=self.value, transport_tuning=aiocoap.Unreliable())

        async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
            self.value = request.payload
            self.updated_state()
            return aiocoap.Message(code=aiocoap.CHANGED)

    async def main() -> None:
        site = resource.Site()
        site.add_resource(["ps", "bench", "put"], Nop())
        site.add_resource(["ps", "bench", "notify"], Notify())
        await aiocoap.Context.create_server_context(site, bind=(HOST, port),
                                                    transports=[transport])
        print("ready", flush=True)
        await asyncio.Event().wait()

    os.environ["AIOCOAP_REUSE_PORT"] = "0"
    asyncio.run(main())


class Server(brokers.Server):
    """A server process: the gateway (with an MQTT port) or bare aiocoap."""

    grace = 10.0

    def __init__(self, name: str, workdir: Path, checkout: Path = brokers.REPO) -> None:
        self.coap = brokers.free_port(socket.SOCK_DGRAM)
        self.mqtt: int | None = None
        log = workdir / f"{name}-{self.coap}.log"
        if name == "mqttgateway":
            self.mqtt = brokers.free_port()
            conf = workdir / f"gateway-{self.coap}.conf"
            text = GATEWAY_CONFIG.format(mqtt=self.mqtt, coap=self.coap, host=HOST)
            if brokers.knows_key(checkout, "coap_max_requests_per_address"):
                text += "coap_max_requests_per_address 0\n"  # every client is 127.0.0.1
            conf.write_text(text)
            super().__init__(name, brokers.spawn("mqttgateway", conf, log, checkout), log)
            self.wait_port(self.mqtt)
        else:
            argv = [sys.executable, __file__, "--serve-bare", str(self.coap), "udp6"]
            with open(log, "wb") as err:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
            super().__init__(name, proc, log)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                self.stop()
                raise RuntimeError("bare aiocoap server did not start")


# ------------------------------------------------------------------ scenarios

def run_scenario(name: str, server: Server, args: argparse.Namespace) -> dict[str, float]:
    counters = CTX.RawArray("q", 8)
    stop = CTX.Event()
    results: Any = CTX.Queue()
    procs: list[Any] = []
    payload = b"x" * args.payload
    if name == "coap-notify":
        workers = 2
        barrier = CTX.Barrier(workers + 2)
        for w in range(workers):
            procs.append(CTX.Process(target=observer_worker, daemon=True, args=(
                server.coap, OBSERVERS // workers, ["ps", "bench", "notify"], ["qos=0"],
                barrier, stop, counters, 1 + w, results)))
        procs.append(CTX.Process(target=put_worker, daemon=True, args=(
            server.coap, 1, 8, CON, ["ps", "bench", "notify"], payload, barrier, stop,
            counters, 0, results)))
    else:
        mtype = CON if name == "coap-con" else NON
        barrier = CTX.Barrier(2 + (1 if server.mqtt else 0))
        procs.append(CTX.Process(target=put_worker, daemon=True, args=(
            server.coap, 8, 8, mtype, ["ps", "bench", "put"], payload, barrier, stop,
            counters, 0, results)))
        if server.mqtt:
            procs.append(CTX.Process(target=mqttload.subscriber, daemon=True, args=(
                HOST, server.mqtt, [1], "bench/put", barrier, stop, counters, results)))
    for p in procs:
        p.start()
    try:
        barrier.wait(60)
    except Exception:
        errors = []
        while not results.empty():
            errors.append(results.get().get("error"))
        stop.set()
        raise RuntimeError(f"{name}: workers failed: {errors}") from None
    time.sleep(args.warmup)
    t0, c0, g0, n0 = time.monotonic(), server.cpu(), brokers.cpu_of(procs), list(counters)
    time.sleep(args.duration)
    t1, c1, g1, n1 = time.monotonic(), server.cpu(), brokers.cpu_of(procs), list(counters)
    rss = server.rss()
    stop.set()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    dt = t1 - t0
    done = n1[0] - n0[0]  # responses to the generator
    delivered = sum(n1[1:]) - sum(n0[1:])  # MQTT deliveries or notifications
    unit = delivered if name == "coap-notify" else done
    cpu = c1 - c0
    return {
        "requests/s": done / dt,
        "delivered/s": delivered / dt,
        "CPU ms/unit": cpu / unit * 1000 if unit else float("nan"),
        "server CPU %": cpu / dt * 100,
        "gen max %": max((b - a) / dt * 100 for a, b in zip(g0, g1)),
        "RSS MiB": rss / 2**20,
    }


def parser() -> argparse.ArgumentParser:
    """The options (and defaults ``bench/run.py`` uses for these scenarios)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--serve-bare", nargs=2, metavar=("PORT", "TRANSPORT"), help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return 0
    scenarios = [s for s in args.only.split(",") if s]
    rows: list[tuple[str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="coapbench-") as tmp:
        for scen in scenarios:
            for name in ("mqttgateway", "bare"):
                server = Server(name, Path(tmp))
                try:
                    rows.append((scen, name, run_scenario(scen, server, args)))
                finally:
                    server.stop()
                print(f"[{name}] {scen}: " + ", ".join(
                    f"{k} {v:,.2f}" for k, v in rows[-1][2].items()), file=sys.stderr)
    print(report.versus(rows, "bare", "bare aiocoap"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
