"""Bridge throughput: mqttgateway and Mosquitto as the site broker, each bridged out to
the same Debian Mosquitto.

Usage (from the repository root)::

    python bench/bridge.py [--messages N] [--window W] [--payload BYTES] [--qos Q]
                           [--brokers mqttgateway,mosquitto]

For each site broker: a fresh remote Mosquitto, the site broker with one bridge
(``topic bench/# out Q``), a subscriber on the remote (QoS 0, so it acknowledges
nothing) and a publisher on the site sending N messages at QoS Q with W in flight
(PUBACKs from the site broker open the window). The clock runs from the first
publish to the last message at the remote. Reported: messages/s end to end, the
site broker's CPU seconds per 100k messages, and the ratio mqttgateway/mosquitto.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brokers  # noqa: E402
import mqttload  # noqa: E402
import report  # noqa: E402

PUBACK = 0x40


BRIDGING = ("mqttgateway", "mosquitto")  # site brokers with a bridge config


def site_config(port: int, remote: int, qos: int) -> str:
    return (f"listener {port} {brokers.HOST}\nallow_anonymous true\nmax_inflight_messages 20\n"
            f"max_queued_messages 0\n"
            f"connection bench\naddress {brokers.HOST}:{remote}\nremote_clientid bench-site\n"
            f"cleansession true\nnotifications false\ntopic bench/# out {qos}\n")


def start_server(name: str, conf_text: str, workdir: Path, port: int) -> brokers.Server:
    conf = workdir / f"{name}-{port}.conf"
    conf.write_text(conf_text)
    log = workdir / f"{name}-{port}.log"
    server = brokers.Server(name, brokers.spawn(name, conf, log), log)
    server.wait_port(port)
    return server


def count_at(sock: socket.socket, wanted: int, done: threading.Event, got: list[float]) -> None:
    """Read until ``wanted`` PUBLISHes came; note the time of the last."""
    buf = bytearray()
    total = 0
    while total < wanted:
        chunk = sock.recv(1 << 18)
        if not chunk:
            break
        buf += chunk
        n, used = mqttload.count_publishes(buf)
        del buf[:used]
        total += n
    got.extend([time.monotonic(), float(total)])
    done.set()


def publish(sock: socket.socket, count: int, window: int, qos: int, payload: bytes) -> None:
    """Send ``count`` messages, at most ``window`` unacknowledged (QoS 0: all at once)."""
    if qos == 0:
        sock.sendall(b"".join(mqttload.publish(f"bench/{i % 16}", payload) for i in range(count)))
        return
    sent = acked = 0
    buf = bytearray()
    while acked < count:
        burst = []
        while sent < count and sent - acked < window:
            sent += 1
            burst.append(mqttload.publish(f"bench/{sent % 16}", payload, qos, sent % 65535 + 1))
        if burst:
            sock.sendall(b"".join(burst))
        buf += sock.recv(65536)
        pos = 0
        while pos + 4 <= len(buf):
            if buf[pos] >> 4 == PUBACK >> 4:
                acked += 1
            pos += 2 + buf[pos + 1]
        del buf[:pos]


def warm_up(site: int, remote: int) -> None:
    """Wait until a message published at the site reaches the remote (bridge up)."""
    sub = mqttload.session(brokers.HOST, remote, "bench-warm-sub", subs=[("bench/warm", 0)])
    pub = mqttload.session(brokers.HOST, site, "bench-warm-pub")
    sub.settimeout(0.2)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            pub.sendall(mqttload.publish("bench/warm", b"x"))
            try:
                if sub.recv(1024):
                    return
            except socket.timeout:
                continue
        raise brokers.BrokerError("the bridge did not come up within 30 s")
    finally:
        sub.close()
        pub.close()


def run(name: str, args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    remote_port, site_port = brokers.free_port(), brokers.free_port()
    remote = start_server("mosquitto", f"listener {remote_port} {brokers.HOST}\n"
                          "allow_anonymous true\nmax_queued_messages 0\n", workdir, remote_port)
    try:
        site = start_server(name, site_config(site_port, remote_port, args.qos), workdir, site_port)
    except BaseException:
        remote.stop()  # a site broker that fails to start leaves no remote behind
        raise
    try:
        warm_up(site_port, remote_port)
        sub = mqttload.session(brokers.HOST, remote_port, "bench-sub", subs=[("bench/#", 0)])
        pub = mqttload.session(brokers.HOST, site_port, "bench-pub")
        done = threading.Event()
        got: list[float] = []
        reader = threading.Thread(target=count_at, args=(sub, args.messages, done, got), daemon=True)
        reader.start()
        cpu0 = site.cpu()
        start = time.monotonic()
        publish(pub, args.messages, args.window, args.qos, b"p" * args.payload)
        if not done.wait(120):
            raise brokers.BrokerError(f"{name}: messages still missing after 120 s")
        cpu = site.cpu() - cpu0
        end, total = got
        if total < args.messages:
            raise brokers.BrokerError(f"{name}: {int(total)} of {args.messages} arrived")
        pub.close()
        sub.close()
        return args.messages / (end - start), cpu * 100_000 / args.messages
    finally:
        site.stop()
        remote.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--brokers", default=",".join(BRIDGING),
                        help=f"site brokers, of {', '.join(BRIDGING)} (aedes has no bridge)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/bridge-DATE.txt)")
    args = parser.parse_args(argv)
    names = args.brokers.split(",")
    unknown = [n for n in names if n not in BRIDGING]
    if unknown:
        parser.error(f"cannot bridge: {', '.join(unknown)}")
    say = report.Tee(args.out or report.results_file("bridge"))
    say(report.header(sys.argv if argv is None else [sys.argv[0], *argv]))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        for name in names:
            results[name] = run(name, args, Path(tmp))
    say(f"bridge, QoS {args.qos}, {args.messages} messages of {args.payload} bytes, "
        f"window {args.window}")
    say(f"{'':14}{'msg/s':>10}{'CPU s/100k':>12}")
    for name in names:
        rate, cpu = results[name]
        say(f"{name:14}{rate:10.0f}{cpu:12.2f}")
    if len(names) == 2:
        (r1, c1), (r2, c2) = results[names[0]], results[names[1]]
        say(f"{'ratio':14}{r1 / r2:10.2f}{c1 / c2:12.2f}")
    say.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
