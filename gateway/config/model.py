"""What a configuration file becomes: ``Config`` for the broker as a whole, one
``Listener`` per listener section.

The rest of the gateway reads only these dataclasses, never the file: the parser
(``gateway.config.parser``) fills them, the service layer starts what they describe.
Every field has Mosquitto's default, so a file sets only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config.bridges import Bridge
from gateway.config.values import WEBSOCKETS_HEADERS_SIZE
from gateway.security.plugins import PluginSpec

DEFAULT_PORT = 1883
LOCAL_ONLY_ADDRESS = "127.0.0.1"
PROTOCOLS = frozenset({"mqtt", "websockets", "coap", "mqttsn", "http_api"})
COAP_PORT = 5683                            # the usual port of a "protocol coap" listener
DEFAULT_LOG_TYPES = ("error", "warning", "notice", "information")


@dataclass
class Listener:
    """One listener section; ``lines`` keeps where each key was set, for errors found
    later (a certificate that does not load names its ``certfile`` line)."""

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
    """The broker as a whole: the keys outside any section, and every section."""

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

