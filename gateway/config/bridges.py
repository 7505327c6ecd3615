"""The ``connection`` sections of the configuration: bridges, in Mosquitto's syntax.

``connection NAME`` opens a bridge section, as ``listener`` opens a listener one; the
bridge keys after it apply to that bridge. The keys, their defaults and their checks
follow Mosquitto 2.0's ``conf.c`` (``bridge_receive_maximum`` and
``bridge_session_expiry_interval`` come from Mosquitto 2.1), except that a value
Mosquitto would clamp (a keepalive under 5 s) is refused here with its range.
The key table (``gateway.config.keys``) takes the keys here from ``BRIDGE_KEYS``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.bridge.topics import TopicRule, parse_rule
from gateway.config.values import (
    TLS_VERSIONS, boolean, choice, integer, one_word, rest_of_line, to_int,
)
from gateway.errors import ConfigError

PROTOCOL_VERSIONS = {"mqttv31": 3, "mqttv311": 4, "mqttv50": 5}
START_TYPES = frozenset({"automatic", "once"})
DEFAULT_PORT = 1883


@dataclass
class Bridge:
    """One ``connection`` section."""

    name: str
    source: tuple[str, int] = ("<default>", 0)
    addresses: list[tuple[str, int]] = field(default_factory=list)
    topics: list[TopicRule] = field(default_factory=list)
    remote_clientid: str | None = None        # None: HOSTNAME.NAME, set by finish_bridges
    remote_username: str | None = None
    remote_password: str | None = None
    local_clientid: str | None = None         # None: local.REMOTE_CLIENTID
    local_username: str | None = None
    local_password: str | None = None
    cleansession: bool = False
    local_cleansession: bool | None = None    # None: as cleansession
    protocol_version: int = 4                 # 3, 4 or 5
    try_private: bool = True
    notifications: bool = True
    notifications_local_only: bool = False
    notification_topic: str | None = None     # None: $SYS/broker/connection/REMOTE_CLIENTID/state
    keepalive: int = 60
    restart_base: int = 5                     # seconds before the first retry
    restart_cap: int | None = 30              # backoff ceiling; None: always restart_base
    round_robin: bool = False
    start_type: str = "automatic"
    attempt_unsubscribe: bool = True
    outgoing_retain: bool = True
    max_packet_size: int = 0                  # 0: the remote's limit only
    receive_maximum: int = 0                  # MQTT 5; 0: max_inflight_messages
    session_expiry_interval: int = 0          # MQTT 5
    bind_address: str | None = None
    cafile: str | None = None
    capath: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False
    tls_version: str | None = None
    alpn: str | None = None
    lines: dict[str, tuple[str, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tls(self) -> bool:
        return bool(self.cafile or self.capath)

    @property
    def state_topic(self) -> str:
        return self.notification_topic or f"$SYS/broker/connection/{self.remote_clientid}/state"


# -- converters (the shared ones are in gateway.config.values) ------------------------

def _address(word: str) -> tuple[str, int]:
    """``HOST[:PORT]``; the last colon splits, so an IPv6 address needs its port."""
    host, sep, port = word.rpartition(":")
    if not sep:
        return word, DEFAULT_PORT
    if not host:
        raise ConfigError(f"missing host in {word!r}")
    return host.strip("[]"), to_int(port, 1, 65535)


def _addresses(args: str) -> list[tuple[str, int]]:
    words = args.split()
    for i, word in enumerate(words):
        if word.startswith("#"):
            words = words[:i]
            break
    if not words:
        raise ConfigError("missing value")
    return [_address(w) for w in words]


def _topic(args: str) -> TopicRule:
    try:
        return parse_rule(args)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _protocol_version(args: str) -> int:
    word = one_word(args)
    if word not in PROTOCOL_VERSIONS:
        raise ConfigError(f"expected mqttv31, mqttv311 or mqttv50, got {word!r}")
    return PROTOCOL_VERSIONS[word]


def _start_type(args: str) -> str:
    word = one_word(args)
    if word == "lazy":
        raise ConfigError("lazy is not implemented: use automatic (the default); messages "
                          "for out topics queue while the remote is away")
    if word not in START_TYPES:
        raise ConfigError(f"expected automatic or once, got {word!r}")
    return word


def _restart_timeout(args: str) -> tuple[int, int | None]:
    """``CONSTANT`` or ``BASE CAP`` (decorrelated jitter between them)."""
    words = args.split()
    if not words or len(words) > 2:
        raise ConfigError("expected SECONDS or BASE CAP")
    base = to_int(words[0], 1, 86400)
    if len(words) == 1:
        return base, None
    cap = to_int(words[1], 1, 86400)
    if cap < base:
        raise ConfigError(f"the cap ({cap}) is lower than the base ({base})")
    return base, cap


_tls_version = choice(TLS_VERSIONS, "expected tlsv1.1, tlsv1.2 or tlsv1.3, got {!r}")


# -- how a value lands in the bridge section ------------------------------------------

def _set(name: str, once: bool = False) -> Callable[[Any, Any, object, Any], None]:
    """Store in the open bridge; ``once``: a second line is refused (Mosquitto's
    string settings)."""
    def apply(parser: Any, line: Any, value: object, scope: Any) -> None:
        bridge = parser.target(line, scope)
        bridge.lines.setdefault(name, (line.path, line.number))
        if once:
            first = parser.set_at.setdefault((id(bridge), name), line)
            if first is not line:
                raise line.error(f"duplicate value (first set at {first.path}:{first.number})")
        setattr(bridge, name, value)
    return apply


def _open(parser: Any, line: Any, name: object, scope: Any) -> None:
    bridges = parser.config.bridges
    for other in bridges:
        if other.name == name:
            raise line.error(f"duplicate bridge name {name!r} (first at "
                             f"{other.source[0]}:{other.source[1]})")
    parser.bridge = Bridge(str(name), source=(line.path, line.number))
    bridges.append(parser.bridge)


def _add_topic(parser: Any, line: Any, rule: object, scope: Any) -> None:
    bridge = parser.target(line, scope)
    bridge.lines.setdefault("topic", (line.path, line.number))
    bridge.topics.append(rule)


def _set_restart(parser: Any, line: Any, value: Any, scope: Any) -> None:
    bridge = parser.target(line, scope)
    bridge.lines.setdefault("restart_timeout", (line.path, line.number))
    bridge.restart_base, bridge.restart_cap = value


#: key -> (converter, how the value is applied); every key but ``connection`` needs an
#: open bridge section.
BRIDGE_KEYS: dict[str, tuple[Callable[[str], object], Callable[..., None]]] = {
    "connection": (one_word, _open),
    "address": (_addresses, _set("addresses", once=True)),
    "addresses": (_addresses, _set("addresses", once=True)),
    "topic": (_topic, _add_topic),
    "remote_clientid": (rest_of_line, _set("remote_clientid", once=True)),
    "clientid": (rest_of_line, _set("remote_clientid", once=True)),
    "remote_username": (rest_of_line, _set("remote_username", once=True)),
    "username": (rest_of_line, _set("remote_username", once=True)),
    "remote_password": (rest_of_line, _set("remote_password", once=True)),
    "password": (rest_of_line, _set("remote_password", once=True)),
    "local_clientid": (rest_of_line, _set("local_clientid", once=True)),
    "local_username": (rest_of_line, _set("local_username", once=True)),
    "local_password": (rest_of_line, _set("local_password", once=True)),
    "cleansession": (boolean, _set("cleansession")),
    "local_cleansession": (boolean, _set("local_cleansession")),
    "bridge_protocol_version": (_protocol_version, _set("protocol_version")),
    "try_private": (boolean, _set("try_private")),
    "notifications": (boolean, _set("notifications")),
    "notifications_local_only": (boolean, _set("notifications_local_only")),
    "notification_topic": (rest_of_line, _set("notification_topic", once=True)),
    "keepalive_interval": (integer(5, 65535), _set("keepalive")),
    "restart_timeout": (_restart_timeout, _set_restart),
    "round_robin": (boolean, _set("round_robin")),
    "start_type": (_start_type, _set("start_type")),
    "bridge_attempt_unsubscribe": (boolean, _set("attempt_unsubscribe")),
    "bridge_outgoing_retain": (boolean, _set("outgoing_retain")),
    "bridge_max_packet_size": (integer(0, 268435460), _set("max_packet_size")),
    "bridge_receive_maximum": (integer(1, 65535), _set("receive_maximum")),
    "bridge_session_expiry_interval": (integer(0, 0xFFFFFFFF), _set("session_expiry_interval")),
    "bridge_bind_address": (one_word, _set("bind_address", once=True)),
    "bridge_cafile": (rest_of_line, _set("cafile", once=True)),
    "bridge_capath": (rest_of_line, _set("capath", once=True)),
    "bridge_certfile": (rest_of_line, _set("certfile", once=True)),
    "bridge_keyfile": (rest_of_line, _set("keyfile", once=True)),
    "bridge_insecure": (boolean, _set("insecure")),
    "bridge_tls_version": (_tls_version, _set("tls_version")),
    "bridge_alpn": (rest_of_line, _set("alpn", once=True)),
}

#: The field each key sets, for errors found once the section is complete.
_FIELD_KEYS = {"certfile": "bridge_certfile", "keyfile": "bridge_keyfile",
               "insecure": "bridge_insecure", "tls_version": "bridge_tls_version",
               "alpn": "bridge_alpn", "remote_password": "remote_password",
               "local_password": "local_password"}


def finish_bridges(bridges: list[Bridge], hostname: str | None = None) -> None:
    """Checks of whole sections and Mosquitto's default client ids (``config__check``)."""
    host = hostname or socket.gethostname()
    for bridge in bridges:
        _check(bridge)
        if bridge.remote_clientid is None:
            bridge.remote_clientid = f"{host}.{bridge.name}"
        if bridge.local_clientid is None:
            bridge.local_clientid = f"local.{bridge.remote_clientid}"
    seen: dict[str, Bridge] = {}
    for bridge in bridges:
        other = seen.setdefault(bridge.local_clientid, bridge)  # type: ignore[arg-type]
        if other is not bridge:
            raise _error(bridge, None, f"local_clientid {bridge.local_clientid!r} is also bridge "
                         f"{other.name!r}'s: set local_clientid (or remote_clientid) on one")


def _error(bridge: Bridge, field_name: str | None, reason: str) -> ConfigError:
    key = _FIELD_KEYS.get(field_name or "", field_name)
    path, number = bridge.lines.get(field_name or "", bridge.source)
    return ConfigError(f"bridge {bridge.name!r}: {reason}", path, number,
                       key if field_name else "connection")


def _check(bridge: Bridge) -> None:
    if not bridge.addresses:
        raise _error(bridge, None, "no address line")
    if not bridge.topics:
        raise _error(bridge, None, "no topic line")
    if bridge.remote_password is not None and bridge.remote_username is None:
        raise _error(bridge, "remote_password", "needs remote_username")
    if bridge.local_password is not None and bridge.local_username is None:
        raise _error(bridge, "local_password", "needs local_username")
    if not bridge.tls:
        for name in ("certfile", "keyfile", "insecure", "tls_version", "alpn"):
            if name in bridge.lines:
                raise _error(bridge, name, "needs bridge_cafile or bridge_capath (TLS)")
    if (bridge.certfile is None) != (bridge.keyfile is None):
        name = "certfile" if bridge.certfile is not None else "keyfile"
        raise _error(bridge, name, "bridge_certfile and bridge_keyfile go together")
