"""Make the Mosquitto persistence files in this folder with Debian's ``mosquitto``.

    python tests/data/store/make_mosquitto_db.py [DEST_DIR]

Each scenario runs ``/usr/sbin/mosquitto`` on a loopback port picked at run time with
persistence in a temporary folder, drives it with paho-mqtt (MQTT 3.1.1 and 5) and
with raw packets (to leave messages half-acknowledged), then stops it with SIGTERM:
Mosquitto saves its database on the way out. ``tests/store/test_mosquitto_db.py``
checks what each file holds and regenerates one with the installed broker. A new
golden file has new expiry times and a new listener port, which those tests pin.

Every wait below guards against a hang only; progress is read from the broker's log
("Client X disconnected.") and from the packets it sends.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the checkout, when run as a script

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: E402

from tests import wire  # noqa: E402
from tests.e2e.clients import RawClient  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
TIMEOUT = 10.0

# The retained MQTT 5 message's properties, which the tests compare with.
V5_USER_PROPERTIES = [("unit", "C"), ("room", "kitchen"), ("unit", "F")]
V5_EXPIRY = 86400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Broker:
    """One ``mosquitto`` with persistence in ``workdir``; ``stop()`` returns its file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.log_path = workdir / "mosquitto.log"
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            # Run as root, Mosquitto would switch to the "mosquitto" user and could
            # not write here; as any other user this line changes nothing.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "log_dest stderr\n"
            "log_type all\n"
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._wait(self._accepts, "the listener")

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"mosquitto: no {what}; log:\n{self.log()}")
            time.sleep(0.02)

    def _accepts(self) -> bool:
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str) -> None:
        self._wait(lambda: text in self.log(), repr(text))

    def stop(self) -> bytes:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(f"mosquitto did not stop; log:\n{self.log()}") from None
        return (self.workdir / "mosquitto.db").read_bytes()


class Paho:
    """paho-mqtt at level 4 or 5; every call waits for its acknowledgement."""

    def __init__(self, broker: Broker, client_id: str, level: int, persistent: bool) -> None:
        self.broker = broker
        self.client_id = client_id
        protocol = mqtt.MQTTv5 if level == 5 else mqtt.MQTTv311
        kwargs = {} if level == 5 else {"clean_session": not persistent}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs
        )
        self.level = level
        self.persistent = persistent

    def connect(self, username: str | None = None, session_expiry: int = 0) -> Paho:
        if username:
            self.client.username_pw_set(username)
        kwargs = {}
        if self.level == 5:
            props = Properties(PacketTypes.CONNECT)
            if session_expiry:
                props.SessionExpiryInterval = session_expiry
            kwargs = {"clean_start": not self.persistent, "properties": props}
        self.client.connect(HOST, self.broker.port, **kwargs)
        self.client.loop_start()
        self._until(self.client.is_connected, "CONNACK")
        return self

    def _until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.client_id}: no {what}")
            time.sleep(0.01)

    def subscribe(self, topic_filter: str, qos: int, **v5: object) -> None:
        acked: list[int] = []
        self.client.on_subscribe = lambda *args: acked.append(args[2])
        if self.level == 5:
            options = SubscribeOptions(
                qos=qos,
                noLocal=bool(v5.get("no_local")),
                retainAsPublished=bool(v5.get("retain_as_published")),
            )
            props = Properties(PacketTypes.SUBSCRIBE)
            if v5.get("identifier"):
                props.SubscriptionIdentifier = v5["identifier"]
            _, mid = self.client.subscribe(topic_filter, options=options, properties=props)
        else:
            _, mid = self.client.subscribe(topic_filter, qos)
        self._until(lambda: mid in acked, f"SUBACK for {topic_filter}")

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool = False,
        props: Properties | None = None,
    ) -> None:
        info = self.client.publish(topic, payload, qos, retain, properties=props)
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            raise RuntimeError(f"{self.client_id}: publish to {topic} not acknowledged")

    def disconnect(self) -> None:
        """DISCONNECT, and wait until the broker has let the session go offline."""
        self.client.disconnect()
        self.client.loop_stop()
        self.broker.wait_log(f"Client {self.client_id} disconnected.")


def _v5_retained_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = V5_EXPIRY
    props.ContentType = "application/json"
    props.ResponseTopic = "r/v5/reply"
    props.CorrelationData = b"\x01\x02"
    props.UserProperty = V5_USER_PROPERTIES
    return props


def _expect(raw: RawClient, first: int) -> bytes:
    got, body = raw.read_packet()
    if got != first:
        raise RuntimeError(f"expected packet {first:#04x}, got {got:#04x} {body!r}")
    return body


def full(broker: Broker) -> None:
    """Retained messages, offline sessions at levels 4 and 5, messages in flight."""
    # Offline persistent sessions. Every one has a username: Mosquitto before 2.0.16
    # saves a client without one after a client with one with heap bytes (see
    # stale_username), which would make this file different at each run.
    s311 = Paho(broker, "sess-311", 4, persistent=True).connect(username="carol")
    s311.subscribe("q/zero", 0)
    s311.subscribe("q/one/#", 1)
    s311.subscribe("q/two/+", 2)
    s311.subscribe("$share/group/shared/#", 1)  # Mosquitto 2.0.11 does not save it
    s311.disconnect()
    s5 = Paho(broker, "sess-v5", 5, persistent=True).connect(username="alice", session_expiry=3600)
    s5.subscribe("v5/#", 1, no_local=True, retain_as_published=True, identifier=42)
    s5.subscribe("other/v5", 2)
    s5.disconnect()

    # A connected persistent client that leaves its deliveries half done.
    raw = RawClient(broker.port)
    raw.connect("sess-raw", clean=False, username="dave")
    raw.send(wire.subscribe(1, [("fly/#", 2)]))
    _expect(raw, 0x90)

    pub = Paho(broker, "pub-311", 4, persistent=False).connect()
    pub.publish("r/plain", b"21.5", 0, retain=True)
    pub.publish("r/binary", b"\x00\x01\xfe\xff", 1, retain=True)
    pub.publish("r/cleared", b"gone", 1, retain=True)
    pub.publish("r/cleared", b"", 1, retain=True)
    pub.publish("q/zero", b"not queued: QoS 0", 0)
    pub.publish("q/one/a", b"first", 1)
    pub.publish("q/one/b", b"second", 1)
    pub.publish("q/one/c", b"third, sent at QoS 2", 2)
    pub.publish("q/two/x", b"fourth", 2)
    pub.publish("shared/x", b"for the shared subscription", 1)
    pub.publish("fly/one", b"awaiting PUBACK", 1)
    pub.publish("fly/two", b"awaiting PUBCOMP", 2)
    pub.client.disconnect()
    pub.client.loop_stop()

    pub5 = Paho(broker, "pub-v5", 5, persistent=False).connect()
    pub5.publish("r/v5", b'{"t": 21.5}', 1, retain=True, props=_v5_retained_properties())
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "text/plain"
    props.UserProperty = [("k", "v")]
    pub5.publish("v5/x", b"for alice", 2, props=props)
    pub5.publish("other/v5", b"plain", 2)
    pub5.client.disconnect()
    pub5.client.loop_stop()

    first, body = raw.read_packet()  # fly/one, QoS 1: left without PUBACK
    if first & 0xF6 != 0x32:
        raise RuntimeError(f"expected a QoS 1 PUBLISH, got {first:#04x} {body!r}")
    first, body = raw.read_packet()  # fly/two, QoS 2: PUBREC, then no PUBCOMP
    if first & 0xF6 != 0x34:
        raise RuntimeError(f"expected a QoS 2 PUBLISH, got {first:#04x} {body!r}")
    topic_len = int.from_bytes(body[:2], "big")
    mid = int.from_bytes(body[2 + topic_len : 4 + topic_len], "big")
    raw.send(wire.pubrec(mid))
    _expect(raw, 0x62)  # PUBREL: the broker now waits for PUBCOMP
    raw.send(wire.publish("in/two", b"unreleased", qos=2, mid=77))
    _expect(raw, 0x50)  # PUBREC: held by the broker until a PUBREL that never comes


def stale_username(broker: Broker) -> None:
    """Three persistent sessions saved in order: with a username, without, without."""
    for client_id, username in (("a-user", "b"), ("b-none", None), ("c-none", None)):
        s = Paho(broker, client_id, 4, persistent=True).connect(username=username)
        s.subscribe(f"t/{client_id}", 1)
        s.disconnect()


SCENARIOS: dict[str, Callable[[Broker], None]] = {
    "v6-mosquitto-2.0.11.db": full,
    "v6-stale-username.db": stale_username,
}


def make(name: str, dest: Path) -> Path:
    """Run one scenario; the file lands in ``dest / name``."""
    workdir = Path(tempfile.mkdtemp(prefix="mosquitto-db-"))
    try:
        broker = Broker(workdir)
        try:
            SCENARIOS[name](broker)
        except BaseException:
            broker.proc.kill()
            broker.proc.wait()
            raise
        data = broker.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = dest / name
    out.write_bytes(data)
    return out


# --- broken copies of the golden file ----------------------------------------------

GOLDEN = "v6-mosquitto-2.0.11.db"
HEADER = 23  # magic, CRC, version


def chunks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each chunk of a version 5/6 file, read by hand."""
    out, pos = [], HEADER
    while pos < len(data):
        ctype, length = struct.unpack_from(">II", data, pos)
        out.append((pos, ctype, length))
        pos += 8 + length
    return out


def corrupt_variants(golden: bytes) -> dict[str, bytes]:
    """The golden file broken in the ways the reader must report."""
    first_message = next(off for off, ctype, _ in chunks(golden) if ctype == 2)
    second = chunks(golden)[1][0]
    bad_length = bytearray(golden)
    struct.pack_into(">I", bad_length, second + 4, 0x7FFFFF00)
    newer = bytearray(golden)
    struct.pack_into(">I", newer, 19, 7)
    garbage = bytearray(golden)
    garbage[first_message + 8 + 30] = 7  # PF_msg_store.qos
    return {
        "corrupt-truncated.db": golden[:-5],
        "corrupt-foreign.db": b"SQLite format 3\x00" + bytes(84),
        "corrupt-bad-magic.db": golden.replace(b"mosquitto db", b"mosquitto DB", 1),
        "corrupt-chunk-length.db": bytes(bad_length),
        "corrupt-newer-version.db": bytes(newer),
        "corrupt-garbage.db": bytes(garbage),
    }


def main(argv: list[str]) -> Iterator[Path]:
    dest = Path(argv[0]) if argv else HERE
    for name in SCENARIOS:
        yield make(name, dest)
    for name, data in corrupt_variants((dest / GOLDEN).read_bytes()).items():
        (dest / name).write_bytes(data)
        yield dest / name


if __name__ == "__main__":
    for path in main(sys.argv[1:]):
        print(f"{path}: {path.stat().st_size} bytes")
