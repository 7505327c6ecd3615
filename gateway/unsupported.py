"""The Mosquitto keys the gateway refuses, each with why and what to do instead.

Every key of Mosquitto 2.0 (man mosquitto.conf, src/conf.c) is either in
``gateway.config.KEYS`` or here, so none is silently ignored; the parser reports
``file:line: key: not supported: REASON``. One line per key or group: remove a key
from here when adding it to ``KEYS``. README.rst lists them all (tests/test_config.py
keeps the list in step), so a reason is plain text, without markup.
"""

from __future__ import annotations

__all__ = ["NOT_SUPPORTED", "NOT_SUPPORTED_PREFIXES", "refusal"]

_C_PLUGIN = "C plugins cannot load into a Python process"
_ENGINE = "OpenSSL engines (hardware keys) are not available; use a PEM key file (keyfile)"
_TIMESTAMP = "each log line starts with an ISO 8601 timestamp; drop the line"
_PSK_BRIDGE = ("TLS-PSK is not implemented; give the bridge a certificate instead "
               "(bridge_cafile, bridge_certfile and bridge_keyfile)")
_LAZY = ("only for start_type lazy, which is not implemented; drop the line (messages for "
         "out topics queue while the remote is away)")

NOT_SUPPORTED: dict[str, str] = {
    # authentication and authorisation
    "auth_plugin": (f"Mosquitto's {_C_PLUGIN}; use plugin with a Python module "
                    "(see README: Plugins)"),
    "auth_plugin_deny_special_chars": f"it belongs to auth_plugin ({_C_PLUGIN}); drop the line",
    "use_username_as_clientid": ("clients keep the client id they send; drop the line, and tie "
                                 "ids to users with ACL patterns (%c, %u)"),
    "clientid_prefixes": ("deprecated in Mosquitto 2.0; drop the line (a plugin's authenticate "
                          "can refuse client ids)"),
    # TLS
    "dhparamfile": "DHE key exchange is not offered (ECDHE needs no parameters); drop the line",
    "ciphers_tls1.3": ("TLS 1.3 uses OpenSSL's default suites; drop the line (ciphers sets "
                       "those of TLS 1.2)"),
    "tls_engine": _ENGINE,
    "tls_engine_kpass_sha1": _ENGINE,
    "tls_keyform": "keys are read from PEM files only; drop the line",
    # listeners
    "bind_interface": "bind to the interface's address instead: listener PORT ADDRESS",
    # logging
    "log_facility": ("the syslog facility is not configurable; drop the line (under systemd, "
                     "the journal takes the log from stderr)"),
    "log_timestamp": _TIMESTAMP,
    "log_timestamp_format": _TIMESTAMP,
    "connection_messages": "connections are logged with -v or log_type debug; drop the line",
    # broker
    "memory_limit": ("bound memory with max_queued_messages, max_queued_bytes and "
                     "max_connections (or systemd's MemoryMax) and drop the line"),
    "queue_qos0_messages": ("QoS 0 messages are never queued for disconnected clients; drop "
                            "the line"),
    "allow_duplicate_messages": ("deprecated in Mosquitto 2.0; drop the line (a client with "
                                 "overlapping subscriptions gets each message once)"),
    "retry_interval": ("removed in Mosquitto 2.0; drop the line (unacknowledged messages are "
                       "resent when the client reconnects)"),
    # bridges
    "bridge_identity": _PSK_BRIDGE,
    "bridge_psk": _PSK_BRIDGE,
    "bridge_require_ocsp": ("OCSP stapling is not checked; drop the line (revoke by "
                            "replacing the remote's certificate or the bridge_cafile)"),
    "threshold": _LAZY,
    "idle_timeout": _LAZY,
}

# Key prefixes refused the same way (the key is PREFIX followed by a name).
NOT_SUPPORTED_PREFIXES: dict[str, str] = {
    "auth_opt_": (f"options of auth_plugin ({_C_PLUGIN}); give a Python plugin its options "
                  "with plugin_opt_NAME lines"),
}

def refusal(key: str) -> str:
    """What the parser says about a key that is not in ``KEYS``."""
    reason = NOT_SUPPORTED.get(key)
    if reason is None:
        reason = next((r for p, r in NOT_SUPPORTED_PREFIXES.items() if key.startswith(p)), None)
    return "unknown configuration key" if reason is None else f"not supported: {reason}"
