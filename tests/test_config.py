"""gateway.config: Mosquitto-syntax configuration files."""

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest

from gateway import config
from gateway.bridge.topics import TopicRule
from gateway.config import (
    KEYS, NOT_SUPPORTED, NOT_SUPPORTED_PREFIXES, Config, Listener, anonymous_allowed,
    default_config, load, parse, parse_duration,
)
from gateway.config.bridges import Bridge
from gateway.errors import ConfigError

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "config"
BAD_FILES = sorted((DATA / "bad").glob("*.conf"))


def error_of(text, path="<string>"):
    with pytest.raises(ConfigError) as exc:
        parse(text, path)
    return exc.value


# -- defaults ------------------------------------------------------------------------

def test_default_config_is_mosquitto_local_only_mode():
    cfg = default_config()
    assert cfg.listeners == [Listener(1883, "127.0.0.1")]
    assert cfg.listeners[0].source == ("<default>", 0)
    assert cfg.listeners[0].protocol == "mqtt"
    assert cfg.listeners[0].max_connections == -1
    assert cfg.path is None
    assert cfg.explicit_listeners is False
    assert anonymous_allowed(cfg, cfg.listeners[0]) is True


def test_default_values():
    cfg = default_config()
    assert (cfg.allow_anonymous, cfg.max_inflight_messages, cfg.max_inflight_bytes,
            cfg.max_queued_messages, cfg.max_queued_bytes, cfg.message_size_limit,
            cfg.max_packet_size, cfg.max_keepalive, cfg.retain_available,
            cfg.sys_interval, cfg.max_subscriptions) == (None, 20, 0, 1000, 0, 0, 0, 65535, True, 10,
                                                         10000)
    assert cfg.log_type == ["error", "warning", "notice", "information"]
    assert cfg.log_dest == ["stderr"]
    assert (cfg.user, cfg.allow_zero_length_clientid, cfg.auto_id_prefix,
            cfg.upgrade_outgoing_qos, cfg.persistent_client_expiration,
            cfg.set_tcp_nodelay, cfg.per_listener_settings) == (
        None, True, "auto-", False, None, False, False)


def test_default_lists_are_not_shared():
    a, b = default_config(), default_config()
    a.log_type.append("debug")
    a.log_dest.clear()
    assert b.log_type == ["error", "warning", "notice", "information"]
    assert b.log_dest == ["stderr"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "   # indented comment\n\t\n"])
def test_empty_file_gives_the_defaults(text):
    cfg = parse(text, "empty.conf")
    assert cfg == dataclasses.replace(default_config(), path="empty.conf")


# -- every key -----------------------------------------------------------------------

def test_every_key_parsed():
    path = str(DATA / "good" / "every-key.conf")
    cfg = load(path)
    assert cfg.path == path
    assert cfg.per_listener_settings is False
    assert cfg.allow_anonymous is True
    assert cfg.user == "mqtt"
    assert cfg.pid_file == "/run/mqttgateway/mqttgateway.pid"
    assert cfg.allow_zero_length_clientid is False
    assert cfg.auto_id_prefix == "gw-"
    assert cfg.max_inflight_messages == 10
    assert cfg.max_inflight_bytes == 65536
    assert cfg.max_queued_messages == 100
    assert cfg.max_queued_bytes == 1048576
    assert cfg.message_size_limit == 268435455
    assert cfg.max_packet_size == 1000
    assert cfg.max_subscriptions == 50
    assert cfg.max_keepalive == 120
    assert cfg.retain_available is False
    assert cfg.sys_interval == 0
    assert cfg.log_type == ["debug", "error"]
    assert cfg.log_dest == ["stdout", "file /var/log/mqttgateway/broker.log"]
    assert cfg.upgrade_outgoing_qos is True
    assert cfg.check_retain_source is True
    assert cfg.persistent_client_expiration == 365 * 86400
    assert cfg.set_tcp_nodelay is True
    assert (cfg.coap_max_requests_per_second, cfg.coap_max_requests_per_address,
            cfg.coap_deduplication_entries) == (50, 400, 1000)
    assert (cfg.coap_connection_required, cfg.coap_heartbeat) == (True, 60)
    assert (cfg.coap_publish_qos, cfg.coap_subscribe_qos, cfg.coap_notify_type) == (
        "qos1", "qos2", "con")
    assert cfg.explicit_listeners is True
    assert cfg.listeners == [
        Listener(1885, "0.0.0.0", source=(path, 32)),
        Listener(8883, "::1", "mqtt", 10, "ipv6", source=(path, 35),
                 cafile="/etc/mqttgateway/ca.pem", capath="/etc/ssl/certs",
                 certfile="/etc/mqttgateway/server.pem", keyfile="/etc/mqttgateway/server.key",
                 crlfile="/etc/mqttgateway/ca.crl", ciphers="ECDHE+AESGCM",
                 tls_version="tlsv1.3", require_certificate=True,
                 use_identity_as_username=True, max_keepalive=30,
                 max_connection_rate=(5, 10.0), max_qos=1, max_topic_alias=4,
                 mount_point="site-a/", accept_protocol_versions=frozenset({4, 5})),
        Listener(1886, None, "mqttsn", source=(path, 57), mqttsn_multicast=("225.1.1.1", 1883),
                 listener_allow_anonymous=False),
        Listener(9883, "127.0.0.1", "http_api", source=(path, 62),
                 http_dir="/usr/share/mqttgateway/www"),
        Listener(8080, "127.0.0.1", "websockets", source=(path, 94),
                 websockets_origin=["https://app.example", "http://localhost:3000"],
                 enable_proxy_protocol=2),
        Listener(5684, "127.0.0.1", "coap", source=(path, 112), psk_hint="gateway",
                 oscore_file="/etc/mqttgateway/oscore.json"),
    ]
    assert cfg.psk_file == "/etc/mqttgateway/psk" and cfg.oscore_file is None
    assert (cfg.dtls_max_sessions, cfg.dtls_max_handshakes, cfg.dtls_idle_timeout) == (500, 20, 600)
    assert (cfg.websockets_headers_size, cfg.websockets_log_level) == (8192, 255)
    assert (cfg.password_file, cfg.acl_file) == ("/etc/mqttgateway/passwd", "/etc/mqttgateway/acl")
    assert cfg.scram_file == "/etc/mqttgateway/scram"
    assert [(p.path, p.options) for p in cfg.plugins] == [
        ("plugins.sql_auth", {"database": "/var/lib/mqttgateway/auth.db"})]
    assert cfg.bridges == [
        Bridge("cloud", (path, 118),
               [("broker-1.example.com", 8883), ("2001:db8::1", 8883), ("broker-2.example.com", 1883)],
               [TopicRule("sensors/#", "out", 1, "", "site-a/"),
                TopicRule("cmd/#", "in", 2, "site-a/", "cloud/site-a/")],
               "site-a", "site-a", "secret", "bridge-cloud", "bridge", "local-secret",
               cleansession=True, local_cleansession=False, protocol_version=5,
               try_private=False, notifications=False, notifications_local_only=True,
               notification_topic="site-a/bridge/state", keepalive=30, restart_base=10,
               restart_cap=60, round_robin=True, start_type="once", attempt_unsubscribe=False,
               outgoing_retain=False, max_packet_size=65536, receive_maximum=10,
               session_expiry_interval=3600, bind_address="192.0.2.1",
               cafile="/etc/mqttgateway/cloud-ca.pem", capath="/etc/ssl/certs",
               certfile="/etc/mqttgateway/site-a.pem", keyfile="/etc/mqttgateway/site-a.key",
               insecure=True, tls_version="tlsv1.3", alpn="mqtt"),
        Bridge("other", (path, 154), [("192.0.2.7", 1883)], [TopicRule("#", "both", 0, "", "")],
               "site-a-other", "site-a", "other-secret", "local.site-a-other"),
    ]
    assert (cfg.persistence, cfg.persistence_location, cfg.persistence_file) == (
        True, "/var/lib/mqttgateway/", "state.db")
    assert (cfg.persistence_sync, cfg.autosave_interval, cfg.autosave_on_changes) == (
        "normal", 60, True)


def test_debian_default_config_loads(tmp_path):
    """Debian's stock mosquitto.conf, with its include_dir pointed at an empty folder."""
    text = (DATA / "good" / "debian-default.conf").read_text()
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    path = tmp_path / "mosquitto.conf"
    path.write_text(text.replace("include_dir /etc/mosquitto/conf.d", f"include_dir {conf_d}"))
    cfg = load(str(path))
    assert (cfg.persistence, cfg.persistence_location) == (True, "/var/lib/mosquitto/")
    assert cfg.persistence_file == "mqttgateway.db"
    assert cfg.pid_file == "/run/mosquitto/mosquitto.pid"
    assert cfg.log_dest == ["file /var/log/mosquitto/mosquitto.log"]


def test_persistence_defaults():
    cfg = parse("")
    assert (cfg.persistence, cfg.persistence_location, cfg.persistence_file) == (
        False, "", "mqttgateway.db")
    assert cfg.persistence_sync == "full"


def test_retained_persistence_is_persistence():
    assert parse("retained_persistence true").persistence is True


def test_every_supported_key_is_in_the_every_key_sample():
    text = (DATA / "good" / "every-key.conf").read_text()
    used = {line.split()[0] for line in text.splitlines() if line and not line.startswith("#")}
    used = {"plugin_opt_" if k.startswith("plugin_opt_") else k for k in used}
    assert used == set(KEYS) - {"include_dir"}      # include_dir: see the include tests


def test_supported_and_unsupported_keys_are_disjoint():
    assert not set(KEYS) & set(NOT_SUPPORTED)
    assert not any(key.startswith(tuple(NOT_SUPPORTED_PREFIXES)) for key in KEYS)


def test_mosquitto_sample_parses():
    path = str(DATA / "good" / "mosquitto-typical.conf")
    cfg = load(path)
    assert [(lst.port, lst.bind_address, lst.max_connections, lst.socket_domain)
            for lst in cfg.listeners] == [(1883, None, 500, None), (1884, "127.0.0.1", -1, "ipv4")]
    assert cfg.listeners[0].source == (path, 31)
    assert cfg.sys_interval == 30
    assert cfg.persistent_client_expiration == 14 * 86400
    assert cfg.auto_id_prefix == "lan-"
    assert cfg.log_dest == ["syslog", "file /var/log/mosquitto/mosquitto.log"]
    assert cfg.log_type == ["error", "warning", "notice", "information", "subscribe"]
    assert all(anonymous_allowed(cfg, lst) for lst in cfg.listeners)


@pytest.mark.parametrize("value, expected",
                         [("true", True), ("false", False), ("1", True), ("0", False)])
def test_booleans_as_mosquitto_reads_them(value, expected):
    assert parse(f"retain_available {value}").retain_available is expected


def test_blanks_tabs_and_crlf():
    cfg = parse("  max_keepalive\t 60  \r\n\t# comment\r\nuser   my user \r\n")
    assert cfg.max_keepalive == 60
    assert cfg.user == "my user"            # string values keep inner blanks, as mosquitto


def test_log_dest_file_path_keeps_spaces():
    cfg = parse("log_dest file /var/log/my gateway.log")
    assert cfg.log_dest == ["file /var/log/my gateway.log"]


@pytest.mark.parametrize("lines, expected", [
    (["log_type debug", "log_type debug"], ["debug"]),
    (["log_type all"], list(config.ALL_LOG_TYPES)),
    (["log_type all", "log_type none"], []),
    (["log_type none", "log_type error"], ["error"]),
])
def test_log_type_accumulates(lines, expected):
    assert parse("\n".join(lines)).log_type == expected


@pytest.mark.parametrize("lines, expected", [
    (["log_dest none"], []),
    (["log_dest syslog", "log_dest topic", "log_dest syslog"], ["syslog", "topic"]),
    (["log_dest dlt", "log_dest none", "log_dest stderr"], ["stderr"]),
])
def test_log_dest_accumulates(lines, expected):
    assert parse("\n".join(lines)).log_dest == expected


@pytest.mark.parametrize("text, seconds", [
    ("1h", 3600), ("2d", 172800), ("1w", 604800), ("3m", 3 * 30 * 86400), ("1y", 365 * 86400),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "10", "10s", "-1d", "1.5d", "2D", " 2d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError, match="expected a duration"):
        parse_duration(text)


# -- listeners -----------------------------------------------------------------------

def test_listener_sections():
    cfg = parse("listener 1883\nmax_connections 5\n"
                "listener 1884 10.0.0.1\nsocket_domain ipv4\nprotocol mqtt\n", "a.conf")
    assert cfg.listeners == [
        Listener(1883, None, max_connections=5, source=("a.conf", 1)),
        Listener(1884, "10.0.0.1", socket_domain="ipv4", source=("a.conf", 3)),
    ]
    assert cfg.explicit_listeners is True


def test_same_port_on_two_addresses():
    cfg = parse("listener 1883 127.0.0.1\nlistener 1883 ::1\n")
    assert [(lst.port, lst.bind_address) for lst in cfg.listeners] == [
        (1883, "127.0.0.1"), (1883, "::1")]


def test_listener_comment_after_port():
    assert parse("listener 1883 # public").listeners[0].bind_address is None


def test_port_makes_a_default_listener_on_all_interfaces():
    cfg = parse("port 1884\n", "p.conf")
    assert cfg.listeners == [Listener(1884, None, source=("p.conf", 1))]
    assert cfg.explicit_listeners is True


def test_bind_address_alone_keeps_port_1883():
    cfg = parse("bind_address 10.1.2.3")
    assert cfg.listeners == [Listener(1883, "10.1.2.3", source=("<string>", 1))]


def test_last_port_wins():
    cfg = parse("port 1884\nport 1885\n")
    assert [lst.port for lst in cfg.listeners] == [1885]
    assert cfg.listeners[0].source == ("<string>", 1)


def test_listener_keys_before_port_go_to_the_default_listener():
    cfg = parse("max_connections 7\nport 1884\n")
    assert cfg.listeners[0].max_connections == 7


def test_listener_keys_go_to_the_last_listener_section():
    # As in mosquitto, "port" does not open a section: the key applies to 1883.
    cfg = parse("listener 1883\nport 1884\nmax_connections 7\n")
    by_port = {lst.port: lst for lst in cfg.listeners}
    assert by_port[1883].max_connections == 7
    assert by_port[1884].max_connections == -1


def test_default_listener_and_listeners_together():
    cfg = parse("port 1884\nlistener 1885\n")
    assert [lst.port for lst in cfg.listeners] == [1884, 1885]


# -- anonymous_allowed ---------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("", True),                                      # local-only mode
    ("max_keepalive 60", True),                      # still no listener
    ("allow_anonymous false", False),                # explicit wins, even local-only
    ("listener 1883", False),                        # mosquitto 2.0: listener -> refuse
    ("port 1883", False),
    ("bind_address 127.0.0.1", False),
    ("listener 1883\nallow_anonymous true", True),
    ("allow_anonymous true\nlistener 1883", True),   # global: position does not matter
])
def test_anonymous_allowed(text, expected):
    cfg = parse(text)
    assert all(anonymous_allowed(cfg, lst) is expected for lst in cfg.listeners)


def test_anonymous_allowed_per_listener():
    cfg = parse("per_listener_settings true\n"
                "listener 1883\nallow_anonymous true\n"
                "listener 1884\n"
                "listener 1885\nallow_anonymous false\n")
    assert [lst.allow_anonymous for lst in cfg.listeners] == [True, None, False]
    assert [anonymous_allowed(cfg, lst) for lst in cfg.listeners] == [True, False, False]
    assert cfg.allow_anonymous is None


def test_anonymous_allowed_per_listener_ignores_global_value():
    cfg = Config(listeners=[Listener(1883)], allow_anonymous=True,
                 per_listener_settings=True, explicit_listeners=True)
    assert anonymous_allowed(cfg, cfg.listeners[0]) is False


def test_anonymous_allowed_per_listener_local_only():
    cfg = parse("per_listener_settings true\n")
    assert anonymous_allowed(cfg, cfg.listeners[0]) is True


def test_client_id_keys_per_listener():
    """As Mosquitto: with per_listener_settings, each listener has its own."""
    from gateway.service import mqtt_settings

    cfg = parse("per_listener_settings true\n"
                "listener 1883\nallow_zero_length_clientid false\n"
                "listener 1884\nauto_id_prefix gw-\n")
    first, second = (mqtt_settings(cfg, False, lst) for lst in cfg.listeners)
    assert (first.allow_zero_length_clientid, first.auto_id_prefix) == (False, "auto-")
    assert (second.allow_zero_length_clientid, second.auto_id_prefix) == (True, "gw-")


def test_per_listener_allow_anonymous_on_default_listener():
    cfg = parse("per_listener_settings true\nport 1883\nallow_anonymous true\n")
    assert cfg.listeners[0].allow_anonymous is True


# -- include_dir ---------------------------------------------------------------------

def test_include_dir_order_is_mosquittos(tmp_path):
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    names = ["b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf", "_x.conf"]
    for port, name in enumerate(names, 2000):
        (conf_d / name).write_text(f"# {name}\nlistener {port}\n")
    (conf_d / "skipped.txt").write_text("listener 3000\n")
    (conf_d / ".conf").write_text("listener 3001\n")      # mosquitto needs a name before .conf
    main = tmp_path / "main.conf"
    main.write_text(f"listener 1883\ninclude_dir {conf_d}\nlistener 1884\n")
    cfg = load(str(main))
    # Man page: 00, 01, A, a, B, b (case-insensitive first, upper case first on a tie).
    order = ["00.conf", "01.conf", "A.conf", "a.conf", "B.conf", "b.conf", "_x.conf"]
    assert [lst.source for lst in cfg.listeners] == (
        [(str(main), 1)] + [(f"{conf_d}/{name}", 2) for name in order] + [(str(main), 3)])


def test_include_dir_repeated_in_order(tmp_path):
    files = {"one.d/B.conf": "debug", "one.d/C.conf": "error",
             "two.d/A.conf": "warning", "two.d/D.conf": "notice"}
    for name, log_type in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"log_type {log_type}\n")
    cfg = parse(f"include_dir {tmp_path / 'one.d'}\ninclude_dir {tmp_path / 'two.d'}\n")
    assert cfg.log_type == ["debug", "error", "warning", "notice"]


def test_include_dir_relative_to_working_directory(tmp_path, monkeypatch):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "x.conf").write_text("max_keepalive 30\n")
    monkeypatch.chdir(tmp_path)
    assert parse("include_dir conf.d").max_keepalive == 30


def test_include_dir_error_names_the_included_file(tmp_path):
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-ok.conf").write_text("listener 1883\n")
    (conf_d / "20-bad.conf").write_text("# limits\n\nmax_keepalive ten\n")
    main = tmp_path / "main.conf"
    main.write_text(f"# main\nallow_anonymous true\ninclude_dir {conf_d}\n")
    with pytest.raises(ConfigError) as exc:
        load(str(main))
    err = exc.value
    assert (err.path, err.line, err.key) == (f"{conf_d}/20-bad.conf", 3, "max_keepalive")
    assert str(err) == f"{conf_d}/20-bad.conf:3: max_keepalive: expected an integer, got 'ten'"


def test_include_dir_error_spanning_files(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("listener 1883\n")
    main = tmp_path / "main.conf"
    main.write_text(f"listener 1883\ninclude_dir {tmp_path / 'conf.d'}\n")
    err = error_of(main.read_text(), str(main))
    assert str(err) == (f"{tmp_path}/conf.d/a.conf:1: listener: "
                        f"duplicate listener on port 1883 (first defined at {main}:1)")


def test_include_dir_only_in_main_file(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text(f"include_dir {tmp_path}\n")
    err = error_of(f"include_dir {tmp_path / 'conf.d'}")
    assert str(err) == (f"{tmp_path}/conf.d/a.conf:1: include_dir: "
                        "only allowed in the main configuration file")


def test_include_dir_must_not_hold_main_file(tmp_path):
    main = tmp_path / "main.conf"
    main.write_text(f"include_dir {tmp_path}\n")
    with pytest.raises(ConfigError) as exc:
        load(str(main))
    assert str(exc.value) == (f"{main}:1: include_dir: "
                              "the directory holds the main configuration file")


def test_include_dir_bad_utf8(tmp_path):
    (tmp_path / "x.conf").write_bytes(b"# ok\nuser caf\xe9\n")
    err = error_of(f"include_dir {tmp_path}")
    assert (err.path, err.line, err.reason) == (f"{tmp_path}/x.conf", 2, "not valid UTF-8")


# -- errors --------------------------------------------------------------------------

def expectation(path):
    header = path.read_text().splitlines()[0]
    line, key, reason = re.fullmatch(r"# expect: (\d+): (\S+): (.*)", header).groups()
    return int(line), key, reason


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_file(path):
    line, key, reason = expectation(path)
    with pytest.raises(ConfigError) as exc:
        load(str(path))
    err = exc.value
    assert (err.path, err.line, err.key) == (str(path), line, key)
    assert str(err).startswith(f"{path}:{line}: {key}: {reason}")


@pytest.mark.parametrize("key", sorted(NOT_SUPPORTED))
def test_every_refused_mosquitto_key_says_why(key):
    err = error_of(f"listener 1883\n{key} x\n", "m.conf")
    assert str(err) == f"m.conf:2: {key}: not supported: {NOT_SUPPORTED[key]}"


def test_refused_prefix_says_why():
    err = error_of("auth_opt_db_host localhost\n", "m.conf")
    reason = NOT_SUPPORTED_PREFIXES["auth_opt_"]
    assert str(err) == f"m.conf:1: auth_opt_db_host: not supported: {reason}"


def test_every_refusal_says_what_to_do():
    """Each reason says what to do now: drop the line, or what to use instead."""
    reasons = set(NOT_SUPPORTED.values()) | set(NOT_SUPPORTED_PREFIXES.values())
    mute = [r for r in reasons if not re.search(r"\b(drop|use|give|bind|bound)\b", r)]
    assert mute == []


@pytest.mark.parametrize("text, where", [
    ("max_inflight_messages ten", "1: max_inflight_messages: expected an integer, got 'ten'"),
    ("max_inflight_messages 1e3", "1: max_inflight_messages: expected an integer, got '1e3'"),
    ("max_inflight_messages 65536", "1: max_inflight_messages: 65536 is out of range (0..65535)"),
    ("max_inflight_bytes -1", "1: max_inflight_bytes: -1 is out of range (at least 0)"),
    ("max_queued_bytes", "1: max_queued_bytes: missing value"),
    ("retain_available TRUE", "1: retain_available: expected true or false, got 'TRUE'"),
    ("set_tcp_nodelay true false", "1: set_tcp_nodelay: too many values"),
    ("user", "1: user: missing value"),
    ("include_dir", "1: include_dir: missing value"),
    ("log_dest", "1: log_dest: missing value"),
    ("log_type error warning", "1: log_type: too many values"),
    ("Listener 1883", "1: Listener: unknown configuration key"),
    ("retain_expiry_interval 10", "1: retain_expiry_interval: unknown configuration key"),
    ("\n\n# c\r\nfoo", "4: foo: unknown configuration key"),
    ("listener 1883\nprotocol", "2: protocol: missing value"),
    ("listener 1883\nprotocol coap2", "2: protocol: unsupported protocol 'coap2'"),
    ("coap_notify_type maybe", "1: coap_notify_type: expected non, con or qos, got 'maybe'"),
    ("coap_publish_qos 1", "1: coap_publish_qos: expected qos0, qos1, qos2 or coap, got '1'"),
    ("listener 1883\nmax_connections lots", "2: max_connections: expected an integer, got 'lots'"),
    ("socket_domain ipv4", "1: socket_domain: needs a listener"),
    ("per_listener_settings true\nallow_anonymous true", "2: allow_anonymous: needs a listener"),
    ("auto_id_prefix a-\nauto_id_prefix b-",
     "2: auto_id_prefix: duplicate value (first set at x.conf:1)"),
    ("port 1883\nport 1884\nlistener 1884", "3: listener: duplicate listener on port 1884"),
    ("listener 1884\nport 1883\nport 1884", "3: port: duplicate listener on port 1884"),
])
def test_error_messages(text, where):
    err = error_of(text, "x.conf")
    assert str(err).startswith(f"x.conf:{where}")
    line, key = where.split(": ")[:2]
    assert (err.path, err.line, err.key) == ("x.conf", int(line), key)


def test_load_missing_file(tmp_path):
    path = str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert str(exc.value) == f"{path}:0: cannot read configuration file: No such file or directory"


def test_bad_utf8_line_number(tmp_path):
    path = tmp_path / "x.conf"
    path.write_bytes(b"listener 1883\n\nuser \xff\n")
    with pytest.raises(ConfigError) as exc:
        load(str(path))
    assert str(exc.value) == f"{path}:3: not valid UTF-8"


def test_error_is_a_gateway_error():
    from gateway.errors import GatewayError
    assert isinstance(error_of("nope 1"), GatewayError)


# -- shipped files -------------------------------------------------------------------

def test_example_config_shows_every_supported_key():
    text = (ROOT / "etc" / "mqttgateway.conf").read_text()
    shown = set(re.findall(r"^#([a-z_]+)(?: |$)", text, re.MULTILINE))
    shown = {"plugin_opt_" if k.startswith("plugin_opt_") else k for k in shown}
    assert set(KEYS) <= shown


def test_example_config_is_all_defaults():
    path = str(ROOT / "etc" / "mqttgateway.conf")
    assert load(path) == dataclasses.replace(default_config(), path=path)


def test_example_config_defaults_are_the_real_defaults():
    # Uncomment each "#key value" line that shows a default and check it changes nothing.
    text = (ROOT / "etc" / "mqttgateway.conf").read_text()
    defaults = default_config()
    for key, value in re.findall(r"^#([a-z_]+) (\S.*)$", text, re.MULTILINE):
        if key in KEYS and KEYS[key].scope is config.Scope.GLOBAL and key not in (
                "include_dir", "log_type", "log_dest", "user", "per_listener_settings"):
            assert getattr(parse(f"{key} {value}"), key) == getattr(defaults, key), key


def test_service_unit():
    unit = (ROOT / "etc" / "mqttgateway.service").read_text()
    exec_start = "/opt/mqttgateway/bin/mqttgateway -c /etc/mqttgateway/mqttgateway.conf"
    assert f"ExecStart={exec_start}\n" in unit
    assert "Restart=on-failure\n" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in unit
    assert "Type=notify\n" in unit and "WatchdogSec=" in unit   # see gateway/sdnotify.py


# -- README --------------------------------------------------------------------------

REFUSED_START = (".. refused keys: generated from gateway/unsupported.py, checked by "
                 "tests/test_config.py\n")
REFUSED_END = "\n.. end of refused keys\n"


def refused_keys_rst() -> str:
    """The README's list of refused keys: one item per reason, keys in table order."""
    by_reason: dict[str, list[str]] = {}
    for key, reason in NOT_SUPPORTED.items():
        by_reason.setdefault(reason, []).append(f"``{key}``")
    for prefix, reason in NOT_SUPPORTED_PREFIXES.items():
        by_reason.setdefault(reason, []).append(f"``{prefix}*``")
    items = [textwrap.fill(f"- {', '.join(keys)}: {reason}", width=88, subsequent_indent="  ",
                           break_long_words=False, break_on_hyphens=False)
             for reason, keys in by_reason.items()]
    return "\n".join(items) + "\n"


def test_readme_lists_every_refused_key_with_its_reason():
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    start = readme.index(REFUSED_START) + len(REFUSED_START)
    shown = readme[start:readme.index(REFUSED_END, start)]
    expected = "\n" + refused_keys_rst()
    assert shown == expected, f"replace the list in README.rst with:\n{expected}"


def test_refusals_are_plain_text():
    """The README shows them as they are: no reStructuredText markup."""
    reasons = set(NOT_SUPPORTED.values()) | set(NOT_SUPPORTED_PREFIXES.values())
    assert [r for r in reasons if re.search(r"[`*|]|\w_\b", r)] == []


@pytest.mark.parametrize("line", [
    "port " + "9" * 5000,
    "max_queued_bytes " + "9" * 5000,
    "persistent_client_expiration " + "9" * 5000 + "d",
    "listener 1883\nmax_connection_rate " + "1" * 5000,
    "listener 1883\nmqttsn_multicast 224.0.1.1 " + "1" * 5000,
])
def test_integers_too_long_for_int_are_config_errors(line):
    # int() refuses more than 4300 digits with a ValueError of its own.
    assert "out of range" in str(error_of(line)) or "too long" in str(error_of(line))


def test_integer_with_leading_zeros_is_its_value():
    assert parse("max_queued_bytes " + "0" * 30 + "42").max_queued_bytes == 42


@pytest.mark.parametrize("rate", ["5/nan", "5/inf", "5/1e400s", "5/-inf"])
def test_connection_rate_period_must_be_finite(rate):
    err = error_of(f"listener 1883\nmax_connection_rate {rate}")
    assert err.line == 2 and "COUNT/SECONDS" in err.reason


@pytest.mark.parametrize("line", ["include_dir \x001/1e400", "password_file /etc/x\x00y", "log_dest file a\x00"])
def test_nul_character_is_a_config_error(line):
    # include_dir's os.listdir raised ValueError; the file keys would at startup.
    err = error_of("# first\n" + line)
    assert err.line == 2 and "NUL" in err.reason
