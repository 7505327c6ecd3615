"""Persistence benchmark: QoS 1 throughput with acknowledgements tied to commits, restart
time with a large store, and store size, against Mosquitto in the same run.

Usage (from the repository root)::

    python bench/persist.py [--duration S] [--only throughput,restart]
                            [--mosquitto21 PATH] [--profile]

throughput  2 client processes, each a persistent session (clean session false)
            publishing QoS 1 to its own topic and subscribed to it, 50 messages between
            PUBLISH and delivery, PUBACKing each delivery at once (closed loop: nothing
            queues, nothing is dropped). Figures: PUBACKs received per second,
            deliveries per second, broker CPU (% of one core). Brokers: mqttgateway with persistence false, with
            persistence true (persistence_sync normal, then full), Debian's mosquitto
            2.0 with persistence true (saves every autosave_interval: its PUBACK does
            not wait for the disk), and with --mosquitto21 Mosquitto 2.1's
            persist-sqlite plugin with plugin_opt_flush_period 0 (commits every loop;
            its PUBACK does not wait either).
restart     fills a broker with 100,000 retained messages (64-byte payloads),
            10,000 persistent sessions each subscribed to its own topic and 100,000
            QoS 1 messages queued for them (10 each), stops it with SIGTERM, and times
            the next start until the port accepts; reports the store's size on disk.

``--profile`` adds a throughput run of the persistent gateway (persistence_sync full)
recorded with py-spy (``--gil``: the thread holding the interpreter; raw stacks under
bench/results/) and prints the functions with the most samples.
Raw output goes to bench/results/persist-DATE.txt with the host, the Python and git
versions and the command.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import brokers
import mqttload

HOST = brokers.HOST
RESULTS = brokers.REPO / "bench" / "results"
TOPIC = "bench/persist"
WINDOW = 50
CLIENTS = 2
PAYLOAD = b"x" * 64


# --- load generators (separate processes) ---------------------------------------------


def _connect(port: int, client_id: str, clean: bool) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mqttload.connect(client_id, 60, clean))
    first, body = mqttload.read_packet(sock)
    if first != 0x20 or body[1] != 0:
        raise ConnectionError(f"{client_id}: CONNACK {body!r}")
    return sock


def client(port: int, name: str, stop: Any, acked: Any, delivered: Any, ready: Any) -> None:
    """A persistent session (clean session false) publishing QoS 1 to its own topic,
    subscribed to it: ``WINDOW`` messages between PUBLISH and their delivery back, every
    delivery PUBACKed at once. Closed loop: nothing queues up, nothing is dropped."""
    sock = _connect(port, name, False)
    topic = f"{TOPIC}/{name}"
    sock.sendall(mqttload.subscribe(1, [(topic, 1)]))
    mqttload.read_packet(sock)
    ready.release()
    sock.settimeout(0.2)
    pid, window, buf = 0, 0, bytearray()
    while not stop.is_set():
        out = bytearray()
        while window < WINDOW:
            pid = pid % 32767 + 1          # ours; the broker's for deliveries are its own
            out += mqttload.publish(topic, PAYLOAD, 1, pid)
            window += 1
        try:
            if out:
                sock.sendall(out)
            data = sock.recv(1 << 16)
        except socket.timeout:
            continue
        if not data:
            break
        buf += data
        acks = got = 0
        out = bytearray()
        for first, body in mqttload.split_packets(buf):
            if first == 0x40:
                acks += 1
            elif first & 0xF0 == 0x30:
                got += 1
                tlen = int.from_bytes(body[:2], "big")
                out += mqttload.puback(int.from_bytes(body[2 + tlen:4 + tlen], "big"))
        window -= got
        if out:
            sock.sendall(out)
        with acked.get_lock():
            acked.value += acks
        with delivered.get_lock():
            delivered.value += got
    sock.close()


# --- brokers ------------------------------------------------------------------------


def config_lines(kind: str, store: Path, mosquitto21: str | None) -> list[str]:
    if kind == "gw-memory":
        return []
    if kind.startswith("gw-"):
        sync = kind.removeprefix("gw-persist-")
        return ["persistence true", f"persistence_location {store}/", f"persistence_sync {sync}"]
    if kind == "mosquitto":
        return ["persistence true", f"persistence_location {store}/", "max_queued_messages 1000"]
    plugin = Path(mosquitto21).parent.parent / "plugins" / "persist-sqlite" / \
        "mosquitto_persist_sqlite.so"
    # Mosquitto 2.1 refuses "persistence true" beside a persistence plugin.
    return [f"persistence_location {store}/", f"plugin {plugin}", "plugin_opt_flush_period 0"]


def start(kind: str, workdir: Path, store: Path, mosquitto21: str | None) -> brokers.Server:
    port = brokers.free_port()
    conf = workdir / f"{kind}-{port}.conf"
    lines = [f"listener {port} {HOST}", "allow_anonymous true", "max_inflight_messages 20",
             *config_lines(kind, store, mosquitto21)]
    conf.write_text("\n".join(lines) + "\n")
    log = workdir / f"{kind}-{port}.log"
    name = "mqttgateway" if kind.startswith("gw-") else "mosquitto"
    if kind == "mosquitto21":
        env = dict(os.environ)
        with open(log, "wb") as out:
            proc = subprocess.Popen([mosquitto21, "-c", str(conf)], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
    else:
        proc = brokers.spawn(name, conf, log)
    server = brokers.Server(kind, proc, log)
    server.port = port  # type: ignore[attr-defined]
    server.wait_port(port)
    return server


# --- scenarios ------------------------------------------------------------------------


def workdirs(prefix: str) -> tuple[Path, Path]:
    """A folder for configs and logs and, inside, the store's: writable by everyone,
    since Mosquitto started as root runs as the user mosquitto."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)
    store = work / "store"
    store.mkdir()
    store.chmod(0o777)
    return work, store



def throughput(kind: str, args: argparse.Namespace, out: list[str],
               profile: bool = False) -> dict[str, float]:
    work, store = workdirs("persist-bench-")
    server = start(kind, work, store, args.mosquitto21)
    port = server.port  # type: ignore[attr-defined]
    stop, ready = mp.Event(), mp.Semaphore(0)
    acks, delivered = mp.Value("q", 0), mp.Value("q", 0)
    procs = [mp.Process(target=client, args=(port, f"c{i}", stop, acks, delivered, ready))
             for i in range(CLIENTS)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire(timeout=30)
    time.sleep(args.warmup)
    profiler = None
    if profile:
        raw = RESULTS / f"persist-profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        profiler = subprocess.Popen([spy, "record", "-r", "250", "-d", str(int(args.duration)),
                                     "-f", "raw", "--gil", "-o", str(raw), "--pid", str(server.proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a0, d0, c0, t0 = acks.value, delivered.value, server.cpu(), time.monotonic()
    time.sleep(args.duration)
    a1, d1, c1, t1 = acks.value, delivered.value, server.cpu(), time.monotonic()
    stop.set()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    if profiler is not None:
        profiler.wait()
        out.append(f"py-spy raw stacks: {raw}")
        out.extend(summarize_profile(raw))
    server.stop()
    size = sum(f.stat().st_size for f in store.iterdir())
    shutil.rmtree(work, ignore_errors=True)
    span = t1 - t0
    return {"acked/s": (a1 - a0) / span, "delivered/s": (d1 - d0) / span,
            "cpu%": 100 * (c1 - c0) / span, "store bytes": size}


def fill(port: int, retained: int, sessions: int, queued: int) -> None:
    """The restart scenario's state, through the broker's own front door."""
    sock = _connect(port, "filler", True)
    pid = 0
    for start_at in range(0, retained, 1000):
        out = bytearray()
        for i in range(start_at, min(retained, start_at + 1000)):
            packet = mqttload.publish(f"retained/{i}", PAYLOAD, 0)
            out += b"\x31" + packet[1:]      # the retain flag
        sock.sendall(out)
    batch = 200
    for start_at in range(0, sessions, batch):
        socks = []
        for i in range(start_at, min(sessions, start_at + batch)):
            s = socket.create_connection((HOST, port), timeout=30)
            s.sendall(mqttload.connect(f"session-{i}", 60, False)
                      + mqttload.subscribe(1, [(f"queue/{i}", 1)]))
            socks.append(s)
        for s in socks:
            mqttload.read_packet(s)
            mqttload.read_packet(s)
            s.sendall(b"\xe0\x00")
            s.close()
    sock.settimeout(60)
    buf = bytearray()
    inflight = 0
    done = 0
    for n in range(queued):
        pid = pid % 65535 + 1
        sock.sendall(mqttload.publish(f"queue/{n % sessions}", PAYLOAD, 1, pid))
        inflight += 1
        while inflight >= 500 or (n == queued - 1 and inflight):
            buf += sock.recv(65536)
            acks = sum(1 for first, _ in mqttload.split_packets(buf) if first == 0x40)
            inflight -= acks
            done += acks
    sock.sendall(b"\xe0\x00")
    sock.close()


def restart(kind: str, args: argparse.Namespace) -> dict[str, float]:
    work, store = workdirs("persist-restart-")
    server = start(kind, work, store, args.mosquitto21)
    t = time.monotonic()
    fill(server.port, args.retained, args.sessions, args.queued)  # type: ignore[attr-defined]
    fill_s = time.monotonic() - t
    t = time.monotonic()
    server.stop()
    stop_s = time.monotonic() - t
    size = sum(f.stat().st_size for f in store.iterdir())
    t = time.monotonic()
    server = start(kind, work, store, args.mosquitto21)
    start_s = time.monotonic() - t
    rss = server.ps.memory_info().rss
    server.stop()
    empty = work / "empty"
    empty.mkdir(mode=0o777)
    empty.chmod(0o777)
    t = time.monotonic()
    start(kind, work, empty, args.mosquitto21).stop()
    baseline = time.monotonic() - t
    shutil.rmtree(work, ignore_errors=True)
    return {"fill s": fill_s, "stop s": stop_s, "restart s": start_s,
            "empty start s": baseline, "store MB": size / 1e6, "RSS MB": rss / 1e6}


def summarize_profile(raw: Path, top: int = 25) -> list[str]:
    """Self and total samples per function from py-spy's raw (collapsed) stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"profile: {samples} samples; self time first"]
    lines += [f"  self {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    interesting = [f for f, _ in total.most_common() if "gateway/store" in f or "sqlite" in f]
    lines += [f"  total {100 * total[f] / samples:5.1f}%  {f}" for f in interesting[:10]]
    return lines


def header(argv: list[str]) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(brokers.REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    mosq = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True).stdout
    return [f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", f"cpu: {cpu} ({os.cpu_count()} cores)",
            f"python: {platform.python_version()}", f"git: {commit}",
            f"mosquitto: {mosq.splitlines()[0] if mosq else '?'}",
            f"command: python {' '.join(argv)}"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--only", default="throughput,restart")
    parser.add_argument("--mosquitto21", help="Mosquitto 2.1 binary (its build tree has the plugin)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--kinds", default="gw-memory,gw-persist-normal,gw-persist-full,mosquitto")
    parser.add_argument("--retained", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args(argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = header(argv)
    kinds = args.kinds.split(",")
    if args.mosquitto21 and "mosquitto21" not in kinds:
        kinds.append("mosquitto21")
    only = args.only.split(",")
    if "throughput" in only:
        figures = {}
        for kind in kinds:
            figures[kind] = throughput(kind, args, out)
            out.append(f"throughput {kind}: " + ", ".join(
                f"{k} {v:,.0f}" for k, v in figures[kind].items()))
            print(out[-1], flush=True)
        base = figures.get("gw-memory", {}).get("acked/s")
        for kind in kinds[1:] if base else ():
            out.append(f"ratio {kind} / gw-memory: {figures[kind]['acked/s'] / base:.2f}")
        if args.profile:
            # A run of its own: the sampler slows what it watches.
            figures = throughput("gw-persist-full", args, out, profile=True)
            out.append("profiled run gw-persist-full: " + ", ".join(
                f"{k} {v:,.0f}" for k, v in figures.items()))
    if "restart" in only:
        for kind in ("gw-persist-full", "mosquitto") + (("mosquitto21",) if args.mosquitto21 else ()):
            figures = restart(kind, args)
            out.append(f"restart {kind}: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()))
            print(out[-1], flush=True)
    path = RESULTS / f"persist-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    path.write_text("\n".join(out) + "\n")
    print("\n".join(out))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
