"""``mqttgateway-pub``: publish one message (``-m``, ``-f``, ``-s``, ``-n``, with
``--repeat``) or one message per stdin line (``-l``), then disconnect; as
``mosquitto_pub`` (``pub_client.c``, ``pub_shared.c``)."""

from __future__ import annotations

import os
import signal
import sys
import time

from gateway.clients.common import Exit, open_session, run, streams, write
from gateway.clients.options import (
    MAX_PAYLOAD, MSG_NULL, MSG_STDIN_FILE, MSG_STDIN_LINE, PUB, Options,
)
from gateway.clients.session import Session
from gateway.clients.texts import (
    ERR_CONN_REFUSED, ERR_INVAL, ERR_NO_CONN, ERR_PROTOCOL, ERR_QOS_NOT_SUPPORTED, ERR_SUCCESS, connection_error, reason_string, strerror,
)
from gateway.clients.usage import usage_text
from gateway.mqtt.reasons import PropertyId

#: Bytes unsent (a queued message counting 1 KiB) past which ``-l`` stops reading stdin.
MAX_BACKLOG = 1 << 20
_PUBLISH_ERRORS = {
    ERR_INVAL: "Error: Invalid input. Does your topic contain '+' or '#'?\n",
    ERR_NO_CONN: "Error: Client not connected when trying to publish.\n",
    ERR_PROTOCOL: "Error: Protocol error when communicating with broker.\n",
    9: "Error: Message payload is too large.\n",
    ERR_QOS_NOT_SUPPORTED: "Error: Message QoS not supported on broker, try a lower QoS.\n",
}


def load_message(cfg: Options) -> None:
    """``load_stdin``/``load_file``: the whole message in memory; Exit(1) on failure."""
    _, err = streams()

    def fail(*lines: str) -> None:
        if not cfg.quiet:
            write(err, "".join(lines))
        raise Exit(1)

    if cfg.pub_mode == MSG_STDIN_FILE:
        data = sys.stdin.buffer.read()
        if len(data) > MAX_PAYLOAD:
            fail(f"Error: Message length must be less than {MAX_PAYLOAD} bytes.\n\n",
                 "Error loading input from stdin.\n")
        if not data:
            fail("Error: Zero length input.\n", "Error loading input from stdin.\n")
        cfg.message = data
    elif cfg.file_input is not None:
        name = cfg.file_input
        try:
            with open(name, "rb") as f:
                data = f.read(MAX_PAYLOAD + 1)
        except OSError:
            fail(f'Error: Unable to open file "{name}".\n', f'Error loading input file "{name}".\n')
        if len(data) > MAX_PAYLOAD:
            fail(f"Error: File must be less than {MAX_PAYLOAD} bytes.\n\n",
                 f'Error loading input file "{name}".\n')
        cfg.message = data


class Publisher:
    """The state ``pub_client.c`` keeps in globals, and its callbacks."""

    def __init__(self, cfg: Options, session: Session) -> None:
        self.cfg = cfg
        self.session = session
        self.status = "connecting"  # connack, waiting, disconnecting, disconnected, nohope
        self.first_publish = True
        self.mid_sent = -1
        self.last_mid = -1
        self.last_mid_sent = -1
        self.disconnect_sent = False
        self.publish_count = 0
        self.ready_for_repeat = False
        self.next_publish = 0.0
        self.connack_result = 0
        session.on_connect = self.on_connect
        session.on_publish = self.on_publish
        session.on_disconnect = self.on_disconnect

    def publish(self, payload: bytes) -> int:
        cfg = self.cfg
        self.ready_for_repeat = False
        topic = cfg.topic or ""
        if cfg.protocol_version == 5 and cfg.have_topic_alias and not self.first_publish:
            topic = ""
        self.first_publish = False
        rc, mid = self.session.publish(topic, payload, cfg.qos, cfg.retain, cfg.properties("PUBLISH"))
        if rc == ERR_SUCCESS:
            self.mid_sent = mid
        return rc

    def the_message(self) -> int:
        return self.publish(b"" if self.cfg.pub_mode == MSG_NULL else self.cfg.message)

    def disconnect(self) -> None:
        self.disconnect_sent = True
        self.session.disconnect(0, self.cfg.properties("DISCONNECT"))

    def on_connect(self, result: int, props: dict) -> None:
        self.connack_result = result
        if result:
            self.session.err(connection_error(
                self.cfg.protocol_version, result,
                "Try connecting to an MQTT v5 broker, or use MQTT v3.x mode."))
            self.status = "nohope"
            return
        if self.cfg.pub_mode == MSG_STDIN_LINE:
            self.status = "connack"
            return
        rc = self.the_message()
        if rc:
            if rc in _PUBLISH_ERRORS:
                self.session.err(_PUBLISH_ERRORS[rc])
            self.session.disconnect(0, self.cfg.properties("DISCONNECT"))

    def on_publish(self, mid: int, reason: int, props: dict) -> None:
        self.last_mid_sent = mid
        if reason > 127:
            self.session.err(f"Warning: Publish {mid} failed: {reason_string(reason)}.\n")
            if PropertyId.REASON_STRING in props:
                self.session.err(f"{props[PropertyId.REASON_STRING]}\n")
        self.publish_count += 1
        if self.cfg.pub_mode == MSG_STDIN_LINE:
            if mid == self.last_mid:
                self.disconnect()
        elif self.publish_count < self.cfg.repeat_count:
            self.ready_for_repeat = True
            self.next_publish = time.monotonic() + self.cfg.repeat_delay
        elif not self.disconnect_sent:
            self.disconnect()

    def on_disconnect(self, rc: int) -> None:
        if rc == 0:
            self.status = "disconnected"

    def other_loop(self) -> int:
        """``pub_other_loop``: run until disconnected, publishing the repeats."""
        while True:
            timeout = 1.0
            if self.ready_for_repeat:
                timeout = min(timeout, max(0.0, self.next_publish - time.monotonic()))
            rc = self.session.loop(timeout)
            if self.ready_for_repeat and time.monotonic() >= self.next_publish:
                rc = self.the_message()
                if rc not in (ERR_SUCCESS, ERR_NO_CONN):
                    self.session.err(f"Error sending repeat publish: {strerror(rc)}")
            if rc:
                break
        return ERR_SUCCESS if self.status == "disconnected" else rc

    def line_loop(self) -> int:
        """``pub_stdin_line_loop``: one message per line of stdin, then wait for the
        last acknowledgement and disconnect."""
        pending = bytearray()
        stdin = sys.stdin.fileno()
        rc = ERR_SUCCESS
        while True:
            if self.status == "nohope":
                return ERR_CONN_REFUSED
            # Read on only while the broker keeps up: a fast stdin must not fill memory.
            backlog = len(self.session.outbuf) + 1024 * len(self.session.waiting)
            reading = self.status == "connack" and backlog < MAX_BACKLOG
            rc = self.session.loop(1.0, [stdin] if reading else [])
            if reading and stdin in self.session.ready:
                chunk = os.read(stdin, 65536)
                pending += chunk
                while self.status == "connack" and b"\n" in pending:
                    line, _, rest = bytes(pending).partition(b"\n")
                    pending[:] = rest
                    sent = self.publish(line)
                    if sent not in (ERR_SUCCESS, ERR_NO_CONN):
                        return sent
                if not chunk:
                    if pending:
                        sent = self.publish(bytes(pending))
                        pending.clear()
                        if sent and self.cfg.qos:
                            return sent
                    if self.mid_sent == -1:
                        self.status = "disconnecting"
                        self.disconnect()
                    else:
                        self.last_mid = self.mid_sent
                        self.status = "waiting"
            if self.status == "waiting" and self.last_mid_sent == self.last_mid and not self.disconnect_sent:
                self.disconnect()
            if rc:
                break
        return ERR_SUCCESS if self.status == "disconnected" else rc


def publish(cfg: Options) -> int:
    out, err = streams()
    load_message(cfg)
    if cfg.topic is None or cfg.pub_mode is None:
        write(err, "Error: Both topic and message must be supplied.\n")
        write(out, usage_text(PUB))
        return 1
    session = open_session(cfg)
    pub = Publisher(cfg, session)
    rc = pub.line_loop() if cfg.pub_mode == MSG_STDIN_LINE else pub.other_loop()
    session.close()
    if rc:
        session.err(f"Error: {strerror(rc, session.os_errno)}\n")
    return pub.connack_result or rc


def main(argv: list[str] | None = None) -> int:
    """Console entry point; the exit status is Mosquitto's."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return run(publish, PUB, argv)


if __name__ == "__main__":
    sys.exit(main())
