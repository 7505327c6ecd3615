"""Mosquitto-syntax configuration files (``man mosquitto.conf``) parsed into dataclasses.

One ``key value...`` per line; a line whose first non-blank character is ``#``
is a comment.  Every key has one entry in ``KEYS``: how its value is converted
and where it goes (the broker as a whole, or the listener section currently
open).  Keys that Mosquitto knows but the gateway does not implement are in
``NOT_SUPPORTED``, refused with the reason and what to do instead rather than
silently ignored.

Differences from Mosquitto, on purpose: every error stops the parse (Mosquitto
only warns for some), ``include_dir`` in an included file is an error (Mosquitto
ignores it), and a listener key that has no listener to apply to is an error.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Callable, NamedTuple

from gateway.config_bridges import BRIDGE_KEYS, Bridge, finish_bridges
from gateway.config_listeners import check_listener
from gateway.errors import ConfigError
from gateway.security.plugins import PluginSpec
from gateway.unsupported import NOT_SUPPORTED, NOT_SUPPORTED_PREFIXES, refusal

__all__ = [
    "Config", "Listener", "KEYS", "NOT_SUPPORTED", "NOT_SUPPORTED_PREFIXES",
    "PROTOCOLS", "Scope", "anonymous_allowed", "default_config", "load", "parse",
    "parse_duration",
]

DEFAULT_PORT = 1883
LOCAL_ONLY_ADDRESS = "127.0.0.1"
PROTOCOLS = frozenset({"mqtt", "websockets", "coap", "mqttsn", "http_api"})
COAP_PORT = 5683                            # the usual port of a "protocol coap" listener
COAP_QOS_CHOICES = frozenset({"qos0", "qos1", "qos2", "coap"})   # as EMQX: coap = CON 1, NON 0
COAP_NOTIFY_TYPES = frozenset({"non", "con", "qos"})
SOCKET_DOMAINS = frozenset({"ipv4", "ipv6"})
MQTTSN_FRAMINGS = frozenset({"plain", "xbee1", "xbee2"})
TLS_VERSIONS = frozenset({"tlsv1.1", "tlsv1.2", "tlsv1.3"})
ALL_LOG_TYPES = ("debug", "error", "warning", "notice", "information",
                 "subscribe", "unsubscribe", "websockets")
DEFAULT_LOG_TYPES = ("error", "warning", "notice", "information")
LOG_DESTS = frozenset({"stderr", "stdout", "syslog", "topic", "dlt"})  # plus "file PATH", "none"
MAX_PAYLOAD = 268435455                     # largest MQTT remaining length
WEBSOCKETS_HEADERS_SIZE = 4096            # Mosquitto 2.1's default; 0 in the file means it
#: Digits an integer value may have (leading zeros aside): every limit is far
#: below, and ``int()`` itself refuses strings over 4300 digits.
MAX_DIGITS = 18
DURATION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}

@dataclass
class Listener:
    port: int
    bind_address: str | None = None     # None = all interfaces
    protocol: str = "mqtt"              # one of PROTOCOLS
    max_connections: int = -1           # -1 unlimited
    socket_domain: str | None = None    # "ipv4" | "ipv6" | None
    source: tuple[str, int] = ("<default>", 0)   # file, line that created it
    # Security settings used when per_listener_settings is true.
    allow_anonymous: bool | None = None
    password_file: str | None = None
    acl_file: str | None = None
    scram_file: str | None = None
    plugins: list[PluginSpec] = field(default_factory=list)
    allow_zero_length_clientid: bool | None = None
    auto_id_prefix: str | None = None
    # TLS (gateway.tls): certfile + keyfile make this a TLS listener.
    cafile: str | None = None
    capath: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    crlfile: str | None = None
    ciphers: str | None = None
    tls_version: str | None = None               # minimum: tlsv1.1, tlsv1.2 (default), tlsv1.3
    require_certificate: bool = False
    use_identity_as_username: bool = False
    use_subject_as_username: bool = False
    psk_hint: str | None = None                  # TLS-PSK (DTLS-PSK on coap/mqttsn) with psk_file
    psk_file: str | None = None                  # per_listener_settings: this listener's keys
    oscore_file: str | None = None               # CoAP: OSCORE security contexts (aiocoap JSON)
    max_keepalive: int | None = None             # set inside this listener's section
    max_connection_rate: tuple[int, float] | None = None   # (connections, seconds) per address
    mqttsn_multicast: tuple[str, int] | None = None   # (group, port): SEARCHGW in, ADVERTISE out
    max_qos: int = 2                             # highest QoS accepted and granted
    max_topic_alias: int = 10                    # MQTT 5 topic aliases a client may define
    mount_point: str = ""                        # prefix of this listener's clients' topics
    accept_protocol_versions: frozenset[int] = frozenset({3, 4, 5})
    websockets_origin: list[str] = field(default_factory=list)   # Origin values allowed; [] any
    enable_proxy_protocol: int = 0               # PROXY protocol version expected; 0 none
    listener_allow_anonymous: bool | None = None     # this listener's own allow_anonymous
    http_dir: str | None = None                  # static files (protocol http_api)
    lines: dict[str, tuple[str, int]] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class Config:
    listeners: list[Listener]
    allow_anonymous: bool | None = None          # None: see anonymous_allowed()
    max_inflight_messages: int = 20              # 0 = unlimited
    max_inflight_bytes: int = 0                  # 0 = unlimited
    max_queued_messages: int = 1000              # 0 = unlimited
    max_queued_bytes: int = 0                    # 0 = unlimited
    message_size_limit: int = 0                  # 0 = no limit (max 268435455)
    max_packet_size: int = 0                     # 0 = no limit
    max_subscriptions: int = 10000               # per client; 0 = unlimited
    max_keepalive: int = 65535
    retain_available: bool = True
    sys_interval: int = 10                       # 0 disables $SYS
    # "log_type none" gives [], "log_type all" every entry of ALL_LOG_TYPES.
    log_type: list[str] = field(default_factory=lambda: list(DEFAULT_LOG_TYPES))
    # Entries: stderr stdout syslog topic dlt, or "file PATH"; "log_dest none" gives [].
    log_dest: list[str] = field(default_factory=lambda: ["stderr"])
    # Only recorded: dropping privileges is left to systemd (User=) or twistd --uid.
    user: str | None = None
    # Written at startup with the process id, removed at a clean exit (gateway.pidfile).
    pid_file: str | None = None
    allow_zero_length_clientid: bool = True
    auto_id_prefix: str = "auto-"
    upgrade_outgoing_qos: bool = False
    check_retain_source: bool = False
    persistent_client_expiration: int | None = None   # seconds; None = never
    # The durable store (gateway.store): the file is persistence_location/persistence_file.
    persistence: bool = False
    persistence_location: str = ""
    persistence_file: str = "mqttgateway.db"
    persistence_sync: str = "full"               # full: survives a power cut; normal: a crash
    autosave_interval: int = 1800                # accepted: every change is committed at once
    autosave_on_changes: bool = False            # accepted, as autosave_interval
    set_tcp_nodelay: bool = False
    websockets_headers_size: int = WEBSOCKETS_HEADERS_SIZE   # bytes of HTTP request headers
    websockets_log_level: int = 0                # libwebsockets' bit mask: accepted, no effect
    per_listener_settings: bool = False
    # CoAP listeners (gateway.coap); the names follow EMQX's CoAP gateway where it has one.
    coap_max_requests_per_second: int = 1000     # per endpoint (address and port); 0 = unlimited
    coap_max_requests_per_address: int = 5000    # per source address, all ports; 0 = unlimited
    coap_deduplication_entries: int = 50000      # message ids remembered for duplicates
    coap_connection_required: bool = False       # only /mqtt/connection tokens may publish
    coap_heartbeat: int = 30                     # seconds a connection-mode client may idle
    coap_publish_qos: str = "coap"
    coap_subscribe_qos: str = "coap"
    coap_notify_type: str = "qos"                # qos: CON for QoS >= 1, NON for QoS 0
    oscore_file: str | None = None               # OSCORE contexts for every CoAP listener
    # DTLS (gateway.dtls): CoAP and MQTT-SN listeners with certfile/keyfile or psk_hint.
    dtls_max_sessions: int = 2000                # per listener, about 70 KiB each
    dtls_max_handshakes: int = 100               # per listener, past the cookie exchange
    dtls_idle_timeout: int = 1800                # seconds without a datagram from the peer
    # MQTT-SN (gateway.mqttsn): UDP listeners, serial lines and what they share.
    mqttsn_gateway_id: int = 1
    mqttsn_advertise_interval: int = 900         # seconds between ADVERTISE; 0 = never
    mqttsn_predefined_topics: dict[int, str] = field(default_factory=dict)
    mqttsn_max_sleep_buffer: int = 100           # QoS 0 messages held per sleeping client
    mqttsn_serial: list[tuple[str, int, str]] = field(default_factory=list)  # device, baud, framing
    mqttsn_default_username: str | None = None   # username of MQTT-SN clients not listed
    mqttsn_clients: dict[str, str] = field(default_factory=dict)   # client id -> username
    path: str | None = None                      # file the config came from (None = defaults)
    explicit_listeners: bool = False             # the file defined a listener, port or bind_address
    password_file: str | None = None
    acl_file: str | None = None
    scram_file: str | None = None                # SCRAM-SHA-256 credentials (MQTT 5 AUTH)
    psk_file: str | None = None                  # identity:hexkey for psk_hint listeners
    plugins: list[PluginSpec] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)   # connection sections (gateway.bridge)
    lines: dict[str, tuple[str, int]] = field(default_factory=dict, compare=False, repr=False)


def default_config() -> Config:
    """The configuration without a file: Mosquitto 2.0 local-only mode."""
    return Config(listeners=[Listener(DEFAULT_PORT, LOCAL_ONLY_ADDRESS)])


def anonymous_allowed(config: Config, listener: Listener) -> bool:
    """Mosquitto 2.0: an explicit allow_anonymous wins; otherwise anonymous
    clients are allowed only in local-only mode (no listener in the file)."""
    explicit = listener.allow_anonymous if config.per_listener_settings else config.allow_anonymous
    if explicit is not None:
        return explicit
    return not config.explicit_listeners


def parse_duration(text: str) -> int:
    """Seconds in a Mosquitto duration: ``<n>h``, ``d``, ``w``, ``m`` (30 days) or ``y`` (365)."""
    match = re.fullmatch(r"([0-9]+)([hdwmy])", text)
    if match is None:
        raise ConfigError(f"expected a duration such as 2d, 1w, 3m or 1y, got {text!r}")
    if len(match[1].lstrip("0")) > MAX_DIGITS:
        raise ConfigError(f"duration {text[:MAX_DIGITS]}... is too long")
    seconds = int(match[1]) * DURATION_UNITS[match[2]]
    if seconds <= 0:
        raise ConfigError("duration must be greater than zero")
    return seconds


def load(path: str) -> Config:
    """Parse the file at *path*, and the files it includes."""
    try:
        text = _read_text(path)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror}", path, 0) from None
    return parse(text, path)


def parse(text: str, path: str = "<string>") -> Config:
    """Parse configuration *text*; *path* names it in errors and in ``Config.path``."""
    parser = _Parser(path)
    parser.feed(text, path)
    return parser.finish()


# -- converters: the text after the key -> a value, or ConfigError(reason) ------------

def _word(args: str) -> str:
    words = args.split()
    if not words:
        raise ConfigError("missing value")
    if len(words) > 1:
        raise ConfigError("too many values")
    return words[0]


def _to_int(word: str, low: int, high: int | None) -> int:
    if not re.fullmatch(r"-?[0-9]+", word):
        raise ConfigError(f"expected an integer, got {word!r}")
    limits = f"{low}..{high}" if high is not None else f"at least {low}"
    if len(word.lstrip("-0")) > MAX_DIGITS:
        raise ConfigError(f"{word[:MAX_DIGITS]}... is out of range ({limits})")
    value = int(word)
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{value} is out of range ({limits})")
    return value


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    return lambda args: _to_int(_word(args), low, high)


def _packet_size(args: str) -> int:
    value = _to_int(_word(args), 0, None)
    if 0 < value < 20:
        raise ConfigError(f"{value} is out of range (0 for no limit, or at least 20)")
    return value


def _boolean(args: str) -> bool:
    # Mosquitto's conf__parse_bool also takes 1 and 0.
    word = _word(args)
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise ConfigError(f"expected true or false, got {word!r}")


def _choice(allowed: frozenset[str], reason: str) -> Callable[[str], str]:
    def convert(args: str) -> str:
        word = _word(args)
        if word not in allowed:
            raise ConfigError(reason.format(word))
        return word
    return convert


def _text(args: str) -> str:
    # The rest of the line, blanks included, like Mosquitto's conf__parse_string.
    if not args:
        raise ConfigError("missing value")
    return args


def _duration(args: str) -> int:
    return parse_duration(_word(args))


def _listener_args(args: str) -> tuple[int, str | None]:
    words = args.split()
    if len(words) > 1 and words[1].startswith("#"):
        words = words[:1]                  # "listener 1883 # comment", as Mosquitto allows
    if not words:
        raise ConfigError("missing value")
    if len(words) > 2:
        raise ConfigError("too many values")
    return _to_int(words[0], 1, 65535), (words[1] if len(words) == 2 else None)


def _rate(args: str) -> tuple[int, float]:
    # "COUNT" or "COUNT/SECONDS": new connections allowed per source address.
    count, _, seconds = _word(args).partition("/")
    n = _to_int(count, 1, None)
    if not seconds:
        return n, 1.0
    try:
        period = float(seconds.rstrip("s"))
    except ValueError:
        period = 0.0
    if not 0 < period < math.inf:  # also refuses "nan"
        raise ConfigError(f"expected COUNT or COUNT/SECONDS, got {args.strip()!r}")
    return n, period


def _mqttsn_predefined(args: str) -> tuple[int, str]:
    words = args.split(None, 1)
    if len(words) < 2:
        raise ConfigError("expected a topic id and a topic name")
    topic_id = _to_int(words[0], 1, 0xFFFE)
    topic = words[1].strip()
    if "+" in topic or "#" in topic:
        raise ConfigError(f"a predefined topic is a topic name, not a filter: {topic!r}")
    return topic_id, topic


def _mqttsn_serial(args: str) -> tuple[str, int, str]:
    words = args.split()
    if len(words) != 3:
        raise ConfigError("expected DEVICE BAUD FRAMING")
    device, baud, framing = words
    if framing not in MQTTSN_FRAMINGS:
        raise ConfigError(f"framing must be plain, xbee1 or xbee2, got {framing!r}")
    return device, _to_int(baud, 50, 4_000_000), framing


def _mqttsn_client(args: str) -> tuple[str, str]:
    words = args.split()
    if not words or len(words) > 2:
        raise ConfigError("expected CLIENT_ID [USERNAME]")
    return words[0], words[-1]


def _mount_point(args: str) -> str:
    value = _text(args)
    if "+" in value or "#" in value or "\x00" in value:
        raise ConfigError(f"invalid mount point {value!r}: no wildcards")
    return value


def _protocol_versions(args: str) -> frozenset[int]:
    """Mosquitto 2.1's list: ``3``, ``4`` and ``5`` separated by commas or spaces."""
    words = [w for w in args.replace(",", " ").split() if w]
    if not words:
        raise ConfigError("expected a list of 3, 4 and 5")
    unknown = [w for w in words if w not in ("3", "4", "5")]
    if unknown:
        raise ConfigError(f"unknown protocol version {unknown[0]!r} (expected 3, 4 or 5)")
    return frozenset(int(w) for w in words)


def _mqttsn_multicast(args: str) -> tuple[str, int]:
    words = args.split()
    if len(words) != 2:
        raise ConfigError("expected GROUP PORT")
    try:
        group = ipaddress.IPv4Address(words[0])
    except ValueError:
        group = None
    if group is None or not group.is_multicast:
        raise ConfigError(f"not an IPv4 multicast group: {words[0]!r}")
    return str(group), _to_int(words[1], 1, 65535)


def _headers_size(args: str) -> int:
    return _to_int(_word(args), 0, 65535) or WEBSOCKETS_HEADERS_SIZE


def _add_origin(parser: _Parser, line: _Line, value: object, scope: Scope) -> None:
    parser.target(line, scope).websockets_origin.append(value)  # type: ignore[union-attr]


def _add_mqttsn_predefined(parser: _Parser, line: _Line, value: object, scope: Scope) -> None:
    topic_id, topic = value  # type: ignore[misc]
    table = parser.config.mqttsn_predefined_topics
    if topic_id in table:
        raise line.error(f"topic id {topic_id} is already predefined as {table[topic_id]!r}")
    table[topic_id] = topic


def _add_mqttsn_serial(parser: _Parser, line: _Line, value: object, scope: Scope) -> None:
    if any(value[0] == s[0] for s in parser.config.mqttsn_serial):  # type: ignore[index]
        raise line.error(f"serial device {value[0]!r} is already configured")  # type: ignore[index]
    parser.config.mqttsn_serial.append(value)  # type: ignore[arg-type]


def _add_mqttsn_client(parser: _Parser, line: _Line, value: object, scope: Scope) -> None:
    client_id, username = value  # type: ignore[misc]
    if client_id in parser.config.mqttsn_clients:
        raise line.error(f"client id {client_id!r} is already listed")
    parser.config.mqttsn_clients[client_id] = username


_log_type = _choice(frozenset(ALL_LOG_TYPES) | {"none", "all"}, "unknown log type {!r}")


def _log_dest(args: str) -> str:
    words = args.split(None, 1)
    if words[:1] == ["file"]:
        if len(words) == 1:
            raise ConfigError("the file destination needs a path")
        return f"file {words[1]}"
    return _choice(LOG_DESTS | {"none"}, "unknown log destination {!r}")(args)


# -- the parser ----------------------------------------------------------------------

class Scope(enum.Enum):
    GLOBAL = "global"        # a field of Config
    LISTENER = "listener"    # a field of the current listener
    SECURITY = "security"    # Config, or the current listener if per_listener_settings
    BRIDGE = "bridge"        # a field of the current connection section


class _Line(NamedTuple):
    path: str
    number: int
    key: str

    def error(self, reason: str) -> ConfigError:
        return ConfigError(reason, self.path, self.number, self.key)


_LISTENER_FIELDS = frozenset(f.name for f in fields(Listener))
# Listener keys that only some protocols have.
_ONLY_FOR = {"mqttsn_multicast": ("mqttsn",), "websockets_origin": ("websockets",),
             "enable_proxy_protocol": ("mqtt", "websockets"), "oscore_file": ("coap",)}


def _mosquitto_order(name: str) -> list[tuple[str, str]]:
    # Mosquitto's include_dir order: by letter ignoring case, then upper case first.
    return [(c.upper() if c.isascii() else c, c) for c in name]


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", path, line) from None


class _Parser:
    def __init__(self, path: str) -> None:
        self.config = Config(listeners=[], path=path)
        self.default = Listener(DEFAULT_PORT)       # set by port / bind_address
        self.default_line: _Line | None = None      # first port / bind_address line
        self.default_last: _Line | None = None      # last one
        self.default_needed: _Line | None = None    # first listener key given to it
        self.current: Listener | None = None        # last `listener` section
        self.bridge: Bridge | None = None           # last `connection` section
        self.created: list[tuple[Listener, _Line]] = []
        self.security_line: _Line | None = None
        self.set_at: dict[tuple[int, str], _Line] = {}
        self.log_type: list[str] | None = None
        self.log_dest: list[str] | None = None
        self.depth = 0                               # include_dir nesting

    def feed(self, text: str, path: str) -> None:
        for number, raw in enumerate(text.split("\n"), 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            key, *rest = stripped.split(None, 1)
            line = _Line(path, number, key)
            if "\x00" in stripped:
                # No path may hold one (open() raises ValueError), and Mosquitto's
                # C strings would end there.
                raise line.error("NUL character in the line")
            entry = KEYS.get(key)
            if entry is None and key.startswith("plugin_opt_") and len(key) > 11:
                entry = KEYS["plugin_opt_"]
            if entry is None:
                raise line.error(refusal(key))
            try:
                entry.apply(self, line, entry.convert(rest[0] if rest else ""), entry.scope)
            except ConfigError as exc:
                if exc.path:
                    raise
                raise line.error(exc.reason) from None

    def finish(self) -> Config:
        config = self.config
        if self.default_needed is not None and self.default_line is None:
            raise self.default_needed.error(
                "needs a listener: put it after a listener line (or use port/bind_address)")
        for listener, _ in self.created:
            check_listener(listener)
        first: dict[tuple[int, str | None], _Line] = {}
        for listener, line in self.created:
            if listener is self.default:
                line = self.default_last           # the line that set its final address
            where = first.setdefault((listener.port, listener.bind_address), line)
            if where is not line:
                on = f"{listener.bind_address}:" if listener.bind_address else "port "
                raise line.error(f"duplicate listener on {on}{listener.port} "
                                 f"(first defined at {where.path}:{where.number})")
        for listener, _ in self.created:
            for key, protocols in _ONLY_FOR.items():
                if key in listener.lines and listener.protocol not in protocols:
                    path, number = listener.lines[key]
                    raise ConfigError(f"only for a protocol {' or '.join(protocols)} listener",
                                      path, number, key)
        config.listeners = [listener for listener, _ in self.created]
        if not config.listeners:
            config.listeners = default_config().listeners
        finish_bridges(config.bridges)
        if self.log_type is not None:
            config.log_type = self.log_type
        if self.log_dest is not None:
            config.log_dest = self.log_dest
        return config

    # -- where a value goes

    def target(self, line: _Line, scope: Scope) -> Config | Listener | Bridge:
        target = self._target(line, scope)
        target.lines.setdefault(line.key, (line.path, line.number))
        return target

    def _target(self, line: _Line, scope: Scope) -> Config | Listener | Bridge:
        if scope is Scope.BRIDGE:
            if self.bridge is None:
                raise line.error("needs a bridge: put it after a connection line")
            return self.bridge
        if scope is Scope.SECURITY:
            self.security_line = self.security_line or line
            if not self.config.per_listener_settings:
                return self.config
            if line.key not in _LISTENER_FIELDS:
                raise line.error("not supported per listener (per_listener_settings is true): "
                                 "drop the line, or set it once with per_listener_settings false")
        elif scope is Scope.GLOBAL:
            return self.config
        if self.current is not None:
            return self.current
        self.default_needed = self.default_needed or line
        return self.default

    def store(self, line: _Line, value: object, scope: Scope) -> None:
        setattr(self.target(line, scope), line.key, value)

    @staticmethod
    def store_as(name: str) -> Callable[[_Parser, _Line, object, Scope], None]:
        """For a key that is another key's alias (Mosquitto's ``maximum_qos``)."""
        def store(parser: _Parser, line: _Line, value: object, scope: Scope) -> None:
            target = parser.target(line, scope)
            target.lines.setdefault(name, (line.path, line.number))
            setattr(target, name, value)
        return store

    def store_once(self, line: _Line, value: object, scope: Scope) -> None:
        # Mosquitto refuses a second value for its string settings.
        target = self.target(line, scope)
        self.first_time(target, line)
        setattr(target, line.key, value)

    def first_time(self, target: Config | Listener, line: _Line) -> None:
        first = self.set_at.setdefault((id(target), line.key), line)
        if first is not line:
            raise line.error(f"duplicate value (first set at {first.path}:{first.number})")

    # -- keys that do more than store a value

    def open_listener(self, line: _Line, value: tuple[int, str | None], scope: Scope) -> None:
        port, bind_address = value
        self.current = Listener(port, bind_address, source=(line.path, line.number))
        self.created.append((self.current, line))
        self.config.explicit_listeners = True

    def configure_default(self, line: _Line, value: object, scope: Scope) -> None:
        if self.default_line is None:
            self.default_line = line
            self.default.source = (line.path, line.number)
            self.created.append((self.default, line))
        self.default_last = line
        self.config.explicit_listeners = True
        if line.key == "bind_address":
            self.first_time(self.default, line)
        setattr(self.default, line.key, value)

    def set_per_listener_settings(self, line: _Line, value: bool, scope: Scope) -> None:
        if value and self.security_line is not None:
            raise line.error("must come before any security setting (first at "
                             f"{self.security_line.path}:{self.security_line.number})")
        self.config.per_listener_settings = value

    def add_log_type(self, line: _Line, value: str, scope: Scope) -> None:
        types = self.log_type if self.log_type is not None else []
        if value == "none":
            types = []
        elif value == "all":
            types = list(ALL_LOG_TYPES)
        elif value not in types:
            types.append(value)
        self.log_type = types

    def add_log_dest(self, line: _Line, value: str, scope: Scope) -> None:
        dests = self.log_dest if self.log_dest is not None else []
        if value == "none":
            dests = []
        elif value.startswith("file ") and any(d.startswith("file ") for d in dests):
            raise line.error("only one file destination is allowed")
        elif value not in dests:
            dests.append(value)
        if value.startswith("file "):
            self.config.lines["log_dest"] = (line.path, line.number)   # for an unwritable file
        self.log_dest = dests

    def add_plugin(self, line: _Line, path: str, scope: Scope) -> None:
        self.target(line, scope).plugins.append(PluginSpec(path, {}, (line.path, line.number)))

    def plugin_option(self, line: _Line, value: str, scope: Scope) -> None:
        if line.key == "plugin_opt_":
            raise line.error("missing option name")
        plugins = self.target(line, scope).plugins
        if not plugins:
            raise line.error("needs a plugin line before it")
        plugins[-1].options[line.key[len("plugin_opt_"):]] = value

    def listener_or_global(self, line: _Line, value: object, scope: Scope) -> None:
        # Inside a listener section: that listener only; before any: every listener.
        target = self.current if self.current is not None else self.config
        target.lines[line.key] = (line.path, line.number)
        setattr(target, line.key, value)

    def include(self, line: _Line, directory: str, scope: Scope) -> None:
        if self.depth > 0:
            raise line.error("only allowed in the main configuration file")
        try:
            names = os.listdir(directory)
        except OSError as exc:
            raise line.error(f"cannot read directory {directory!r}: {exc.strerror}") from None
        main = self.config.path
        for name in sorted((n for n in names if len(n) > 5 and n.endswith(".conf")),
                           key=_mosquitto_order):
            path = os.path.join(directory, name)
            try:
                if main and os.path.exists(main) and os.path.samefile(path, main):
                    raise line.error("the directory holds the main configuration file")
                text = _read_text(path)
            except OSError as exc:
                raise line.error(f"cannot read {path!r}: {exc.strerror}") from None
            self.depth += 1
            try:
                self.feed(text, path)
            finally:
                self.depth -= 1


class _Key(NamedTuple):
    convert: Callable[[str], object]
    scope: Scope
    apply: Callable[[_Parser, _Line, object, Scope], None] = _Parser.store


_G, _L, _S = Scope.GLOBAL, Scope.LISTENER, Scope.SECURITY

KEYS: dict[str, _Key] = {
    # listeners
    "listener": _Key(_listener_args, _L, _Parser.open_listener),
    "port": _Key(_integer(1, 65535), _L, _Parser.configure_default),
    "bind_address": _Key(_text, _L, _Parser.configure_default),
    "protocol": _Key(_choice(PROTOCOLS, "unsupported protocol {!r}"), _L),
    "max_connections": _Key(_integer(-1), _L),
    "socket_domain": _Key(_choice(SOCKET_DOMAINS, "expected ipv4 or ipv6, got {!r}"), _L),
    "enable_proxy_protocol": _Key(_integer(1, 2), _L),
    # MQTT over WebSockets (gateway.mqtt.websocket)
    "websockets_origin": _Key(_word, _L, _add_origin),
    "websockets_headers_size": _Key(_headers_size, _G),
    "websockets_log_level": _Key(_integer(0), _G),
    # security
    "per_listener_settings": _Key(_boolean, _G, _Parser.set_per_listener_settings),
    "allow_anonymous": _Key(_boolean, _S),
    "allow_zero_length_clientid": _Key(_boolean, _S),
    "auto_id_prefix": _Key(_text, _S, _Parser.store_once),
    # limits
    "max_inflight_messages": _Key(_integer(0, 65535), _G),
    "max_inflight_bytes": _Key(_integer(0), _G),
    "max_queued_messages": _Key(_integer(0), _G),
    "max_queued_bytes": _Key(_integer(0), _G),
    "message_size_limit": _Key(_integer(0, MAX_PAYLOAD), _G),
    "max_packet_size": _Key(_packet_size, _G),
    "max_subscriptions": _Key(_integer(0), _G),
    "max_keepalive": _Key(_integer(0, 65535), _G, _Parser.listener_or_global),
    # behaviour
    "retain_available": _Key(_boolean, _G),
    "upgrade_outgoing_qos": _Key(_boolean, _G),
    "check_retain_source": _Key(_boolean, _G),
    "persistent_client_expiration": _Key(_duration, _G),
    "set_tcp_nodelay": _Key(_boolean, _G),
    "persistence": _Key(_boolean, _G),
    "retained_persistence": _Key(_boolean, _G, _Parser.store_as("persistence")),
    "persistence_location": _Key(_text, _G),
    "persistence_file": _Key(_text, _G),
    "persistence_sync": _Key(_choice(frozenset({"normal", "full"}), "expected normal or full, got {!r}"), _G),
    "autosave_interval": _Key(_integer(0), _G),
    "autosave_on_changes": _Key(_boolean, _G),
    "sys_interval": _Key(_integer(0, 65535), _G),
    # CoAP
    "coap_max_requests_per_second": _Key(_integer(0), _G),
    "coap_max_requests_per_address": _Key(_integer(0), _G),
    "coap_deduplication_entries": _Key(_integer(1), _G),
    "coap_connection_required": _Key(_boolean, _G),
    "coap_heartbeat": _Key(_integer(1, 86400), _G),
    "coap_publish_qos": _Key(_choice(COAP_QOS_CHOICES, "expected qos0, qos1, qos2 or coap, got {!r}"), _G),
    "coap_subscribe_qos": _Key(_choice(COAP_QOS_CHOICES, "expected qos0, qos1, qos2 or coap, got {!r}"), _G),
    "coap_notify_type": _Key(_choice(COAP_NOTIFY_TYPES, "expected non, con or qos, got {!r}"), _G),
    "oscore_file": _Key(_text, _G, _Parser.listener_or_global),
    # DTLS
    "dtls_max_sessions": _Key(_integer(1), _G),
    "dtls_max_handshakes": _Key(_integer(1), _G),
    "dtls_idle_timeout": _Key(_integer(1), _G),
    # MQTT-SN
    "mqttsn_gateway_id": _Key(_integer(0, 255), _G),
    "mqttsn_advertise_interval": _Key(_integer(0, 65535), _G),
    "mqttsn_predefined_topic": _Key(_mqttsn_predefined, _G, _add_mqttsn_predefined),
    "mqttsn_max_sleep_buffer": _Key(_integer(0), _G),
    "mqttsn_serial": _Key(_mqttsn_serial, _G, _add_mqttsn_serial),
    "mqttsn_default_username": _Key(_word, _G, _Parser.store_once),
    "mqttsn_client": _Key(_mqttsn_client, _G, _add_mqttsn_client),
    "mqttsn_multicast": _Key(_mqttsn_multicast, _L),
    "user": _Key(_text, _G, _Parser.store_once),
    "pid_file": _Key(_text, _G, _Parser.store_once),
    # logging
    "log_type": _Key(_log_type, _G, _Parser.add_log_type),
    "log_dest": _Key(_log_dest, _G, _Parser.add_log_dest),
    # files
    "include_dir": _Key(_text, _G, _Parser.include),
    # authentication and ACL (gateway.hub.auth)
    "password_file": _Key(_text, _S, _Parser.store_once),
    "acl_file": _Key(_text, _S, _Parser.store_once),
    "scram_file": _Key(_text, _S, _Parser.store_once),
    "psk_file": _Key(_text, _S, _Parser.store_once),
    "plugin": _Key(_text, _S, _Parser.add_plugin),
    "plugin_opt_": _Key(_text, _S, _Parser.plugin_option),
    # TLS (gateway.tls)
    "cafile": _Key(_text, _L, _Parser.store_once),
    "capath": _Key(_text, _L, _Parser.store_once),
    "certfile": _Key(_text, _L, _Parser.store_once),
    "keyfile": _Key(_text, _L, _Parser.store_once),
    "crlfile": _Key(_text, _L, _Parser.store_once),
    "ciphers": _Key(_text, _L, _Parser.store_once),
    "tls_version": _Key(_choice(TLS_VERSIONS, "expected tlsv1.1, tlsv1.2 or tlsv1.3, got {!r}"), _L),
    "require_certificate": _Key(_boolean, _L),
    "use_identity_as_username": _Key(_boolean, _L),
    "use_subject_as_username": _Key(_boolean, _L),
    "psk_hint": _Key(_text, _L, _Parser.store_once),
    "max_connection_rate": _Key(_rate, _L),
    # MQTT per listener (MQTT 5 limits, mount point, accepted levels)
    "max_qos": _Key(_integer(0, 2), _L),
    "maximum_qos": _Key(_integer(0, 2), _L, _Parser.store_as("max_qos")),
    "max_topic_alias": _Key(_integer(0, 65535), _L),
    "mount_point": _Key(_mount_point, _L),
    "accept_protocol_versions": _Key(_protocol_versions, _L),
    "listener_allow_anonymous": _Key(_boolean, _L),
    # HTTP API (gateway.web)
    "http_dir": _Key(_text, _L, _Parser.store_once),
    # bridges (gateway.config_bridges, gateway.bridge)
    **{key: _Key(convert, Scope.BRIDGE, apply) for key, (convert, apply) in BRIDGE_KEYS.items()},
}
