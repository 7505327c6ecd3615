"""A real gateway subprocess and small synchronous wrappers around real clients."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[2]
WAIT = 15.0          # generous upper bound for anything to happen; never a measurement


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


class Gateway:
    """``python -m gateway.cli -c CONF`` on ports picked by the test."""

    def __init__(self, directory: Path, conf: str, ports: list[int]) -> None:
        self.directory = directory
        self.conf = directory / "gateway.conf"
        self.conf.write_text(conf)
        self.ports = ports
        self.log = directory / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gateway:
        """Start and wait for every listener. A port taken by someone else between
        ``free_port()`` and the bind is replaced by a fresh one (read ``self.ports``)."""
        for attempt in range(5):
            try:
                return self._start()
            except RuntimeError as e:
                if "Address already in use" not in str(e) or attempt == 4:
                    raise
                text = self.conf.read_text()
                fresh = [free_port() for _ in self.ports]
                for old, new in zip(self.ports, fresh):
                    text = re.sub(rf"^listener {old}\b", f"listener {new}", text, flags=re.M)
                self.conf.write_text(text)
                self.ports = fresh
        raise AssertionError("unreachable")

    def _start(self) -> Gateway:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "-c", str(self.conf)],
                                         env=env(), stdout=out, stderr=subprocess.STDOUT, cwd=self.directory)
        # Wait for the log line of each listener rather than probing the ports: a probe
        # would count against max_connections and max_connection_rate.
        deadline = time.monotonic() + WAIT
        for port in self.ports:
            while f"on 127.0.0.1:{port}" not in self.output():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.output()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway did not listen on {port}: {self.output()}")
                time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def sighup_and_wait(self, marker: str) -> None:
        """Send SIGHUP and wait until the log shows the reload's outcome (*marker*)."""
        before = self.output().count(marker)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while self.output().count(marker) <= before:
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_gateway_expecting_failure(directory: Path, conf: str) -> tuple[int, str]:
    path = directory / "bad.conf"
    path.write_text(conf)
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "-c", str(path)], env=env(),
                          capture_output=True, timeout=WAIT, cwd=directory)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


class Client:
    """paho-mqtt, driven synchronously: each call waits for the broker's answer."""

    def __init__(self, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, tls: dict[str, str] | None = None,
                 protocol: int = mqtt.MQTTv311, clean: bool = True, bind: str = "") -> None:
        self.port = port
        self.bind = bind     # another 127.x source address keeps the login throttle apart
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=protocol, clean_session=clean if protocol != mqtt.MQTTv5 else None)
        if username is not None:
            self.c.username_pw_set(username, password)
        if tls is not None:
            self.c.tls_set(ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key"))
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: self.events.put(("connack", rc.value))
        self.c.on_disconnect = self._disconnected
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.events.put(("suback", [r.value for r in rcs]))
        self.c.on_publish = lambda c, u, mid, rc, p: self.events.put(("puback", mid))
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))

    def _disconnected(self, c: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        c._thread_terminate = True          # no automatic reconnect: tests look at each refusal
        self.events.put(("disconnect", rc.value))

    def connect(self) -> int | str:
        """The CONNACK code (paho's v5 form: 0, 134 bad credentials, 135 not
        authorized), or ``"closed"`` when the connection died first (TLS refusal)."""
        try:
            self.c.connect("127.0.0.1", self.port, keepalive=30, bind_address=self.bind)
        except (ssl.SSLError, OSError):
            return "closed"
        self.c.loop_start()
        kind, value = self.wait("connack", "disconnect")
        return value if kind == "connack" else "closed"

    def wait(self, *kinds: str) -> tuple[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            kind, value = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if kind in kinds:
                return kind, value

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[int]:
        self.c.subscribe(topic_filter, qos)
        return self.wait("suback")[1]

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos, retain)
        if qos:
            self.wait("puback")
        else:
            info.wait_for_publish(WAIT)

    def round_trip(self) -> None:
        """A QoS 1 publish to a private topic nobody reads: everything sent before it
        has been handled by the broker once its PUBACK is back."""
        self.publish(f"sync/{id(self)}", b"", qos=1)

    def received(self) -> list[tuple[str, bytes]]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=WAIT)

    def is_connected(self) -> bool:
        return self.c.is_connected()

    def close(self) -> None:
        # Stop the loop thread first (it ends once the socket is gone), so closing does
        # not wait for paho's one-second select() to time out.
        self.c._thread_terminate = True
        try:
            if self.c.is_connected():
                self.c.disconnect()
        finally:
            self.c.loop_stop()
