"""The crash test: acknowledged messages survive SIGKILL at random moments.

Publishers stream QoS 1 and QoS 2 messages to persistent sessions, some connected
all along, some offline until the end, while the gateway is killed (SIGKILL) and
started again on the same store ``KILLS`` times. paho-mqtt reconnects by itself and
completes its flows. At the end every message a publisher saw acknowledged (PUBACK,
or PUBCOMP at QoS 2) has reached every subscriber at least once, every QoS 2 message
reached each QoS 2 subscriber at most once, and acknowledged ones exactly once.

Environment: ``CRASH_KILLS`` sets the number of kills (bench/ runs longer ones),
``CRASH_SEED`` the random moments, and ``CRASH_KEEP`` keeps a copy of the store as each
kill left it (in the run's folder, for a post-mortem).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MessageState
import pytest

from tests.conftest import HOST, Gateway, cli_command, free_port

KILLS = int(os.environ.get("CRASH_KILLS", "20"))
WINDOW = 20          # messages each publisher has unacknowledged at most
DRAIN_TIMEOUT = 120  # seconds; only to avoid a hang


class Publisher:
    """Publishes ``prefix-N`` at one QoS as fast as acknowledgements allow."""

    def __init__(self, port: int, name: str, qos: int, level: int, clean: bool) -> None:
        self.name, self.qos = name, qos
        self.client = _client(name, level, clean)
        self.acked: set[bytes] = set()
        self.sent: dict[int, bytes] = {}
        self.early: set[int] = set()
        self.count = 0
        self.lock = threading.Lock()
        self.pubrel_due: set[int] = set()
        self.client.on_publish = self._on_publish
        self.client.on_pre_connect = self._keep_pubrel_due
        self.client.connect(HOST, port, keepalive=30, **_v5_args(level, clean))
        self.client.loop_start()

    def _keep_pubrel_due(self, client, userdata) -> None:
        """Work around paho-mqtt 2.2.0, which resets message states at every reconnect
        attempt, before connecting: a QoS 2 message waiting for PUBCOMP becomes "resend
        PUBREL" at the first attempt and "publish" at the second, so an attempt that
        fails (the gateway is still down) makes it send the PUBLISH again, which a
        broker must take as a new message (MQTT-4.3.3-2). Here the PUBREL stays due."""
        with client._out_message_mutex:
            for m in client._out_messages.values():
                if m.qos != 2:
                    continue
                if m.state == MessageState.MQTT_MS_RESEND_PUBREL:
                    self.pubrel_due.add(m.mid)
                elif m.mid in self.pubrel_due and m.state == MessageState.MQTT_MS_PUBLISH:
                    m.state = MessageState.MQTT_MS_RESEND_PUBREL

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.pubrel_due.discard(mid)
        with self.lock:
            payload = self.sent.pop(mid, None)
            if payload is None:
                self.early.add(mid)     # acknowledged before step() recorded it
            else:
                self.acked.add(payload)

    def step(self) -> None:
        with self.lock:
            if len(self.sent) >= WINDOW:
                return
            self.count += 1
            payload = b"%s-%d" % (self.name.encode(), self.count)
        # Not under the lock: paho calls on_publish holding its own.
        info = self.client.publish(f"crash/{self.name}", payload, self.qos)
        with self.lock:
            if info.mid in self.early:
                self.early.discard(info.mid)
                self.acked.add(payload)
            else:
                self.sent[info.mid] = payload

    def outstanding(self) -> int:
        with self.lock:
            return len(self.sent)


class Subscriber:
    def __init__(self, port: int, name: str, qos: int, level: int) -> None:
        self.name, self.qos, self.level, self.port = name, qos, level, port
        self.received: Counter[bytes] = Counter()
        self.trace: dict = {}
        self.lock = threading.Lock()
        self.client = _client(name, level, False)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.received[message.payload] += 1
            self.trace.setdefault(message.payload, []).append((message.mid, message.dup, time.time()))

    def connect(self) -> None:
        self.client.connect(HOST, self.port, keepalive=30, **_v5_args(self.level, False))
        self.client.loop_start()

    def subscribe(self) -> None:
        self.subscribed.clear()
        self.client.subscribe("crash/#", self.qos)
        assert self.subscribed.wait(10), f"{self.name}: no SUBACK"

    def leave(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def has(self, payloads: set[bytes]) -> bool:
        with self.lock:
            return all(self.received[p] for p in payloads)


def _client(name: str, level: int, clean: bool) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if level == 5 else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol,
                         clean_session=None if level == 5 else clean)
    client.reconnect_delay_set(0.05, 0.2)
    client.max_queued_messages_set(0)
    return client


def _v5_args(level: int, clean: bool) -> dict:
    if level != 5:
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else 0xFFFFFFFF
    return {"clean_start": clean, "properties": props}


def _wait(done, what: str, timeout: float = DRAIN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} not done within {timeout}s"
        time.sleep(0.05)


@pytest.fixture
def crash_gateway(tmp_path: Path):
    port = free_port()
    config = tmp_path / "mqttgateway.conf"
    config.write_text(f"listener {port} {HOST}\nallow_anonymous true\npersistence true\n"
                      f"persistence_location {tmp_path}/\nmax_queued_messages 0\n")
    runs: list[Gateway] = []

    def start() -> Gateway:
        workdir = tmp_path / f"run-{len(runs)}"
        workdir.mkdir()
        gw = Gateway(cli_command("-c", str(config)), [port], workdir, config)
        runs.append(gw)
        gw.wait_ready()
        return gw

    yield start
    for gw in runs:
        gw.kill()


def test_acknowledged_messages_survive_repeated_sigkill(crash_gateway):
    rng = random.Random(int(os.environ.get("CRASH_SEED", time.time())))
    gw = crash_gateway()
    port = gw.port
    online = [Subscriber(port, "on-q1-v5", 1, 5), Subscriber(port, "on-q2", 2, 4)]
    offline = [Subscriber(port, "off-q1", 1, 4), Subscriber(port, "off-q2", 2, 4)]
    for sub in online + offline:
        sub.connect()
        sub.subscribe()
    for sub in offline:
        sub.leave()
    publishers = [Publisher(port, "p-q1", 1, 4, clean=True),
                  Publisher(port, "p-q1-v5", 1, 5, clean=False),
                  Publisher(port, "p-q2", 2, 4, clean=False),
                  Publisher(port, "p-q2-b", 2, 4, clean=False)]
    running = threading.Event()
    running.set()

    def pump() -> None:
        while running.is_set():
            for p in publishers:
                p.step()
            time.sleep(0.002)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.6))
            assert gw.running(), gw.describe()
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait()
            gw.exit_observed = True
            if os.environ.get("CRASH_KEEP"):
                for suffix in ("", "-wal"):
                    src = Path(gw.config).parent / f"mqttgateway.db{suffix}"
                    if src.exists():
                        shutil.copy(src, Path(gw.log_path).parent / f"db{suffix}")
            gw = crash_gateway()
        time.sleep(0.3)
    finally:
        running.clear()
        pumper.join()
    _wait(lambda: not any(p.outstanding() for p in publishers), "the publishers' last flows")
    for sub in offline:
        sub.connect()
    acked = {p.name: set(p.acked) for p in publishers}
    everything = set().union(*acked.values())
    for sub in online + offline:
        _wait(lambda: sub.has(everything), f"{sub.name} receiving every acknowledged message")
    # The sessions are drained; a last round trip flushes any late duplicate.
    for sub in online + offline:
        sub.subscribe()
    assert gw.stop(signal.SIGTERM) == 0

    total = sum(p.count for p in publishers)
    assert sum(len(a) for a in acked.values()) > total // 2, "too little got through to test"
    for sub in online + offline:
        with sub.lock:
            received = dict(sub.received)
        missing = [p for p in everything if not received.get(p)]
        assert not missing, f"{sub.name} lost {len(missing)} acknowledged messages: {missing[:5]}"
        if sub.qos == 2:
            twice = [p for p, n in received.items() if n > 1 and p.startswith(b"p-q2")]
            assert not twice, f"{sub.name} got QoS 2 messages more than once (packet id, DUP, " \
                f"time): {[(t, sub.trace[t]) for t in twice[:5]]}"
    for p in publishers:
        p.client.disconnect()
        p.client.loop_stop()
    for sub in online + offline:
        sub.leave()
