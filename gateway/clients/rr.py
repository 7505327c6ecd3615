"""``mqttgateway-rr``: publish a request carrying a response topic (``-e``) and
print the first response, as ``mosquitto_rr`` (``rr_client.c``); MQTT 5 unless
``-V`` says otherwise."""

from __future__ import annotations

import signal
import sys

from gateway.clients.common import close_session, open_session, run, streams, write
from gateway.clients.options import MSG_NULL, RR, Options
from gateway.clients.output import Printer
from gateway.clients.pub import load_message
from gateway.clients.session import Session
from gateway.clients.texts import (
    ERR_SUCCESS, reason_string,
)
from gateway.clients.sub import DISCONNECT_WITH_WILL, Signals
from gateway.mqtt.packets import Publish
from gateway.mqtt.reasons import PropertyId


class Requester:
    """``rr_client.c``'s state machine: subscribe, publish once subscribed, print
    the response, stop."""

    def __init__(self, cfg: Options, session: Session) -> None:
        self.cfg = cfg
        self.session = session
        out, err = streams()
        self.printer = Printer(cfg, out, err)
        self.state = "new"  # connected, ready, waiting, disconnect
        self.timed_out = False
        self.connack_result = 0
        self.signals = Signals(session, (signal.SIGALRM,), exit_early=False)
        session.on_connect = self.on_connect
        session.on_subscribe = self.on_subscribe
        session.on_message = self.on_message

    def disconnect(self, reason: int = 0) -> None:
        self.session.disconnect(reason, self.cfg.properties("DISCONNECT"))

    def on_connect(self, result: int, props: dict) -> None:
        self.connack_result = result
        if result:
            self.state = "disconnect"
            hint = ". mqttgateway-rr only supports connecting to an MQTT v5 broker" if result == 0x84 else ""
            self.session.err(f"Connection error: {reason_string(result)}{hint}\n")
            self.disconnect()
            return
        self.state = "connected"
        self.session.subscribe([self.cfg.response_topic or ""], self.cfg.qos, 0,
                               self.cfg.properties("SUBSCRIBE"))

    def on_subscribe(self, mid: int, granted: list[int]) -> None:
        if granted[0] < 128:
            self.state = "ready"
        else:
            self.state = "disconnect"
            self.session.err(f"{reason_string(granted[0])}\n")
            self.disconnect()

    def on_message(self, msg: Publish) -> None:
        self.printer.print(msg)
        self.state = "disconnect"

    def run(self) -> int:
        cfg = self.cfg
        rc = ERR_SUCCESS
        while rc == ERR_SUCCESS and self.state != "disconnect":
            rc = self.session.loop(1.0)
            for signum in self.signals.take():
                self.disconnect(DISCONNECT_WITH_WILL)
                self.timed_out = True
            if self.state == "ready":
                self.state = "waiting"
                props = cfg.properties("PUBLISH") if cfg.protocol_version == 5 else {}
                payload = b"" if cfg.pub_mode == MSG_NULL else cfg.message
                rc = self.session.publish(cfg.topic or "", payload, cfg.qos, cfg.retain, props)[0]
        return rc


def request(cfg: Options) -> int:
    _, err = streams()
    if cfg.topic is None or cfg.pub_mode is None or cfg.response_topic is None:
        write(err, "Error: All of topic, message, and response topic must be supplied.\n"
                   "\nUse 'mqttgateway-rr --help' to see usage.\n")
        return 1
    publish_props = cfg.props.setdefault("PUBLISH", {})
    if PropertyId.RESPONSE_TOPIC in publish_props:
        if not cfg.quiet:
            write(err, "Error in PUBLISH properties: Duplicate response topic.\n")
        return 1
    publish_props[PropertyId.RESPONSE_TOPIC] = cfg.response_topic
    load_message(cfg)
    session = open_session(cfg)
    rr = Requester(cfg, session)
    if cfg.timeout:
        signal.alarm(cfg.timeout)
    return close_session(cfg, session, rr.run(), rr)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; the exit status is Mosquitto's."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return run(request, RR, argv)


if __name__ == "__main__":
    sys.exit(main())
