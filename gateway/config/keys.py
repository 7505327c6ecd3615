"""Every configuration key the gateway implements: how its value is converted
(``gateway.config.values``), which section it sets (``Scope``) and, when storing the
value is not enough, what the parser does with it.

One table, so a key cannot be half known: ``gateway.unsupported`` holds the keys
Mosquitto has and the gateway refuses, and tests/test_config.py checks that the two
do not overlap and that the README lists them all.
"""

from __future__ import annotations

from gateway.config.bridges import BRIDGE_KEYS
from gateway.config.model import PROTOCOLS
from gateway.config.parser import Key, Line, Parser, Scope
from gateway.config.values import (
    COAP_NOTIFY_TYPES, COAP_QOS_CHOICES, MAX_PAYLOAD, SOCKET_DOMAINS, TLS_VERSIONS, boolean,
    choice, duration, headers_size, integer, listener_args, log_dest, log_type, mount_point,
    mqttsn_client, mqttsn_multicast, mqttsn_predefined, mqttsn_serial, one_word, packet_size,
    protocol_versions, rate, rest_of_line,
)

# -- keys whose value is added to a list or table rather than stored ---------------

def _add_origin(parser: Parser, line: Line, value: object, scope: Scope) -> None:
    parser.target(line, scope).websockets_origin.append(value)  # type: ignore[union-attr]


def _add_mqttsn_predefined(parser: Parser, line: Line, value: object, scope: Scope) -> None:
    topic_id, topic = value  # type: ignore[misc]
    table = parser.config.mqttsn_predefined_topics
    if topic_id in table:
        raise line.error(f"topic id {topic_id} is already predefined as {table[topic_id]!r}")
    table[topic_id] = topic


def _add_mqttsn_serial(parser: Parser, line: Line, value: object, scope: Scope) -> None:
    if any(value[0] == s[0] for s in parser.config.mqttsn_serial):  # type: ignore[index]
        raise line.error(f"serial device {value[0]!r} is already configured")  # type: ignore[index]
    parser.config.mqttsn_serial.append(value)  # type: ignore[arg-type]


def _add_mqttsn_client(parser: Parser, line: Line, value: object, scope: Scope) -> None:
    client_id, username = value  # type: ignore[misc]
    if client_id in parser.config.mqttsn_clients:
        raise line.error(f"client id {client_id!r} is already listed")
    parser.config.mqttsn_clients[client_id] = username


_G, _L, _S = Scope.GLOBAL, Scope.LISTENER, Scope.SECURITY

KEYS: dict[str, Key] = {
    # listeners
    "listener": Key(listener_args, _L, Parser.open_listener),
    "port": Key(integer(1, 65535), _L, Parser.configure_default),
    "bind_address": Key(rest_of_line, _L, Parser.configure_default),
    "protocol": Key(choice(PROTOCOLS, "unsupported protocol {!r}"), _L),
    "max_connections": Key(integer(-1), _L),
    "socket_domain": Key(choice(SOCKET_DOMAINS, "expected ipv4 or ipv6, got {!r}"), _L),
    "enable_proxy_protocol": Key(integer(1, 2), _L),
    # MQTT over WebSockets (gateway.mqtt.websocket)
    "websockets_origin": Key(one_word, _L, _add_origin),
    "websockets_headers_size": Key(headers_size, _G),
    "websockets_log_level": Key(integer(0), _G),
    # security
    "per_listener_settings": Key(boolean, _G, Parser.set_per_listener_settings),
    "allow_anonymous": Key(boolean, _S),
    "allow_zero_length_clientid": Key(boolean, _S),
    "auto_id_prefix": Key(rest_of_line, _S, Parser.store_once),
    # limits
    "max_inflight_messages": Key(integer(0, 65535), _G),
    "max_inflight_bytes": Key(integer(0), _G),
    "max_queued_messages": Key(integer(0), _G),
    "max_queued_bytes": Key(integer(0), _G),
    "message_size_limit": Key(integer(0, MAX_PAYLOAD), _G),
    "max_packet_size": Key(packet_size, _G),
    "max_subscriptions": Key(integer(0), _G),
    "max_keepalive": Key(integer(0, 65535), _G, Parser.listener_or_global),
    # behaviour
    "retain_available": Key(boolean, _G),
    "upgrade_outgoing_qos": Key(boolean, _G),
    "check_retain_source": Key(boolean, _G),
    "persistent_client_expiration": Key(duration, _G),
    "set_tcp_nodelay": Key(boolean, _G),
    "persistence": Key(boolean, _G),
    "retained_persistence": Key(boolean, _G, Parser.store_as("persistence")),
    "persistence_location": Key(rest_of_line, _G),
    "persistence_file": Key(rest_of_line, _G),
    "persistence_sync": Key(choice(frozenset({"normal", "full"}), "expected normal or full, got {!r}"), _G),
    "autosave_interval": Key(integer(0), _G),
    "autosave_on_changes": Key(boolean, _G),
    "sys_interval": Key(integer(0, 65535), _G),
    # CoAP
    "coap_max_requests_per_second": Key(integer(0), _G),
    "coap_max_requests_per_address": Key(integer(0), _G),
    "coap_deduplication_entries": Key(integer(1), _G),
    "coap_connection_required": Key(boolean, _G),
    "coap_heartbeat": Key(integer(1, 86400), _G),
    "coap_publish_qos": Key(choice(COAP_QOS_CHOICES, "expected qos0, qos1, qos2 or coap, got {!r}"), _G),
    "coap_subscribe_qos": Key(choice(COAP_QOS_CHOICES, "expected qos0, qos1, qos2 or coap, got {!r}"), _G),
    "coap_notify_type": Key(choice(COAP_NOTIFY_TYPES, "expected non, con or qos, got {!r}"), _G),
    "oscore_file": Key(rest_of_line, _G, Parser.listener_or_global),
    # DTLS
    "dtls_max_sessions": Key(integer(1), _G),
    "dtls_max_handshakes": Key(integer(1), _G),
    "dtls_idle_timeout": Key(integer(1), _G),
    # MQTT-SN
    "mqttsn_gateway_id": Key(integer(0, 255), _G),
    "mqttsn_advertise_interval": Key(integer(0, 65535), _G),
    "mqttsn_predefined_topic": Key(mqttsn_predefined, _G, _add_mqttsn_predefined),
    "mqttsn_max_sleep_buffer": Key(integer(0), _G),
    "mqttsn_serial": Key(mqttsn_serial, _G, _add_mqttsn_serial),
    "mqttsn_default_username": Key(one_word, _G, Parser.store_once),
    "mqttsn_client": Key(mqttsn_client, _G, _add_mqttsn_client),
    "mqttsn_multicast": Key(mqttsn_multicast, _L),
    "user": Key(rest_of_line, _G, Parser.store_once),
    "pid_file": Key(rest_of_line, _G, Parser.store_once),
    # logging
    "log_type": Key(log_type, _G, Parser.add_log_type),
    "log_dest": Key(log_dest, _G, Parser.add_log_dest),
    # files
    "include_dir": Key(rest_of_line, _G, Parser.include),
    # authentication and ACL (gateway.hub.auth)
    "password_file": Key(rest_of_line, _S, Parser.store_once),
    "acl_file": Key(rest_of_line, _S, Parser.store_once),
    "scram_file": Key(rest_of_line, _S, Parser.store_once),
    "psk_file": Key(rest_of_line, _S, Parser.store_once),
    "plugin": Key(rest_of_line, _S, Parser.add_plugin),
    "plugin_opt_": Key(rest_of_line, _S, Parser.plugin_option),
    # TLS (gateway.tls)
    "cafile": Key(rest_of_line, _L, Parser.store_once),
    "capath": Key(rest_of_line, _L, Parser.store_once),
    "certfile": Key(rest_of_line, _L, Parser.store_once),
    "keyfile": Key(rest_of_line, _L, Parser.store_once),
    "crlfile": Key(rest_of_line, _L, Parser.store_once),
    "ciphers": Key(rest_of_line, _L, Parser.store_once),
    "tls_version": Key(choice(TLS_VERSIONS, "expected tlsv1.1, tlsv1.2 or tlsv1.3, got {!r}"), _L),
    "require_certificate": Key(boolean, _L),
    "use_identity_as_username": Key(boolean, _L),
    "use_subject_as_username": Key(boolean, _L),
    "psk_hint": Key(rest_of_line, _L, Parser.store_once),
    "max_connection_rate": Key(rate, _L),
    # MQTT per listener (MQTT 5 limits, mount point, accepted levels)
    "max_qos": Key(integer(0, 2), _L),
    "maximum_qos": Key(integer(0, 2), _L, Parser.store_as("max_qos")),
    "max_topic_alias": Key(integer(0, 65535), _L),
    "mount_point": Key(mount_point, _L),
    "accept_protocol_versions": Key(protocol_versions, _L),
    "listener_allow_anonymous": Key(boolean, _L),
    # HTTP API (gateway.web)
    "http_dir": Key(rest_of_line, _L, Parser.store_once),
    # bridges (gateway.config.bridges, gateway.bridge)
    **{key: Key(convert, Scope.BRIDGE, apply) for key, (convert, apply) in BRIDGE_KEYS.items()},
}
