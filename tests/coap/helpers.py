"""Clients for the CoAP tests: aiocoap's library, libcoap's coap-client, paho-mqtt.

aiocoap runs on its own asyncio loop in a thread, so tests stay synchronous and never
touch the loop pytest-twisted's reactor runs on. Timeouts only turn hangs into
failures.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import shutil
import subprocess
import threading
from typing import Any, Iterable

import paho.mqtt.client as mqtt
from aiocoap import Context, Message

HOST = "127.0.0.1"
TIMEOUT = 15.0
COAP_CLIENT = shutil.which("coap-client-notls") or "/usr/bin/coap-client-notls"

_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A topic level or client id no other test in this run uses."""
    return f"{prefix}{next(_serial)}"


def coap_lines(port: int, *extra: str) -> list[str]:
    """Config lines for a CoAP listener on ``port`` (127.0.0.1)."""
    return [f"listener {port} {HOST}", "protocol coap", *extra]


class Observation:
    """A running aiocoap observation: its first response and a queue of the rest."""

    def __init__(self, client: AioCoAP, request: Any, first: Message) -> None:
        self.client = client
        self.request = request
        self.first = first
        self.notifications: queue.Queue[Any] = queue.Queue()

    def next(self, timeout: float = TIMEOUT) -> Message:
        try:
            item = self.notifications.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no notification within {timeout}s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def assert_quiet(self, wait: float = 0.5) -> None:
        try:
            item = self.notifications.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected notification {item!r}")

    def cancel(self) -> None:
        self.client.loop.call_soon_threadsafe(self.request.observation.cancel)


class AioCoAP:
    """aiocoap's client library on a private loop in a thread."""

    def __init__(self, transports: Iterable[str] = ("udp6",),
                 credentials: dict[str, Any] | None = None) -> None:
        """``credentials``: aiocoap's client credentials (with ``oscore`` among the
        transports, OSCORE contexts by URI pattern)."""
        self.loop = asyncio.new_event_loop()
        self._pumps: set[asyncio.Task[None]] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def create() -> Context:
            ctx = await Context.create_client_context(transports=list(transports))
            if credentials:
                ctx.client_credentials.load_from_dict(credentials)
            return ctx

        self.ctx = self.run(create())

    def run(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def request(self, code: Any, uri: str, payload: bytes = b"", **options: Any) -> Message:
        async def go() -> Message:
            msg = Message(code=code, uri=uri, payload=payload, **options)
            return await self.ctx.request(msg).response

        return self.run(go())

    async def _stop_pumps(self) -> None:
        """Observations still open at the end: their pumps end with the loop."""
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    def observe(self, uri: str, **options: Any) -> Observation:
        async def go() -> Observation:
            from aiocoap.numbers.codes import GET

            request = self.ctx.request(Message(code=GET, uri=uri, observe=0, **options))
            first = await request.response
            obs = Observation(self, request, first)

            async def pump() -> None:
                try:
                    async for notification in request.observation:
                        obs.notifications.put(notification)
                except Exception as e:  # the end of the observation, as the test sees it
                    obs.notifications.put(e)

            self._pumps.add(self.loop.create_task(pump()))
            return obs

        return self.run(go())

    def close(self) -> None:
        try:
            self.run(self.ctx.shutdown())
            self.run(self._stop_pumps())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)


def coap_client(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Run libcoap's ``coap-client-notls ARGS``."""
    return subprocess.run([COAP_CLIENT, *args], capture_output=True, timeout=timeout)


class MQTTClient:
    """paho-mqtt 2.x with a message queue; connects on construction."""

    def __init__(self, port: int, client_id: str | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or unique("mqtt-"),
                                  protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(TIMEOUT):
            raise AssertionError("MQTT client did not connect")

    def subscribe(self, topics: str | Iterable[str], qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        names = [topics] if isinstance(topics, str) else list(topics)
        self.client.subscribe([(t, qos) for t in names])
        if not done.wait(TIMEOUT):
            raise AssertionError("no SUBACK")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)

    def get(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no MQTT message within {timeout}s") from None

    def assert_quiet(self, wait: float = 0.5) -> None:
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected MQTT message {m.topic} {m.payload!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
