"""``mqttgateway-sub``: subscribe and print what arrives, as ``mosquitto_sub``
(``sub_client.c``): ``-C`` count, ``-W`` timeout (status 27), ``-E``, ``-R``,
``-T``, ``-U``, ``--retained-only``, ``--remove-retained``; it reconnects every
second when the broker goes away, and SIGINT/SIGTERM end it with a DISCONNECT."""

from __future__ import annotations

import os
import signal
import socket
import sys
from types import FrameType

from gateway.clients.common import close_session, open_session, run, streams
from gateway.clients.options import SUB, Options
from gateway.clients.output import Printer
from gateway.clients.session import Session
from gateway.clients.texts import (
    ERR_SUCCESS, connection_error,
)
from gateway.mqtt.packets import Publish

DISCONNECT_WITH_WILL = 0x04


def topic_matches(topic_filter: str, topic: str) -> bool:
    """``mosquitto_topic_matches_sub``: MQTT matching, ``$`` topics apart."""
    if topic.startswith("$") != topic_filter.startswith("$"):
        return False
    levels = topic.split("/")
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)


class Signals:
    """The C programs' SIGALRM/SIGINT/SIGTERM handlers, made safe: the handler
    records the signal and wakes the session's select(); ``tick()`` acts on it."""

    def __init__(self, session: Session, handled: tuple[int, ...], exit_early: bool = True) -> None:
        self.session = session
        self.received: list[int] = []
        #: mosquitto_sub exits at once (status 255) when signalled before its CONNACK.
        self.connack_received = not exit_early
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._pair = (reader, writer)
        session.wakeup = reader.fileno()
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for signum in handled:
            signal.signal(signum, self._handler)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if not self.connack_received:
            sys.stdout.flush()
            os._exit(255)  # exit(-1) before the CONNACK, as Mosquitto's clients
        self.received.append(signum)

    def take(self) -> list[int]:
        received, self.received = self.received, []
        return received


class Subscriber:
    """``sub_client.c``'s globals and callbacks."""

    def __init__(self, cfg: Options, session: Session) -> None:
        self.cfg = cfg
        self.session = session
        out, err = streams()
        self.printer = Printer(cfg, out, err)
        self.process_messages = True
        self.msg_count = 0
        self.last_mid = 0
        self.timed_out = False
        self.connack_result = 0
        self.signals = Signals(session, (signal.SIGALRM, signal.SIGTERM, signal.SIGINT))
        session.on_connect = self.on_connect
        session.on_subscribe = self.on_subscribe
        session.on_message = self.on_message
        session.on_publish = self.on_publish

    def disconnect(self, reason: int = 0) -> None:
        self.session.disconnect(reason, self.cfg.properties("DISCONNECT"))

    def tick(self) -> None:
        for signum in self.signals.take():
            self.process_messages = False
            self.disconnect(DISCONNECT_WITH_WILL)
            if signum == signal.SIGALRM:
                self.timed_out = True

    def on_connect(self, result: int, props: dict) -> None:
        cfg = self.cfg
        self.signals.connack_received = True
        self.connack_result = result
        if result:
            self.session.err(connection_error(
                cfg.protocol_version, result,
                "Try connecting to an MQTT v5 broker, or use MQTT v3.x mode."))
            self.disconnect()
            return
        self.session.subscribe(cfg.topics, cfg.qos, cfg.sub_opts, cfg.properties("SUBSCRIBE"))
        for topic in cfg.unsub_topics:
            self.session.unsubscribe(topic, cfg.properties("UNSUBSCRIBE"))

    def on_subscribe(self, mid: int, granted: list[int]) -> None:
        cfg = self.cfg
        if cfg.debug and not cfg.quiet:
            line = f"Subscribed (mid: {mid}): " + ", ".join(str(g) for g in granted) + "\n"
            self.printer.out.write(line.encode())
            self.printer.out.flush()
        if all(g >= 128 for g in granted):
            self.disconnect()
            self.session.err("All subscription requests were denied.\n")
        if cfg.exit_after_sub:
            self.disconnect()

    def on_message(self, msg: Publish) -> None:
        cfg = self.cfg
        if not self.process_messages:
            return
        if cfg.retained_only and not msg.retain:
            self.process_messages = False
            if self.last_mid == 0:
                self.disconnect()
            return
        if msg.retain and cfg.no_retain:
            return
        if any(topic_matches(f, msg.topic) for f in cfg.filter_outs):
            return
        if cfg.remove_retained and msg.retain:
            rc, mid = self.session.publish(msg.topic, b"", 1, True)
            if rc == ERR_SUCCESS:
                self.last_mid = mid
        self.printer.print(msg)
        if cfg.msg_count > 0:
            self.msg_count += 1
            if self.msg_count == cfg.msg_count:
                self.process_messages = False
                if self.last_mid == 0:
                    self.disconnect()

    def on_publish(self, mid: int, reason: int, props: dict) -> None:
        """A retained message cleared (``--remove-retained``): once the last one is
        acknowledged, a finished run may disconnect."""
        if not self.process_messages and mid == self.last_mid:
            self.disconnect()


def subscribe(cfg: Options) -> int:
    if cfg.no_retain and cfg.retained_only:
        _, err = streams()
        err.write(b"\nError: Combining '-R' and '--retained-only' makes no sense.\n")
        return 1
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # until connected, as a C program
    session = open_session(cfg)
    sub = Subscriber(cfg, session)
    if cfg.timeout:
        signal.alarm(cfg.timeout)
    rc = session.loop_forever(sub.tick)
    return close_session(cfg, session, rc, sub)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; the exit status is Mosquitto's."""
    return run(subscribe, SUB, argv)


if __name__ == "__main__":
    sys.exit(main())
