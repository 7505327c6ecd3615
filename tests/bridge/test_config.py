"""The ``connection`` sections of the configuration file: defaults and refusals."""

from __future__ import annotations

import pytest

from gateway.bridge.topics import make_rule
from gateway.config import parse
from gateway.config.bridges import Bridge, finish_bridges
from gateway.errors import ConfigError


def bridges(text: str):
    return parse("listener 1883\n" + text, "b.conf").bridges


def test_defaults_as_mosquitto():
    (b,) = bridges("connection cloud\naddress broker.example\ntopic #\n")
    assert b.addresses == [("broker.example", 1883)]
    assert b.remote_clientid.endswith(".cloud") and b.local_clientid == f"local.{b.remote_clientid}"
    assert (b.cleansession, b.local_cleansession, b.protocol_version, b.try_private) == (False, None, 4, True)
    assert (b.notifications, b.keepalive, b.restart_base, b.restart_cap) == (True, 60, 5, 30)
    assert b.state_topic == f"$SYS/broker/connection/{b.remote_clientid}/state"
    assert (b.round_robin, b.start_type, b.attempt_unsubscribe, b.outgoing_retain) == (
        False, "automatic", True, True)


def test_default_client_ids_from_the_host_name():
    bridge = Bridge("x", addresses=[("h", 1883)], topics=[make_rule("#", "out", 0)])
    finish_bridges([bridge], "gw1")
    assert (bridge.remote_clientid, bridge.local_clientid) == ("gw1.x", "local.gw1.x")


def test_sections_and_listeners_interleave():
    cfg = parse("listener 1883\nconnection a\naddress h1\nlistener 1884\nmax_qos 1\n"
                "topic a/# in\nconnection b\naddress h2\ntopic b/#\n")
    assert [(b.name, [t.pattern for t in b.topics]) for b in cfg.bridges] == [("a", ["a/#"]), ("b", ["b/#"])]
    assert cfg.listeners[1].max_qos == 1


@pytest.mark.parametrize("text, where", [
    ("address h", "2: address: needs a bridge: put it after a connection line"),
    ("connection a\naddress h\ntopic #\nconnection a", "5: connection: duplicate bridge name 'a'"),
    ("connection a\ntopic #", "2: connection: bridge 'a': no address line"),
    ("connection a\naddress h", "2: connection: bridge 'a': no topic line"),
    ("connection a\naddress h\naddress h2", "4: address: duplicate value"),
    ("connection a\naddress h:0", "3: address: 0 is out of range (1..65535)"),
    ("connection a\naddress :1883", "3: address: missing host in ':1883'"),
    ("connection a\ntopic # sideways", "3: topic: direction must be in, out or both"),
    ("connection a\nkeepalive_interval 4", "3: keepalive_interval: 4 is out of range (5..65535)"),
    # Integers are read as everywhere else in the file: ASCII digits, at most 18 of them
    # (int() alone would raise ValueError, or take other scripts' digits).
    ("connection a\nkeepalive_interval --5", "3: keepalive_interval: expected an integer, got '--5'"),
    ("connection a\nkeepalive_interval \u00b2",
     "3: keepalive_interval: expected an integer, got '\u00b2'"),
    ("connection a\nkeepalive_interval \u0663\u0660", "3: keepalive_interval: expected an integer"),
    ("connection a\naddress h:" + "9" * 5000,
     "3: address: " + "9" * 18 + "... is out of range (1..65535)"),
    ("connection a\nrestart_timeout 5 -" + "1" * 5000,
     "3: restart_timeout: -" + "1" * 17 + "... is out of range (1..86400)"),
    ("connection a\nrestart_timeout 10 5", "3: restart_timeout: the cap (5) is lower than the base (10)"),
    ("connection a\nrestart_timeout 0", "3: restart_timeout: 0 is out of range"),
    ("connection a\nbridge_protocol_version 5", "3: bridge_protocol_version: expected mqttv31, mqttv311 or mqttv50"),
    ("connection a\nstart_type manual", "3: start_type: expected automatic or once, got 'manual'"),
    ("connection a\nbridge_receive_maximum 0", "3: bridge_receive_maximum: 0 is out of range (1..65535)"),
    ("connection a\naddress h\ntopic #\nremote_password p",
     "5: remote_password: bridge 'a': needs remote_username"),
    ("connection a\naddress h\ntopic #\nbridge_insecure true",
     "5: bridge_insecure: bridge 'a': needs bridge_cafile or bridge_capath (TLS)"),
    ("connection a\naddress h\ntopic #\nbridge_cafile ca.pem\nbridge_certfile c.pem",
     "6: bridge_certfile: bridge 'a': bridge_certfile and bridge_keyfile go together"),
    ("connection a\naddress h\ntopic #\nlocal_clientid x\nconnection b\naddress h\ntopic #\n"
     "local_clientid x", "6: connection: bridge 'b': local_clientid 'x' is also bridge 'a''s"),
    ("connection a\nthreshold 10", "3: threshold: not supported: only for start_type lazy"),
    ("connection a\nbridge_psk 00ff", "3: bridge_psk: not supported: TLS-PSK is not implemented"),
])
def test_refusals(text, where):
    with pytest.raises(ConfigError) as e:
        parse("listener 1883\n" + text + "\n", "b.conf")
    assert str(e.value).startswith(f"b.conf:{where}")
