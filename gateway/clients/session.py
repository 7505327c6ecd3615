"""One MQTT client connection for the command-line tools, as libmosquitto runs one.

The wire work is the project's sans-IO codec; this module adds a non-blocking
socket (TCP, TLS or Unix), packet ids, the QoS 1/2 flows in both directions,
keepalive and the ``-d`` lines worded as libmosquitto's. The programs drive it
the way Mosquitto's clients drive libmosquitto: callbacks (``on_connect``,
``on_message``, ``on_subscribe``, ``on_publish``, ``on_disconnect``) and a
``loop(timeout)`` that answers with libmosquitto's error numbers, because those
numbers are the programs' exit statuses.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import BinaryIO

from gateway.clients.options import Options
from gateway.clients.texts import (
    ERR_CONN_LOST, ERR_CONN_REFUSED, ERR_EAI, ERR_ERRNO, ERR_INVAL, ERR_KEEPALIVE, ERR_NO_CONN,
    ERR_PROTOCOL, ERR_QOS_NOT_SUPPORTED, ERR_SUCCESS, ERR_TLS, FATAL, strerror,
)
from gateway.mqtt.codec import Decoder, MQTTError, encode
from gateway.mqtt.packets import (
    ConnAck, Connect, Disconnect, Packet, PingReq, PingResp, PubAck, PubComp, Publish, PubRec,
    PubRel, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
)
from gateway.mqtt.reasons import PropertyId

#: Reconnection delay of ``mosquitto_loop_forever`` (reconnect_delay 1 s, no backoff).
RECONNECT_DELAY = 1.0


class ConnectFailed(Exception):
    """The first connection could not be made: ``text`` is what Mosquitto's
    ``client_connect`` prints (``Error: ...`` or ``Unable to connect (...).``)."""

    def __init__(self, text: str, rc: int) -> None:
        super().__init__(text)
        self.text = text
        self.rc = rc


def tls_context(cfg: Options) -> ssl.SSLContext | None:
    """libmosquitto's TLS set-up from the options, or None for plain TCP.

    TLS is on with ``--cafile``/``--capath``, ``--tls-use-os-certs``, ``mqtts://``
    or an explicit ``-p 8883`` (then with the system's CAs). Raises ConnectFailed
    with ``client_opts_set``'s text for a missing file.
    """
    use_os = cfg.tls_use_os_certs or (cfg.cafile is None and cfg.capath is None and cfg.port == 8883)
    if cfg.cafile is None and cfg.capath is None and not use_os:
        return None
    for path in (cfg.cafile, cfg.certfile, cfg.keyfile):
        if path is not None and not os.access(path, os.R_OK):
            raise ConnectFailed("Error: Problem setting TLS options: File not found.\n", ERR_INVAL)
    versions = {None: ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3,
                "tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.1": ssl.TLSVersion.TLSv1_1}
    if cfg.tls_version not in versions:
        raise ConnectFailed(f"Unable to connect ({strerror(ERR_TLS)}).\n", ERR_TLS)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = not cfg.insecure  # --insecure skips the name, never the chain
    try:
        ctx.minimum_version = versions[cfg.tls_version]
        if cfg.cafile or cfg.capath:
            ctx.load_verify_locations(cfg.cafile, cfg.capath)
        if use_os:
            ctx.load_default_certs()
        if cfg.certfile:
            ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
        if cfg.ciphers:
            ctx.set_ciphers(cfg.ciphers)
        if cfg.tls_alpn:
            ctx.set_alpn_protocols([cfg.tls_alpn])
    except (ssl.SSLError, OSError, ValueError):
        raise ConnectFailed(f"Unable to connect ({strerror(ERR_TLS)}).\n", ERR_TLS) from None
    return ctx


class Session:
    """A client connection with libmosquitto's behaviour where the tools can see it."""

    def __init__(self, cfg: Options, out: BinaryIO, err: BinaryIO) -> None:
        self.cfg = cfg
        self.out = out
        self.err_stream = err
        self.level = cfg.protocol_version
        self.client_id = cfg.id
        self.sock: socket.socket | None = None
        self.decoder = Decoder()
        self.outbuf = bytearray()
        self.state = "new"  # connecting, active, disconnecting, disconnected
        self.last_mid = 0
        self.inflight: dict[int, Publish] = {}  # our QoS 1/2 messages awaiting their acks
        self.waiting: deque[Publish] = deque()  # beyond the broker's receive maximum
        self.inflight_max = cfg.max_inflight
        self.incoming: dict[int, Publish] = {}  # QoS 2 messages awaiting PUBREL
        self.aliases: dict[int, str] = {}
        self.keepalive = cfg.keepalive
        self.last_in = self.last_out = time.monotonic()
        self.ping_sent = 0.0
        self.max_qos = 2
        self.retain_available = True
        self.os_errno = 0
        self.ready: set[int] = set()  # the extra descriptors the last loop() found readable
        #: Read end of a ``signal.set_wakeup_fd`` pipe: a signal ends the wait of loop().
        self.wakeup: int | None = None
        self.in_callback = False  # handling a received packet: a DISCONNECT waits for the end
        self.handshaking = False  # TLS handshake under way: nothing is sent yet
        self.want_write = False  # ... and it waits to write rather than to read
        self.closing = False  # a DISCONNECT is queued, the socket closes after it
        self.on_connect: Callable[[int, dict], None] | None = None
        self.on_message: Callable[[Publish], None] | None = None
        self.on_subscribe: Callable[[int, list[int]], None] | None = None
        self.on_publish: Callable[[int, int, dict], None] | None = None
        self.on_disconnect: Callable[[int], None] | None = None

    # --- output -------------------------------------------------------------------

    def log(self, text: str) -> None:
        """A ``-d`` line, on stdout as Mosquitto's log callback prints it."""
        if self.cfg.debug:
            self.out.write(text.encode("utf-8", "surrogateescape") + b"\n")
            self.out.flush()

    def err(self, text: str) -> None:
        """``err_printf``: silent with ``--quiet``."""
        if not self.cfg.quiet:
            self.err_stream.write(text.encode("utf-8", "surrogateescape"))
            self.err_stream.flush()

    @property
    def name(self) -> str:
        return "(null)" if self.client_id is None else self.client_id

    # --- connection -------------------------------------------------------------------

    def connect(self) -> None:
        """Open the socket and send CONNECT; ConnectFailed with Mosquitto's text."""
        cfg = self.cfg
        if self.level == 3 and self.client_id is None:
            alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            self.client_id = "mosq-" + "".join(alphabet[b % 62] for b in os.urandom(18))
        ctx = tls_context(cfg)
        port = cfg.port if cfg.port is not None else (8883 if cfg.cafile or cfg.capath else 1883)
        try:
            if port == 0:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(cfg.host)
            else:
                source = (cfg.bind_address, 0) if cfg.bind_address else None
                sock = socket.create_connection((cfg.host, port), source_address=source)
                if cfg.tcp_nodelay:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except socket.gaierror:
            raise ConnectFailed(f"Unable to connect ({strerror(ERR_EAI)}).\n", ERR_EAI) from None
        except OSError as e:
            raise ConnectFailed(f"Error: {os.strerror(e.errno or errno.EIO)}\n", ERR_ERRNO) from None
        if ctx is not None:
            # The handshake runs in loop(), after CONNECT is queued, as libmosquitto's:
            # its failures are the loop's error (status 8), not the connection's.
            try:
                sock = ctx.wrap_socket(sock, server_hostname=cfg.host if port else None,
                                       do_handshake_on_connect=False)
            except (ssl.SSLError, OSError, ValueError):
                sock.close()
                raise ConnectFailed(f"Unable to connect ({strerror(ERR_TLS)}).\n", ERR_TLS) from None
            self.handshaking = True
        self._opened(sock)

    def reconnect(self) -> int:
        """Try once more after a lost connection (``mosquitto_reconnect``): 0 or an error."""
        try:
            self.connect()
        except ConnectFailed as e:
            return e.rc
        return ERR_SUCCESS

    def _opened(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.decoder = Decoder()
        self.decoder.protocol_level = self.level
        self.outbuf.clear()
        self.aliases.clear()
        self.closing = False
        self.state = "connecting"
        self.last_in = self.last_out = time.monotonic()
        self.ping_sent = 0.0
        cfg = self.cfg
        props = cfg.properties("CONNECT")
        if self.level == 5 and PropertyId.RECEIVE_MAXIMUM not in props:
            receive = cfg.msg_count if 0 < cfg.msg_count < 20 else 20
            props[PropertyId.RECEIVE_MAXIMUM] = receive
        will = None
        if cfg.will_topic is not None:
            will = Will(cfg.will_topic, cfg.will_payload or b"", cfg.will_qos, cfg.will_retain,
                        cfg.properties("Will") if self.level == 5 else {})
        password = None if cfg.password is None else os.fsencode(cfg.password)
        self.log(f"Client {self.name} sending CONNECT")
        self._send(Connect(self.client_id or "", self.level, cfg.clean_session, self.keepalive,
                           cfg.username, password, will, properties=props if self.level == 5 else {}))

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    # --- sending --------------------------------------------------------------------

    def _send(self, packet: Packet) -> None:
        self.outbuf += encode(packet, self.level)
        self.last_out = time.monotonic()
        self._flush()

    def _flush(self) -> int:
        while self.outbuf and self.sock is not None and not self.handshaking:
            try:
                n = self.sock.send(self.outbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return ERR_SUCCESS
            except OSError as e:
                self.os_errno = e.errno or 0
                return ERR_CONN_LOST
            del self.outbuf[:n]
        return ERR_SUCCESS

    def next_mid(self) -> int:
        self.last_mid = self.last_mid % 65535 + 1
        return self.last_mid

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                props: dict | None = None) -> tuple[int, int]:
        """``mosquitto_publish_v5``: (error, mid). An empty topic needs a topic alias."""
        props = props or {}
        if qos > self.max_qos:
            return ERR_QOS_NOT_SUPPORTED, 0
        if not topic and (self.level < 5 or PropertyId.TOPIC_ALIAS not in props):
            return ERR_INVAL, 0
        if self.sock is None or self.state not in ("connecting", "active"):
            return ERR_NO_CONN, 0
        mid = self.next_mid()
        msg = Publish(topic, payload, qos, retain and self.retain_available, False,
                      mid if qos else None, props if self.level == 5 else {})
        if qos == 0:
            self._send_publish(msg)
            if self.on_publish:
                self.on_publish(mid, 0, {})
        elif len(self.inflight) < self.inflight_max:
            self.inflight[mid] = msg
            self._send_publish(msg)
        else:
            self.waiting.append(msg)
        return ERR_SUCCESS, mid

    def _send_publish(self, msg: Publish) -> None:
        self.log(f"Client {self.name} sending PUBLISH (d{int(msg.dup)}, q{msg.qos}, r{int(msg.retain)}, "
                 f"m{msg.packet_id or self.last_mid}, '{msg.topic or '(null)'}', ... "
                 f"({len(msg.payload)} bytes))")
        self._send(msg)

    def subscribe(self, topics: list[str], qos: int, options: int, props: dict) -> int:
        mid = self.next_mid()
        if self.level < 5:
            options = 0
        for t in topics:
            self.log(f"Client {self.name} sending SUBSCRIBE (Mid: {mid}, Topic: {t}, QoS: {qos}, "
                     f"Options: 0x{options & 0xFC:02x})")
        self._send(Subscribe(mid, [(t, qos | options) for t in topics], props if self.level == 5 else {}))
        return mid

    def unsubscribe(self, topic: str, props: dict) -> int:
        mid = self.next_mid()
        self.log(f"Client {self.name} sending UNSUBSCRIBE (Mid: {mid}, Topic: {topic})")
        self._send(Unsubscribe(mid, [topic], props if self.level == 5 else {}))
        return mid

    def disconnect(self, reason: int = 0, props: dict | None = None) -> int:
        """Send DISCONNECT, finish writing, close, ``on_disconnect(0)``; from a callback,
        once the packets at hand are handled (libmosquitto writes it from its loop)."""
        self.state = "disconnecting"
        if self.sock is None:
            return ERR_NO_CONN
        self.log(f"Client {self.name} sending DISCONNECT")
        if not self.closing:
            self.closing = True
            self._send(Disconnect(reason if self.level == 5 else 0, (props or {}) if self.level == 5 else {}))
        if not self.in_callback:
            self._closed_by_us()
        return ERR_SUCCESS

    def _closed_by_us(self) -> None:
        deadline = time.monotonic() + 10.0
        while self.outbuf and self.sock is not None and time.monotonic() < deadline:
            select.select([], [self.sock], [], 0.1)
            if self._flush():
                break
        self.close()
        self.closing = False
        self.state = "disconnected"
        if self.on_disconnect:
            self.on_disconnect(0)

    # --- the loop ---------------------------------------------------------------------

    def loop(self, timeout: float, extra: Iterable[int] = ()) -> int:
        """One pass of ``mosquitto_loop``: wait up to ``timeout`` seconds for data (or
        for ``extra`` descriptors, noted in ``self.ready``), handle it, keep alive."""
        self.ready = set()
        if self.sock is None:
            return ERR_NO_CONN
        extra = list(extra) + ([self.wakeup] if self.wakeup is not None else [])
        timeout = max(0.0, min(timeout, self._keepalive_due() - time.monotonic()))
        if self.handshaking:
            return self._failed(self._handshake(timeout, extra))
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        try:
            readable, writable, _ = select.select(
                [self.sock, *extra], [self.sock] if self.outbuf else [], [], 0 if pending else timeout)
        except OSError as e:
            self.os_errno = e.errno or 0
            return self._failed(ERR_ERRNO)
        self.ready = {fd for fd in readable if fd is not self.sock}
        if self.wakeup in self.ready:
            self._drain_wakeup()
        if writable and self._flush():
            return self._failed(ERR_CONN_LOST)
        if pending or self.sock in readable:
            rc = self._read()
            if rc:
                return self._failed(rc)
        if self.sock is None:
            return ERR_SUCCESS
        return self._failed(self._check_keepalive())

    def _handshake(self, timeout: float, extra: list[int]) -> int:
        """Step the TLS handshake, waiting up to ``timeout`` for the socket when it
        wants to; libmosquitto's ``-d`` lines when it fails."""
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        for wait in (False, True):
            if wait:
                waits = ([extra, [sock]] if self.want_write else [[sock, *extra], []])
                readable = select.select(waits[0], waits[1], [], timeout)[0]
                self.ready = {fd for fd in readable if fd is not sock}
                if self.wakeup in self.ready:
                    self._drain_wakeup()
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                self.want_write = False
                continue
            except ssl.SSLWantWriteError:
                self.want_write = True
                continue
            except ssl.SSLCertVerificationError as e:
                if e.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
                    self.log("Error: host name verification failed.")
                self.log("OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed")
                return ERR_TLS
            except (ssl.SSLError, OSError) as e:
                self.log(f"OpenSSL Error[0]: {e}")
                return ERR_TLS
            self.handshaking = False
            return self._flush()
        return ERR_SUCCESS

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self.wakeup, 512):  # type: ignore[arg-type]
                pass
        except BlockingIOError:
            pass

    def sleep(self, seconds: float) -> None:
        """Wait, ended early by a signal (``interruptible_sleep``)."""
        fds = [self.wakeup] if self.wakeup is not None else []
        if select.select(fds, [], [], seconds)[0]:
            self._drain_wakeup()

    def loop_forever(self, tick: Callable[[], None]) -> int:
        """``mosquitto_loop_forever``: loop, and after a lost connection reconnect
        every second until the program disconnects; ``tick()`` after each wait."""
        while True:
            rc = ERR_SUCCESS
            while rc == ERR_SUCCESS:
                rc = self.loop(1.0)
                tick()
            if rc in FATAL:
                return rc
            while True:
                if self.state in ("disconnecting", "disconnected"):
                    return ERR_SUCCESS
                self.sleep(RECONNECT_DELAY)
                tick()
                if self.state in ("disconnecting", "disconnected"):
                    return ERR_SUCCESS
                if self.reconnect() == ERR_SUCCESS:
                    break

    def _failed(self, rc: int) -> int:
        """``mosquitto__loop_rc_handle``: close; an error after our DISCONNECT is none."""
        if not rc:
            return rc
        self.close()
        if self.state in ("disconnecting", "disconnected"):
            rc = ERR_SUCCESS
        if self.on_disconnect:
            self.on_disconnect(rc)
        return rc

    def _read(self) -> int:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return ERR_SUCCESS
        except OSError as e:
            self.os_errno = e.errno or 0
            return ERR_CONN_LOST
        if not data:
            return ERR_CONN_LOST
        self.last_in = time.monotonic()
        try:
            packets = self.decoder.feed(data)
        except MQTTError as e:
            packets, failure = e.packets, ERR_PROTOCOL
        else:
            failure = ERR_SUCCESS
        self.in_callback = True
        try:
            for packet in packets:
                rc = self._handle(packet)
                if rc or self.sock is None or self.closing:
                    break
            else:
                rc = failure
        finally:
            self.in_callback = False
        if self.closing and self.sock is not None:
            self._closed_by_us()
            return ERR_SUCCESS
        return rc

    def _keepalive_due(self) -> float:
        if not self.keepalive:
            return float("inf")
        return min(self.last_out, self.last_in) + self.keepalive

    def _check_keepalive(self) -> int:
        if self.sock is None or time.monotonic() < self._keepalive_due():
            return ERR_SUCCESS
        if self.state == "active" and not self.ping_sent:
            self.log(f"Client {self.name} sending PINGREQ")
            self.ping_sent = self.last_in = time.monotonic()
            self._send(PingReq())
            return ERR_SUCCESS
        return ERR_KEEPALIVE

    # --- received packets ------------------------------------------------------------

    def _handle(self, packet: Packet) -> int:
        handler = self._HANDLERS.get(type(packet))
        if handler is None:
            return ERR_PROTOCOL
        return handler(self, packet)

    def _connack(self, p: ConnAck) -> int:
        props = p.properties
        assigned = props.get(PropertyId.ASSIGNED_CLIENT_IDENTIFIER)
        if assigned is not None:
            if self.client_id is not None:
                return ERR_PROTOCOL
            self.client_id = assigned
        self.retain_available = bool(props.get(PropertyId.RETAIN_AVAILABLE, 1))
        self.max_qos = props.get(PropertyId.MAXIMUM_QOS, 2)
        self.inflight_max = props.get(PropertyId.RECEIVE_MAXIMUM, self.cfg.max_inflight)
        self.keepalive = props.get(PropertyId.SERVER_KEEP_ALIVE, self.keepalive)
        self.log(f"Client {self.name} received CONNACK ({p.return_code})")
        if p.return_code == 0 and self.state == "connecting":
            self.state = "active"
            self._resend()
        if self.on_connect:
            self.on_connect(p.return_code, props)
        if p.return_code == 0:
            return ERR_SUCCESS
        return ERR_CONN_REFUSED if p.return_code <= 5 else ERR_PROTOCOL

    def _resend(self) -> None:
        """After a reconnection, messages still unacknowledged go again, marked dup."""
        for msg in self.inflight.values():
            msg.dup = True
            self._send_publish(msg)

    def _publish(self, p: Publish) -> int:
        alias = p.properties.get(PropertyId.TOPIC_ALIAS)
        if alias is not None:
            if p.topic:
                self.aliases[alias] = p.topic
            elif alias in self.aliases:
                p.topic = self.aliases[alias]
            else:
                return ERR_PROTOCOL
        self.log(f"Client {self.name} received PUBLISH (d{int(p.dup)}, q{p.qos}, r{int(p.retain)}, "
                 f"m{p.packet_id or 0}, '{p.topic}', ... ({len(p.payload)} bytes))")
        if p.qos == 2:
            assert p.packet_id is not None
            self.log(f"Client {self.name} sending PUBREC (m{p.packet_id}, rc0)")
            self._send(PubRec(p.packet_id))
            self.incoming.setdefault(p.packet_id, p)
            return ERR_SUCCESS
        if p.qos == 1:
            assert p.packet_id is not None
            self.log(f"Client {self.name} sending PUBACK (m{p.packet_id}, rc0)")
            self._send(PubAck(p.packet_id))
        if self.on_message:
            self.on_message(p)
        return ERR_SUCCESS

    def _pubrel(self, p: PubRel) -> int:
        self.log(f"Client {self.name} received PUBREL (Mid: {p.packet_id})")
        self.log(f"Client {self.name} sending PUBCOMP (m{p.packet_id})")
        self._send(PubComp(p.packet_id))
        msg = self.incoming.pop(p.packet_id, None)
        if msg is not None and self.on_message:
            self.on_message(msg)
        return ERR_SUCCESS

    def _ack(self, p: PubAck | PubComp) -> int:
        kind = "PUBACK" if isinstance(p, PubAck) else "PUBCOMP"
        self.log(f"Client {self.name} received {kind} (Mid: {p.packet_id}, RC:{p.reason_code})")
        msg = self.inflight.get(p.packet_id)
        if msg is None or msg.qos != (1 if kind == "PUBACK" else 2):
            self.log(f"Warning: Received {kind} from {self.name} for an unknown packet identifier "
                     f"{p.packet_id}.")
            return ERR_SUCCESS
        del self.inflight[p.packet_id]
        self._release_waiting()
        if self.on_publish:
            self.on_publish(p.packet_id, p.reason_code, p.properties)
        return ERR_SUCCESS

    def _pubrec(self, p: PubRec) -> int:
        self.log(f"Client {self.name} received PUBREC (Mid: {p.packet_id})")
        msg = self.inflight.get(p.packet_id)
        if p.reason_code >= 0x80 and msg is not None:
            del self.inflight[p.packet_id]
            self._release_waiting()
            if self.on_publish:
                self.on_publish(p.packet_id, p.reason_code, p.properties)
            return ERR_SUCCESS
        self.log(f"Client {self.name} sending PUBREL (m{p.packet_id})")
        self._send(PubRel(p.packet_id))
        return ERR_SUCCESS

    def _release_waiting(self) -> None:
        while self.waiting and len(self.inflight) < self.inflight_max:
            msg = self.waiting.popleft()
            self.inflight[msg.packet_id] = msg  # type: ignore[index]
            self._send_publish(msg)

    def _suback(self, p: SubAck) -> int:
        self.log(f"Client {self.name} received SUBACK")
        if self.on_subscribe:
            self.on_subscribe(p.packet_id, p.return_codes)
        return ERR_SUCCESS

    def _unsuback(self, p: UnsubAck) -> int:
        self.log(f"Client {self.name} received UNSUBACK")
        return ERR_SUCCESS

    def _pingresp(self, p: PingResp) -> int:
        self.log(f"Client {self.name} received PINGRESP")
        self.ping_sent = 0.0
        return ERR_SUCCESS

    def _disconnect(self, p: Disconnect) -> int:
        """A broker's DISCONNECT (level 5): the session is over, no reconnection."""
        if self.level < 5:
            return ERR_PROTOCOL
        self.log(f"Received DISCONNECT ({p.reason_code})")
        self.close()
        self.state = "disconnected"
        if self.on_disconnect:
            self.on_disconnect(p.reason_code)
        return ERR_SUCCESS

    _HANDLERS: dict[type, Callable[..., int]] = {
        ConnAck: _connack, Publish: _publish, PubAck: _ack, PubComp: _ack, PubRec: _pubrec,
        PubRel: _pubrel, SubAck: _suback, UnsubAck: _unsuback, PingResp: _pingresp,
        Disconnect: _disconnect,
    }

