"""Churn without leaks: tens of thousands of short-lived clients, then the gateway's RSS.

Usage (from the repository root)::

    python bench/churn.py [--clients 20000] [--rounds 2] [--only mqtt,coap,mqttsn] [--procs 4]
                          [--wave 250] [--warmup 1000] [--settle 10] [--coap-settle 260]
                          [--sn-settle 100]

One gateway (MQTT, MQTT-SN UDP and CoAP listeners, ``persistent_client_expiration
1h``) serves three phases in turn. Each phase first runs ``--warmup`` clients (the
allocator, caches and lazily built tables reach their working size), lets the
gateway settle and takes RSS "start"; then ``--clients`` clients from ``--procs``
processes, ``--wave`` at a time per process, and RSS "end" once the gateway has
settled (``$SYS/broker/clients/total`` back where it was, then ``--settle``
seconds). "peak" is the highest RSS sampled (every 0.2 s) during the phase.

mqtt    each client connects, subscribes to its own topic (QoS 1), publishes QoS 1
        to it, receives and acknowledges its own message, and disconnects. Even
        clients use a clean session; odd ones a persistent session, into which
        another client then queues a QoS 1 message while it is away, and which it
        ends by connecting again with a clean session (the gateway expires
        persistent sessions only by ``persistent_client_expiration``, hours at
        least, checked once a minute; MQTT 5's session expiry interval will let a
        client ask for seconds instead).
coap    each client observes ``/ps/churn/...`` (one resource per wave), receives
        one notification (an MQTT client publishes to the wave's topic), then
        even clients deregister (GET, Observe: 1) and odd ones answer the
        notification with RST. A NON notification may be lost (counted; that
        client deregisters with GET). The gateway remembers every CoAP request
        for EXCHANGE_LIFETIME (247 s, up to ``coap_deduplication_entries``) and
        drops expired entries when the next request comes, so this phase settles
        for ``--coap-settle`` seconds (260), sends one request, then takes RSS "end".
mqttsn  each client connects, registers and subscribes to its own topic,
        publishes QoS 1 to it, receives and acknowledges its own message and
        disconnects; odd clients connect without the clean flag first and end
        the session by connecting again with it. A departed client's channel
        lives until its supervision timer (1.5 x the 60 s keepalive) fires, so
        this phase settles for ``--sn-settle`` seconds (100).

Each phase runs ``--rounds`` times (2) on the same gateway. RSS "end" of the last
round is compared with the first "start" (the 10 % goal), but CPython rarely gives
freed memory back to the system (a round's "end" creeps towards its peak as arenas
stay partly used), so the verdict is the growth from one round's peak to the next:
memory that was freed is reused, while a leak adds its size again every round (more
than 2 % fails). Any protocol error or timeout is counted per phase. The report goes to stdout and
to ``bench/results/churn-DATE.txt``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import selectors
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))
import brokers  # noqa: E402
import coap_load  # noqa: E402
import mqttload as mq  # noqa: E402
import report  # noqa: E402

HOST = brokers.HOST
CTX = mp.get_context("fork")
PHASES = ("mqtt", "coap", "mqttsn")
# The MQTT listener last: listeners are bound in file order, and the MQTT port
# accepting is what says the gateway is up.
CONFIG = """\
allow_anonymous true
listener {sn} {host}
protocol mqttsn
listener {coap} {host}
protocol coap
listener {mqtt} {host}
sys_interval 1
persistent_client_expiration 1h
coap_max_requests_per_second 0
coap_max_requests_per_address 0
"""
TIMEOUT = 10.0


class Gateway(brokers.Server):
    """mqttgateway with MQTT, MQTT-SN and CoAP listeners on free ports (also used by soak)."""

    grace = 10.0

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.mqtt = brokers.free_port()
        self.sn = brokers.free_port(socket.SOCK_DGRAM)
        self.coap = brokers.free_port(socket.SOCK_DGRAM)
        conf = workdir / "gateway.conf"
        conf.write_text(CONFIG.format(mqtt=self.mqtt, sn=self.sn, coap=self.coap, host=HOST) + extra)
        log = workdir / "gateway.log"
        super().__init__("mqttgateway", brokers.spawn("mqttgateway", conf, log), log)
        self.wait_port(self.mqtt)


# --- MQTT ------------------------------------------------------------------------------


def expect(sock: socket.socket, kind: int, what: str) -> bytes:
    first, body = mq.read_packet(sock)
    if first & 0xF0 != kind:
        raise ConnectionError(f"{what}: got packet {first:#04x}, wanted {kind:#04x}")
    return body


def closed_by_peer(sock: socket.socket) -> None:
    """After DISCONNECT: wait for the server to close, so TIME_WAIT stays on its side."""
    try:
        sock.recv(1)
    except OSError:
        pass
    sock.close()


def mqtt_wave(port: int, ids: list[int], feeder: socket.socket) -> None:
    socks = []
    try:
        for i in ids:
            s = socket.create_connection((HOST, port), timeout=TIMEOUT)
            socks.append(s)
            s.sendall(mq.connect(f"churn-{i}", 60, clean=i % 2 == 0))
        for s in socks:
            expect(s, mq.CONNACK, "CONNACK")
        for s, i in zip(socks, ids):
            s.sendall(mq.subscribe(1, [(f"churn/mqtt/{i}", 1)]))
        for s in socks:
            if expect(s, mq.SUBACK, "SUBACK")[2:] != b"\x01":
                raise ConnectionError("subscription refused")
        for s, i in zip(socks, ids):
            s.sendall(mq.publish(f"churn/mqtt/{i}", b"hello", 1, 2))
        for s in socks:
            kinds = set()
            for _ in range(2):
                first, body = mq.read_packet(s)
                kinds.add(first & 0xF0)
                if first & 0xF0 == mq.PUBLISH:
                    tlen = struct.unpack_from("!H", body)[0]
                    s.sendall(mq.puback(struct.unpack_from("!H", body, 2 + tlen)[0]))
            if kinds != {mq.PUBACK, mq.PUBLISH}:
                raise ConnectionError(f"own message: got {sorted(kinds)}")
        for s in socks:
            s.sendall(b"\xe0\x00")
        for s in socks:
            closed_by_peer(s)
        socks = []
        persistent = [i for i in ids if i % 2]
        for n, i in enumerate(persistent, 1):
            feeder.sendall(mq.publish(f"churn/mqtt/{i}", b"queued", 1, n))
        for _ in persistent:
            expect(feeder, mq.PUBACK, "feeder PUBACK")
        for i in persistent:
            s = socket.create_connection((HOST, port), timeout=TIMEOUT)
            socks.append(s)
            s.sendall(mq.connect(f"churn-{i}", 60, clean=True))
        for s in socks:
            if expect(s, mq.CONNACK, "clean CONNACK") != b"\x00\x00":
                raise ConnectionError("clean session with session present")
            s.sendall(b"\xe0\x00")
        for s in socks:
            closed_by_peer(s)
        socks = []
    finally:
        for s in socks:
            s.close()


def mqtt_worker(gw: dict[str, int], slot: int, ids: list[int], wave: int, done: Any, results: Any) -> None:
    _worker(slot, ids, wave, done, results, lambda: mq.session(HOST, gw["mqtt"], f"churn-feed-{slot}"),
            lambda feeder, batch: mqtt_wave(gw["mqtt"], batch, feeder))


# --- CoAP ------------------------------------------------------------------------------


class Datagrams:
    """One UDP socket per client; requests go out ``BURST`` at a time and are resent
    after a second of silence, so a full server socket buffer costs a resend, not a hang."""

    BURST = 50

    def __init__(self, port: int, n: int) -> None:
        self.socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((HOST, port))
            s.setblocking(False)
            self.socks.append(s)

    def ask(self, s: socket.socket, datagram: bytes, accept: Callable[[bytes], bool]) -> bytes:
        """One request and its answer."""
        return self.exchange([datagram], lambda k, r: accept(r), [s])[0]

    def exchange(self, datagrams: list[bytes], accept: Callable[[int, bytes], bool],
                 socks: list[socket.socket] | None = None, what: str = "",
                 timeout: float = TIMEOUT, strict: bool = True) -> list[bytes]:
        """Send ``datagrams[k]`` on socket k (none if empty) and return, per socket, the
        first reply ``accept(k, reply)`` takes; after ``timeout`` seconds raise
        TimeoutError, or (not ``strict``) leave b"" for the unanswered."""
        socks = self.socks if socks is None else socks
        replies = [b""] * len(socks)
        sel = selectors.DefaultSelector()
        for first in range(0, len(socks), self.BURST):
            pending = set(range(first, min(first + self.BURST, len(socks))))
            for k in pending:
                sel.register(socks[k], selectors.EVENT_READ, k)
            deadline = time.monotonic() + timeout
            while pending:
                for k in pending:
                    if datagrams[k]:
                        socks[k].send(datagrams[k])
                resend = time.monotonic() + 1.0
                while pending and time.monotonic() < resend:
                    for key, _ in sel.select(max(0.0, resend - time.monotonic())):
                        k = key.data
                        try:
                            reply = socks[k].recv(4096)
                        except (BlockingIOError, ConnectionRefusedError):
                            continue
                        if k in pending and accept(k, reply):
                            replies[k] = reply
                            pending.discard(k)
                            sel.unregister(socks[k])
                if pending and time.monotonic() > deadline:
                    if not strict:
                        for k in pending:
                            sel.unregister(socks[k])
                        break
                    sel.close()
                    raise TimeoutError(f"{what}: {len(pending)} of {len(socks)} unanswered")
        sel.close()
        return replies

    def close(self) -> None:
        for s in self.socks:
            s.close()


def coap_reply(token: bytes, mid: int | None = None) -> Callable[[bytes], bool]:
    """A 2.05 carrying ``token`` (and message id ``mid``, if given)."""
    def accept(r: bytes) -> bool:
        return (len(r) >= 4 + len(token) and r[1] == 0x45 and r[4 : 4 + (r[0] & 15)] == token
                and (mid is None or r[2:4] == struct.pack("!H", mid)))
    return accept


def coap_request(mid: int, token: bytes, path: list[str], observe: int | None) -> bytes:
    """GET, CON, with Observe 0 (register), 1 (deregister, RFC 7641 3.6) or none."""
    out = bytes([0x40 | len(token), coap_load.GET_CODE]) + struct.pack("!H", mid) + token
    last = 0
    if observe is not None:
        out += b"\x60" if observe == 0 else bytes([0x61, observe])  # option 6, uint
        last = 6
    for seg in path:
        raw = seg.encode()
        out += bytes([(11 - last) << 4 | len(raw)]) + raw
        last = 11
    return out


def coap_wave(port: int, ids: list[int], feeder: socket.socket, slot: int, lost: list[int]) -> None:
    path = ["ps", "churn", "coap", str(slot), str(ids[0])]
    topic = "/".join(path[1:])
    tokens = [b"ob%d" % n for n in range(len(ids))]
    udp = Datagrams(port, len(ids))
    try:
        udp.exchange([coap_request(n + 1, t, path, 0) for n, t in enumerate(tokens)],
                     lambda k, r: coap_reply(tokens[k], k + 1)(r), what="registration")
        feeder.sendall(mq.publish(topic, b"notify", 1, 1))
        expect(feeder, mq.PUBACK, "feeder PUBACK")
        # NON notifications may be lost (a full socket buffer drops them): those
        # observers are counted and deregister with a GET like the even ones.
        notes = udp.exchange([b""] * len(ids), lambda k, r: coap_reply(tokens[k])(r) and r[0] >> 4 & 3 in (0, 1),
                             what="notification", timeout=3.0, strict=False)
        lost[0] += notes.count(b"")
        for s, note, i in zip(udp.socks, notes, ids):
            # odd clients: RST ends the observation; even ones ACK a CON and deregister
            if note and (i % 2 or note[0] >> 4 & 3 == coap_load.CON):
                s.send(bytes([0x70 if i % 2 else 0x60, 0, note[2], note[3]]))
        get = [n for n, i in enumerate(ids) if i % 2 == 0 or not notes[n]]
        udp.exchange([coap_request(0x8000 + n, tokens[n], path, 1) for n in get],
                     lambda k, r: r[2:4] == struct.pack("!H", 0x8000 + get[k]), [udp.socks[n] for n in get],
                     "deregistration")
    finally:
        udp.close()


def coap_ping(port: int) -> None:
    """One request: the gateway drops expired deduplication entries when the next
    request comes (it runs no timer for them)."""
    udp = Datagrams(port, 1)
    try:
        udp.ask(udp.socks[0], coap_request(1, b"ping", ["ps", "churn", "ping"], None), lambda r: r[2:4] == b"\x00\x01")
        time.sleep(2.0)
    finally:
        udp.close()


def coap_worker(gw: dict[str, int], slot: int, ids: list[int], wave: int, done: Any, results: Any) -> None:
    lost = [0]
    _worker(slot, ids, wave, done, results, lambda: mq.session(HOST, gw["mqtt"], f"churn-coap-{slot}"),
            lambda feeder, batch: coap_wave(gw["coap"], batch, feeder, slot, lost), lambda: {"lost": lost[0]})


# --- MQTT-SN ---------------------------------------------------------------------------


def sn(msg_type: int, body: bytes) -> bytes:
    return bytes([len(body) + 2, msg_type]) + body


def sn_connect(client_id: str, clean: bool) -> bytes:
    return sn(0x04, struct.pack("!BBH", 0x04 if clean else 0, 1, 60) + client_id.encode())


def sn_wave(port: int, ids: list[int]) -> None:
    udp = Datagrams(port, len(ids))

    def kind(t: int) -> Callable[[int, bytes], bool]:
        return lambda k, r: len(r) > 1 and r[1] == t

    try:
        acks = udp.exchange([sn_connect(f"churn-sn-{i}", i % 2 == 0) for i in ids], kind(0x05))
        if any(a[2] for a in acks):
            raise ConnectionError("CONNACK refused")
        topics = [f"churn/sn/{i}".encode() for i in ids]
        regs = udp.exchange([sn(0x0A, struct.pack("!HH", 0, 1) + t) for t in topics], kind(0x0B))
        subs = udp.exchange([sn(0x12, struct.pack("!BH", 0x20, 2) + t) for t in topics], kind(0x13))
        if any(r[7] for r in subs):
            raise ConnectionError("SUBACK refused")
        got: list[set[int]] = [set() for _ in ids]

        def own(k: int, r: bytes) -> bool:
            """Both the PUBACK and the client's own message; the message is acknowledged."""
            if len(r) > 6 and r[1] == 0x0C:
                udp.socks[k].send(sn(0x0D, r[3:7] + b"\x00"))
            if len(r) > 1:
                got[k].add(r[1])
            return {0x0C, 0x0D} <= got[k]

        udp.exchange([sn(0x0C, struct.pack("!BHH", 0x20, struct.unpack_from("!H", r, 2)[0], 3) + b"hello")
                      for r in regs], own)
        udp.exchange([sn(0x18, b"")] * len(ids), kind(0x18))
        odd = [udp.socks[k] for k, i in enumerate(ids) if i % 2]
        udp.exchange([sn_connect(f"churn-sn-{i}", True) for i in ids if i % 2], kind(0x05), odd)
        udp.exchange([sn(0x18, b"")] * len(odd), kind(0x18), odd)
    finally:
        udp.close()


def sn_worker(gw: dict[str, int], slot: int, ids: list[int], wave: int, done: Any, results: Any) -> None:
    _worker(slot, ids, wave, done, results, lambda: None, lambda _feeder, batch: sn_wave(gw["sn"], batch))


# --- running a phase ---------------------------------------------------------------------


def _worker(slot: int, ids: list[int], wave: int, done: Any, results: Any,
            open_feeder: Callable[[], Any], run_wave: Callable[[Any, list[int]], None],
            extra: Callable[[], dict] = dict) -> None:
    mq.raise_nofile()
    errors: Counter[str] = Counter()
    feeder = None
    for start in range(0, len(ids), wave):
        batch = ids[start : start + wave]
        try:
            if feeder is None:
                feeder = open_feeder()
            run_wave(feeder, batch)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
            if feeder is not None:
                feeder.close()
            feeder = None
        done[slot] += len(batch)
    if feeder is not None:
        feeder.sendall(b"\xe0\x00")
        closed_by_peer(feeder)
    results.put({"slot": slot, "errors": dict(errors), **extra()})


WORKERS = {"mqtt": mqtt_worker, "coap": coap_worker, "mqttsn": sn_worker}


class Monitor:
    """RSS every 0.2 s, and ``$SYS/broker/clients/total`` over MQTT."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.peak = 0
        self.total: int | None = None
        self.most = 0  # highest clients/total seen since reset_peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="churn-monitor")
        self.client.on_message = self._on_message
        self.client.connect(HOST, gw.mqtt)
        self.client.subscribe("$SYS/broker/clients/total")
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.total = int(msg.payload)
        self.most = max(self.most, self.total)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.gw.rss())
            except Exception:  # noqa: BLE001 - the process is gone: the phase reports it
                return

    def reset_peak(self) -> None:
        self.peak = self.gw.rss()
        self.most = self.total or 0

    def settle(self, baseline: int | None, pause: float, timeout: float = 120.0) -> int | None:
        """Wait until the client count is back to ``baseline``, then ``pause`` seconds."""
        deadline = time.monotonic() + timeout
        time.sleep(2.5)  # at least two $SYS intervals
        while baseline is not None and self.total != baseline and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(pause)
        return self.total

    def close(self) -> None:
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()


def run_clients(phase: str, gw: Gateway, first: int, n: int, args: argparse.Namespace,
                say: Callable[[str], None]) -> tuple[int, Counter[str], float]:
    ports = {"mqtt": gw.mqtt, "sn": gw.sn, "coap": gw.coap}
    done = CTX.RawArray("q", args.procs)
    results: Any = CTX.Queue()
    ids = list(range(first, first + n))
    procs = [CTX.Process(target=WORKERS[phase], args=(ports, k, ids[k :: args.procs], args.wave, done, results),
                         daemon=True) for k in range(args.procs)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    errors: Counter[str] = Counter()
    lost = got = 0
    next_line = t0 + 15
    while got < len(procs):
        try:
            r = results.get(timeout=1.0)
            errors.update(r["errors"])
            lost += r.get("lost", 0)
            got += 1
        except Exception:  # noqa: BLE001 - queue.Empty: keep waiting
            if not any(p.is_alive() for p in procs) and results.empty():
                errors["worker process died"] += len(procs) - got
                break
        if time.monotonic() > next_line:
            next_line += 15
            say(f"#   {phase}: {sum(done):,} of {n:,} clients, RSS {gw.rss() / 2**20:.1f} MiB")
    for p in procs:
        p.join(5)
    return sum(done), errors, time.monotonic() - t0, lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20_000, help="clients per phase")
    parser.add_argument("--only", default=",".join(PHASES), help="phases: " + ", ".join(PHASES))
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--wave", type=int, default=250, help="clients at a time per process")
    parser.add_argument("--warmup", type=int, default=1000, help="clients run before RSS start")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times each phase runs: a later round's RSS shows whether memory is reused")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the clients are gone")
    parser.add_argument("--coap-settle", type=float, default=260.0,
                        help="seconds after the CoAP clients are gone: the deduplication cache keeps "
                             "every request for EXCHANGE_LIFETIME (247 s)")
    parser.add_argument("--sn-settle", type=float, default=100.0,
                        help="seconds after the MQTT-SN clients are gone: a departed client's "
                             "supervision timer (1.5 x its 60 s keepalive) holds its channel until it fires")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/churn-DATE.txt)")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    if any(p not in PHASES for p in phases):
        parser.error(f"phases are {', '.join(PHASES)}")

    say = report.Tee(args.out or report.results_file("churn"))
    say(report.header(sys.argv if argv is None else [sys.argv[0], *argv]))
    rows = []
    verdicts: list[str] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="churn-") as tmp:
        gw = Gateway(Path(tmp))
        monitor = Monitor(gw)
        try:
            boot = monitor.settle(None, 2.0)
            say(f"# gateway pid {gw.proc.pid}, RSS after start {gw.rss() / 2**20:.1f} MiB, clients {boot}")
            first = 0
            for phase in phases:
                _, werr, _, _ = run_clients(phase, gw, first, args.warmup, args, say)
                first += args.warmup
                baseline = monitor.settle(boot, args.settle)
                start0 = prev_end = prev_peak = gw.rss()
                for rnd in range(1, args.rounds + 1):
                    start = gw.rss()
                    monitor.reset_peak()
                    done, errors, secs, lost = run_clients(phase, gw, first, args.clients, args, say)
                    first += args.clients
                    peak = max(monitor.peak, gw.rss())
                    most = monitor.most
                    pause = {"coap": args.coap_settle, "mqttsn": args.sn_settle}.get(phase, args.settle)
                    left = monitor.settle(baseline, pause)
                    if phase == "coap":
                        coap_ping(gw.coap)
                    end = gw.rss()
                    if rnd == 1:
                        errors.update(werr)
                    ratio = end / start0
                    name = f"{phase} {rnd}"
                    rows.append((name, done, secs, start, peak, end, ratio, baseline, most, left,
                                 sum(errors.values())))
                    say(f"{name}: {done:,} clients in {secs:.1f} s ({done / secs:,.0f}/s); RSS start "
                        f"{start / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, end {end / 2**20:.1f} MiB, "
                        f"end / first start {ratio:.3f}; $SYS clients/total {baseline} before, {most} at most, "
                        f"{left} after; errors {sum(errors.values())}"
                        + (f"; NON notifications lost {lost}" if phase == "coap" else ""))
                    for text, count in errors.most_common(10):
                        say(f"  error x{count}: {text}")
                    failed |= left != baseline or bool(errors) or not gw.alive()
                    if rnd > 1:
                        growth = peak / prev_peak
                        verdicts.append(f"{phase}: round {rnd} peaked at {growth:.3f} x round {rnd - 1}'s peak"
                                        f" ({'memory reused' if growth <= 1.02 else 'GROWS'}; end "
                                        f"{end / prev_end:.3f} x)")
                        failed |= growth > 1.02
                    prev_end, prev_peak = end, peak
                verdicts.append(f"{phase}: {'back within' if ratio <= 1.10 else 'NOT back within'} 10 % of the "
                                f"first start ({ratio:.3f})")
        finally:
            monitor.close()
            gw.stop()
    say("")
    say(f"{'phase':<8} {'clients':>8} {'clients/s':>9} {'RSS start':>10} {'peak':>8} {'end':>8} "
        f"{'end/first':>9} {'sessions':>14} {'errors':>6}")
    for phase, done, secs, start, peak, end, ratio, baseline, most, left, nerr in rows:
        say(f"{phase:<8} {done:>8,} {done / secs:>9,.0f} {start / 2**20:>9.1f}M {peak / 2**20:>7.1f}M "
            f"{end / 2**20:>7.1f}M {ratio:>9.3f} {f'{baseline}/{most}/{left}':>14} {nerr:>6}")
    say("\nRSS in MiB; sessions is $SYS/broker/clients/total before/at most/after"
        " (the monitor itself is one).")
    for v in verdicts:
        say(v)
    say("FAIL: sessions left, errors, or peak RSS growing from round to round" if failed
        else "PASS: no session left, no error, no peak RSS growth from round to round")
    say.close()
    print(f"results in {say.path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
