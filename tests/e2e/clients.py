"""MQTT clients the end-to-end tests drive the gateway with.

``RawClient`` speaks bytes from ``tests/wire.py`` and reads whole packets back
without the gateway's codec; ``PahoClient`` wraps paho-mqtt 2.x; ``MosquittoSub``
and ``mosquitto_pub`` run Debian's command-line clients. Every wait has a
generous timeout whose only purpose is to turn a hang into a failure.
"""

from __future__ import annotations

import itertools
import queue
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests import wire

HOST = "127.0.0.1"
TIMEOUT = 10.0

PAHO_PROTOCOLS = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}
MOSQUITTO_VERSIONS = {3: "mqttv31", 4: "mqttv311", 5: "mqttv5"}
NEVER = 0xFFFFFFFF

_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A client id or topic level no other test in this run uses."""
    return f"{prefix}-{next(_serial)}"


# --- raw bytes -------------------------------------------------------------------


class RawClient:
    """A TCP connection to the gateway that sends raw bytes and reads whole packets."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what}; buffered {self.buffer!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"timed out waiting for {what}; buffered {self.buffer!r}") from None
        except ConnectionResetError:
            data = b""
        if not data:
            raise AssertionError(f"connection closed while waiting for {what}; buffered {self.buffer!r}")
        self.buffer += data

    def read_packet(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next packet as (first byte, body), decoded by hand."""
        deadline = time.monotonic() + timeout
        while True:
            buf = self.buffer
            if len(buf) >= 2:
                length = shift = 0
                for i in range(1, min(len(buf), 5)):
                    length |= (buf[i] & 0x7F) << shift
                    shift += 7
                    if buf[i] < 0x80:
                        end = i + 1 + length
                        if len(buf) >= end:
                            self.buffer = buf[end:]
                            return buf[0], buf[i + 1 : end]
                        break
            self._fill(deadline, "a packet")

    def expect(self, packet: bytes, timeout: float = TIMEOUT) -> None:
        """The next packet must be exactly ``packet``."""
        first, body = self.read_packet(timeout)
        got = bytes((first,)) + wire.remaining_length(len(body)) + body
        assert got == packet, f"expected {packet!r}, got {got!r}"

    def connect(self, client_id: str | bytes, **kwargs: Any) -> tuple[bool, int]:
        """Send CONNECT (``wire.connect`` arguments); return (session present, return code)."""
        self.send(wire.connect(client_id, **kwargs))
        first, body = self.read_packet()
        level = kwargs.get("proto_level", 4)
        assert first == 0x20 and (len(body) == 2 or level == 5), f"expected CONNACK, got {first:#04x} {body!r}"
        return bool(body[0] & 1), body[1]

    def expect_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Read until the gateway closes the connection; return what came before."""
        deadline = time.monotonic() + timeout
        received, self.buffer = self.buffer, b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection still open after {timeout}s; received {received!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data


# --- paho-mqtt -------------------------------------------------------------------


class PahoClient:
    """paho-mqtt 2.x with a background loop; every call waits for its acknowledgement.

    At level 5, ``clean_session`` means what it means at 3.1.1: a clean start whose
    session ends with the connection, or a kept session that never expires.
    """

    def __init__(
        self,
        port: int,
        client_id: str,
        protocol: int = 4,
        clean_session: bool = True,
        keepalive: int = 60,
        will: tuple[str, bytes, int, bool] | None = None,
        transport: str = "tcp",
        ca: str | None = None,
        cert: tuple[str, str] | None = None,
    ) -> None:
        """``transport="websockets"`` speaks MQTT over WebSockets (path ``/mqtt``);
        ``ca`` turns TLS on, trusting that CA; ``cert`` is a client certificate and
        its key."""
        self.port = port
        self.keepalive = keepalive
        self.protocol = protocol
        self.clean = clean_session
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=PAHO_PROTOCOLS[protocol],
            clean_session=clean_session if protocol != 5 else None,
            transport=transport,
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if ca is not None:
            certfile, keyfile = cert or (None, None)
            self.client.tls_set(ca_certs=ca, certfile=certfile, keyfile=keyfile)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[tuple[bool, int]] = queue.Queue()
        self.disconnects: list[Any] = []
        self._subacks: dict[int, list[int]] = {}
        self._unsubacks: set[int] = set()
        self._cond = threading.Condition()
        self._looping = False
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = lambda client, userdata, msg: self.messages.put(msg)
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connacks.put((bool(flags.session_present), reason.value))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: list[Any], properties: Any) -> None:
        with self._cond:
            self._subacks[mid] = [c.value for c in codes]
            self._cond.notify_all()

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, codes: Any, properties: Any) -> None:
        with self._cond:
            self._unsubacks.add(mid)
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._cond:
            self.disconnects.append(reason)
            self._cond.notify_all()

    def connect(self, timeout: float = TIMEOUT) -> bool:
        """Connect and wait for CONNACK 0; returns the session present flag."""
        if self.protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self.clean else NEVER
            self.client.connect(HOST, self.port, keepalive=self.keepalive, clean_start=self.clean,
                                properties=props)
        else:
            self.client.connect(HOST, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._looping = True
        try:
            present, code = self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no CONNACK within {timeout}s") from None
        assert code == 0, f"CONNACK return code {code}"
        return present

    def subscribe(self, topic_filter: str, qos: int = 0, timeout: float = TIMEOUT) -> list[int]:
        """Subscribe and return the granted QoS list from the SUBACK."""
        result, mid = self.client.subscribe(topic_filter, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(result)
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"no SUBACK for {topic_filter!r} within {timeout}s")
            return self._subacks.pop(mid)

    def unsubscribe(self, topic_filter: str, timeout: float = TIMEOUT) -> None:
        result, mid = self.client.unsubscribe(topic_filter)
        assert result == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(result)
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._unsubacks, timeout):
                raise AssertionError(f"no UNSUBACK for {topic_filter!r} within {timeout}s")

    def publish(
        self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False, timeout: float = TIMEOUT
    ) -> None:
        """Publish and, at QoS 1 and 2, wait for the gateway's PUBACK / PUBCOMP."""
        info = self.client.publish(topic, payload, qos, retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"publish to {topic!r} not completed within {timeout}s"

    def next_message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def wait_for(self, topic: str, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        """Every message up to and including the first one on ``topic``."""
        deadline = time.monotonic() + timeout
        seen: list[mqtt.MQTTMessage] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                msg = self.messages.get(timeout=max(remaining, 0))
            except queue.Empty:
                topics = [m.topic for m in seen]
                raise AssertionError(f"nothing on {topic!r} within {timeout}s; got {topics}") from None
            seen.append(msg)
            if msg.topic == topic:
                return seen

    def disconnect(self, timeout: float = TIMEOUT) -> None:
        """A clean DISCONNECT, then stop the loop."""
        self.client.disconnect()
        with self._cond:
            self._cond.wait_for(lambda: self.disconnects, timeout)
        self.close()

    def close(self) -> None:
        if self._looping:
            self._looping = False
            if self.client.is_connected():
                self.client.disconnect()
            self.client.loop_stop()


# --- mosquitto_pub / mosquitto_sub -------------------------------------------------


def mosquitto_pub(
    port: int,
    topic: str,
    payload: str | None,
    qos: int = 0,
    retain: bool = False,
    protocol: int = 4,
    client_id: str | None = None,
) -> None:
    """``mosquitto_pub`` once; ``payload=None`` sends an empty message (``-n``)."""
    argv = ["mosquitto_pub", "-h", HOST, "-p", str(port), "-V", MOSQUITTO_VERSIONS[protocol]]
    argv += ["-q", str(qos), "-t", topic, "-i", client_id or unique("mosq-pub")]
    argv += ["-n"] if payload is None else ["-m", payload]
    if retain:
        argv.append("-r")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr}{done.stdout}"


@dataclass
class SubMessage:
    qos: int
    retain: bool
    topic: str
    payload: str


class MosquittoSub:
    """``mosquitto_sub -d`` in the background; its output is read line by line."""

    PREFIX = "MSG "

    def __init__(self, port: int, topic_filter: str, qos: int = 0, protocol: int = 4) -> None:
        self.argv = ["stdbuf", "-oL", "mosquitto_sub", "-h", HOST, "-p", str(port), "-V", MOSQUITTO_VERSIONS[protocol]]
        self.argv += ["-q", str(qos), "-t", topic_filter, "-i", unique("mosq-sub")]
        self.argv += ["-d", "-F", self.PREFIX + "%q %r %t %p"]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _next_line(self, deadline: float, what: str) -> str:
        try:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            raise AssertionError(f"{what} not seen; mosquitto_sub said {self.output}") from None
        self.output.append(line)
        return line

    def wait_subscribed(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while "received SUBACK" not in self._next_line(deadline, "SUBACK"):
            pass

    def next_message(self, timeout: float = TIMEOUT) -> SubMessage:
        deadline = time.monotonic() + timeout
        while True:
            line = self._next_line(deadline, "a message")
            if line.startswith(self.PREFIX):
                qos, retain, topic, payload = line[len(self.PREFIX) :].split(" ", 3)
                return SubMessage(int(qos), retain == "1", topic, payload)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

