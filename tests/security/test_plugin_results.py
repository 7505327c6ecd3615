"""What a plugin's answer becomes on the wire: reason codes, Reason String and User
Properties in CONNACK at levels 4 and 5, and enhanced authentication methods offered
by a plugin. The real security chain from a config naming a plugin file, and the MQTT
channel on a ``StringTransport`` driven with raw bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import parse
from gateway.errors import ConfigError
from gateway.security.policy import load_security
from tests import wire
from tests.mqtt.helpers import Broker

PLUGIN = '''
from twisted.internet.defer import succeed
from gateway.hub.api import Allowed, AuthContinue, Denied, Reason

ANSWERS = {
    "banned": Denied(Reason.BANNED, "go away", (("contact", "admin@example.com"),)),
    "busy": Denied(Reason.SERVER_BUSY, "try later"),
    "bad": Denied(Reason.BAD_CREDENTIALS),
    "vip": Allowed(user_properties=(("tier", "gold"), ("tier", "platinum"))),
    "plain": True,
    "no": False,
}


class Token:
    """A toy enhanced method: one challenge, then the token."""

    name = "TOKEN"

    def start(self, client, data):
        return AuthContinue(b"token?", data)

    def step(self, client, state, data):
        if data == b"letmein":
            return Allowed(auth_data=b"ok", username=state.decode())
        return Denied(Reason.NOT_AUTHORIZED, "bad token")


class Plugin:
    def __init__(self, options):
        self.methods = options.get("methods", "").split()

    def authenticate(self, client, password):
        return succeed(ANSWERS.get(client.username))

    def auth_methods(self):
        return [Token()] if "TOKEN" in self.methods else []


def make_plugin(options):
    return Plugin(options)
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "answers.py"
    path.write_text(PLUGIN)
    return path


def broker_with(conf: str) -> Broker:
    broker = Broker()
    load_security(parse(conf, "gw.conf"), broker.clock).install(broker.hub)
    return broker


V5 = [
    ("banned", {}, wire.connack(0x8A, proto_ver=5, properties=wire.prop_str(0x1F, "go away")
                                + wire.prop_pair(0x26, "contact", "admin@example.com"))),
    ("banned", {"problem_info": False},
     wire.connack(0x8A, proto_ver=5, properties=wire.prop_pair(0x26, "contact", "admin@example.com"))),
    ("busy", {}, wire.connack(0x89, proto_ver=5, properties=wire.prop_str(0x1F, "try later"))),
    ("bad", {}, wire.connack(0x86, proto_ver=5)),
    ("no", {}, wire.connack(0x87, proto_ver=5)),
    ("vip", {}, wire.connack_v5(extra=wire.prop_pair(0x26, "tier", "gold") + wire.prop_pair(0x26, "tier", "platinum"))),
    ("plain", {}, wire.connack_v5()),
]


@pytest.mark.parametrize("username, options, expected", V5,
                         ids=["banned", "banned-no-problem-info", "busy", "bad", "false", "vip", "true"])
def test_plugin_answers_at_level_5(plugin, username, options, expected):
    broker = broker_with(f"listener 1883\nplugin {plugin}\n")
    client = broker.open()
    props = wire.prop_byte(0x17, 0) if options.get("problem_info") is False else b""
    client.send(wire.connect("c1", proto_level=5, username=username, password="pw", properties=props))
    assert client.take() == expected
    assert client.closed == (expected[3] != 0)


@pytest.mark.parametrize("username, code", [
    ("banned", 5), ("busy", 3), ("bad", 4), ("no", 5), ("vip", 0), ("plain", 0),
])
def test_plugin_answers_at_level_4(plugin, username, code):
    broker = broker_with(f"listener 1883\nplugin {plugin}\n")
    client = broker.open()
    client.send(wire.connect("c1", username=username, password="pw"))
    assert client.take() == wire.connack(code)


def test_reason_string_and_user_properties_are_left_out_beyond_the_maximum_packet_size(plugin):
    broker = broker_with(f"listener 1883\nplugin {plugin}\n")
    client = broker.open()
    client.send(wire.connect("c1", proto_level=5, username="banned", password="pw",
                             properties=wire.prop_u32(0x27, 20)))
    assert client.take() == wire.connack(0x8A, proto_ver=5)


def test_plugin_offers_an_enhanced_method(plugin):
    broker = broker_with(f"listener 1883\nplugin {plugin}\nplugin_opt_methods TOKEN\n")
    method = wire.prop_str(0x15, "TOKEN")
    client = broker.open()
    client.send(wire.connect("c1", proto_level=5, properties=method + wire.prop_str(0x16, b"carol")))
    assert client.take() == wire.auth(0x18, method + wire.prop_str(0x16, b"token?"))
    client.send(wire.auth(0x18, method + wire.prop_str(0x16, b"letmein")))
    assert client.take() == wire.connack_v5(extra=method + wire.prop_str(0x16, b"ok"))
    assert broker.hub.session("c1").client.username == "carol"
    other = broker.open()
    other.send(wire.connect("c2", proto_level=5, properties=method + wire.prop_str(0x16, b"carol")))
    other.take()
    other.send(wire.auth(0x18, method + wire.prop_str(0x16, b"guess")))
    assert other.take() == wire.connack(0x87, proto_ver=5, properties=wire.prop_str(0x1F, "bad token"))


def test_a_method_offered_twice_is_refused_at_the_plugin_line(plugin, tmp_path):
    conf = f"listener 1883\nplugin {plugin}\nplugin_opt_methods TOKEN\nplugin {plugin}\nplugin_opt_methods TOKEN\n"
    with pytest.raises(ConfigError) as e:
        load_security(parse(conf, "gw.conf"))
    assert str(e.value) == f"gw.conf:4: plugin: {plugin}: authentication method 'TOKEN' is already offered"


def test_a_plugin_method_without_the_interface_is_refused(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("class P:\n    def auth_methods(self):\n        return [object()]\n"
                    "def make_plugin(options):\n    return P()\n")
    with pytest.raises(ConfigError) as e:
        load_security(parse(f"listener 1883\nplugin {path}\n", "gw.conf"))
    assert str(e.value).startswith("gw.conf:2: plugin: ") and "name, start() and step()" in str(e.value)
