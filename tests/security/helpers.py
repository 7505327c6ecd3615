"""Small synchronous wrappers around real clients; the gateway subprocess comes from
``tests/conftest.py`` (``gateway(..., listener=False)`` or ``launch``)."""

from __future__ import annotations

import queue
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from tests.conftest import cli_command, run_briefly

WAIT = 15.0          # generous upper bound for anything to happen; never a measurement


def run_gateway_expecting_failure(directory: Path, conf: str) -> tuple[int, str]:
    """Run ``mqttgateway -c bad.conf`` with ``conf``; its exit status and output."""
    path = directory / "bad.conf"
    path.write_text(conf)
    done = run_briefly(cli_command("-c", str(path)))
    return done.returncode, done.stdout + done.stderr


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
