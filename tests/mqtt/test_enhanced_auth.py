"""MQTT 5 enhanced authentication on the channel: CONNECT with an Authentication
Method, the AUTH rounds, CONNACK; re-authentication while connected.

A real ``Hub``, the real security chain built from a config with a ``scram_file``
(``gateway.security.policy``), and scramp's SCRAM client (an implementation
independent of the gateway's) to compute what a client sends. Packets in and out
are raw bytes from ``tests.wire``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scramp import ScramClient

from gateway.config import Listener, parse
from gateway.errors import ConfigError
from twisted.internet.defer import Deferred

from gateway.hub.api import Allowed, AuthContinue, Message
from gateway.hub.auth import FREE_FAILURES
from gateway.mqtt.channel import MQTTSettings
from gateway.security.policy import build_policies, load_security
from gateway.security.scram import make_entry
from tests import wire
from tests.mqtt.helpers import Broker, Client

SCRAM = "SCRAM-SHA-256"
METHOD = wire.prop_str(0x15, SCRAM)


def auth_props(data: bytes | str | None = None, method: str = SCRAM) -> bytes:
    props = wire.prop_str(0x15, method)
    if data is not None:
        props += wire.prop_str(0x16, data.encode() if isinstance(data, str) else data)
    return props


def data_of(packet: bytes) -> str:
    """The Authentication Data that follows the method in an AUTH or CONNACK."""
    _, _, rest = packet.partition(wire.prop_str(0x15, SCRAM) + b"\x16")
    return rest[2:2 + int.from_bytes(rest[:2], "big")].decode()


def auth_data_of(packet: bytes, reason: int) -> str:
    """The data of an AUTH that carries the method and the data and nothing else,
    checked byte for byte."""
    data = data_of(packet)
    assert packet == wire.auth(reason, auth_props(data)), packet
    return data


def connack_code(packet: bytes) -> int:
    assert packet[:1] == b"\x20", packet
    return packet[3]


@pytest.fixture
def scram_file(tmp_path: Path) -> Path:
    path = tmp_path / "scram"
    path.write_text(f"alice:{make_entry('secret')}\nbob:{make_entry('hunter2')}\n")
    return path


class Rig:
    """A broker whose hub runs the security chain of ``conf`` on the broker's clock."""

    def __init__(self, conf: str, settings: MQTTSettings | None = None, listener: Listener | None = None):
        self.conf = conf
        self.broker = Broker(settings, listener=listener)
        self.security = load_security(parse(conf, "gw.conf"), self.broker.clock)
        self.security.install(self.broker.hub)

    def open(self) -> Client:
        return self.broker.open()

    def reload(self, conf: str | None = None) -> int:
        old = self.security.snapshot()
        self.security.replace(build_policies(parse(conf or self.conf, "gw.conf"), self.security.clock))
        self.security.install(self.broker.hub)
        return self.security.recheck(self.broker.hub, old)


@pytest.fixture
def rig(scram_file: Path) -> Rig:
    return Rig(f"listener 1883\nscram_file {scram_file}\n")


def begin(client: Client, scram: ScramClient, client_id: str = "c1", **connect_kw: object) -> str:
    """CONNECT with the client-first-message; returns the server-first-message."""
    client.send(wire.connect(client_id, proto_level=5,
                             properties=auth_props(scram.get_client_first()), **connect_kw))
    return auth_data_of(client.take(), 0x18)


def scram_login(rig: Rig, username: str = "alice", password: str = "secret", client_id: str = "c1") -> Client:
    client = rig.open()
    scram = ScramClient([SCRAM], username, password)
    scram.set_server_first(begin(client, scram, client_id))
    client.send(wire.auth(0x18, auth_props(scram.get_client_final())))
    out = client.take()
    server_final = data_of(out)
    assert out == wire.connack_v5(extra=auth_props(server_final)), out
    scram.set_server_final(server_final)                      # the server proved it knows the key
    assert not client.closed
    return client


# --- CONNECT --------------------------------------------------------------------------


def test_scram_login_establishes_the_username(rig):
    client = scram_login(rig)
    session = rig.broker.hub.session("c1")
    assert session.client.username == "alice" and session.client.auth_method == SCRAM
    client.send(wire.pingreq())
    assert client.take() == wire.pingresp()


def test_wrong_password_gets_connack_0x87_and_no_session(rig):
    client = rig.open()
    scram = ScramClient([SCRAM], "alice", "wrong")
    scram.set_server_first(begin(client, scram))
    client.send(wire.auth(0x18, auth_props(scram.get_client_final())))
    assert client.take() == wire.connack(0x87, proto_ver=5, properties=wire.prop_str(
        0x1F, "invalid proof for user 'alice'"))
    assert client.closed and rig.broker.hub.session("c1") is None


def test_unknown_user_is_answered_like_a_known_one_then_refused(rig):
    first = []
    for _ in range(2):
        client = rig.open()
        scram = ScramClient([SCRAM], "mallory", "x")
        server_first = begin(client, scram)
        first.append(server_first.split(",")[1:])            # salt and iteration count
        scram.set_server_first(server_first)
        client.send(wire.auth(0x18, auth_props(scram.get_client_final())))
        assert connack_code(client.take()) == 0x87 and client.closed
    assert first[0] == first[1] and first[0][1] == "i=4096"     # the same fake salt each time


def test_connect_username_must_match_the_scram_username(rig):
    client = rig.open()
    scram = ScramClient([SCRAM], "alice", "secret")
    client.send(wire.connect("c1", proto_level=5, username="bob",
                             properties=auth_props(scram.get_client_first())))
    assert client.take() == wire.connack(0x87, proto_ver=5, properties=wire.prop_str(
        0x1F, "username differs from the CONNECT's"))
    assert client.closed
    scram_client = rig.open()
    scram = ScramClient([SCRAM], "alice", "secret")
    assert begin(scram_client, scram, username="alice").startswith("r=")


def test_unknown_method_gets_connack_0x8c(rig):
    client = rig.open()
    client.send(wire.connect("c1", proto_level=5, properties=auth_props(b"x", "KERBEROS")))
    assert client.take() == wire.connack(0x8C, proto_ver=5, properties=wire.prop_str(
        0x1F, "unknown method 'KERBEROS'"))
    assert client.closed


def test_no_method_is_offered_without_a_scram_file():
    rig = Rig("listener 1883\nallow_anonymous true\n")
    assert rig.broker.hub.auth_methods == {}
    client = rig.open()
    client.send(wire.connect("c1", proto_level=5, properties=auth_props("n,,n=alice,r=abc")))
    assert client.take() == wire.connack(0x8C, proto_ver=5, properties=wire.prop_str(
        0x1F, "unknown method 'SCRAM-SHA-256'"))
    assert client.closed


def test_auth_with_another_method_mid_exchange_closes(rig):
    client = rig.open()
    begin(client, ScramClient([SCRAM], "alice", "secret"))
    client.send(wire.auth(0x18, auth_props(b"c=biws", "SCRAM-SHA-1")))
    assert client.take() == b"" and client.closed


@pytest.mark.parametrize("packet", [
    wire.publish("t", b"x", proto_ver=5),
    wire.subscribe(1, [("t", 0)], proto_ver=5),
    wire.auth(0x19, METHOD),
], ids=["publish", "subscribe", "auth-0x19"])
def test_only_auth_may_come_before_connack(rig, packet):
    client = rig.open()
    begin(client, ScramClient([SCRAM], "alice", "secret"))
    client.send(packet)
    assert client.take() == b"" and client.closed


def test_disconnect_during_the_exchange_closes_without_a_session(rig):
    client = rig.open()
    begin(client, ScramClient([SCRAM], "alice", "secret"))
    client.send(wire.disconnect(proto_ver=5))
    assert client.closed and rig.broker.hub.session("c1") is None


def test_authentication_data_without_a_method_closes(rig):
    client = rig.open()
    client.send(wire.connect("c1", proto_level=5, properties=wire.prop_str(0x16, b"x")))
    assert client.take() == b"" and client.closed


@pytest.mark.parametrize("connected", [False, True])
def test_a_level_4_client_cannot_send_auth(connected):
    anonymous = Rig("listener 1883\nallow_anonymous true\n")
    if connected:
        client = anonymous.broker.connect("c4")
    else:
        client = anonymous.open()
        client.send(wire.connect("c4"))
        client.take()
    client.send(wire.auth(0x19, METHOD))
    assert client.take() == b"" and client.closed


def test_failed_logins_are_throttled_like_password_failures(rig):
    for _ in range(FREE_FAILURES):
        client = rig.open()
        client.send(wire.connect("c1", proto_level=5, properties=auth_props("n,,n=alice")))
        assert connack_code(client.take()) == 0x87      # malformed: refused at once
    client = rig.open()
    scram = ScramClient([SCRAM], "alice", "secret")
    client.send(wire.connect("c1", proto_level=5, properties=auth_props(scram.get_client_first())))
    assert client.take() == b""                 # waits for its slot
    rig.broker.clock.advance(10)
    assert client.take()[:1] == b"\xf0"


# --- per listener ---------------------------------------------------------------------


def test_a_listener_without_a_scram_file_does_not_offer_scram(scram_file):
    conf = (f"per_listener_settings true\nlistener 1883\nallow_anonymous true\n"
            f"listener 1884\nscram_file {scram_file}\n")
    plain = Rig(conf, listener=Listener(1883))
    assert SCRAM in plain.broker.hub.auth_methods        # offered by the gateway...
    client = plain.open()
    client.send(wire.connect("c1", proto_level=5, properties=auth_props("n,,n=alice,r=abc")))
    assert client.take() == wire.connack(0x8C, proto_ver=5, properties=wire.prop_str(
        0x1F, "SCRAM-SHA-256 is not offered here"))    # ...but not on this listener
    scram_login(Rig(conf, listener=Listener(1884)))


# --- re-authentication ----------------------------------------------------------------


def reauthenticate(client: Client, username: str, password: str) -> bytes:
    """Run a re-authentication; what the broker wrote last."""
    scram = ScramClient([SCRAM], username, password)
    client.send(wire.auth(0x19, auth_props(scram.get_client_first())))
    out = client.take()
    if out[:1] != b"\xf0":
        return out
    scram.set_server_first(auth_data_of(out, 0x18))
    client.send(wire.auth(0x18, auth_props(scram.get_client_final())))
    out = client.take()
    if out[:1] == b"\xf0":
        scram.set_server_final(auth_data_of(out, 0x00))
    return out


def test_reauthentication_ends_with_auth_0x00_and_the_connection_goes_on(rig):
    client = scram_login(rig)
    out = reauthenticate(client, "alice", "secret")
    assert out == wire.auth(0x00, auth_props(data_of(out))) and data_of(out).startswith("v=")
    client.send(wire.subscribe(1, [("t", 0)], proto_ver=5))
    assert client.take() == wire.suback(1, [0], proto_ver=5)
    rig.broker.hub.publish(Message("t", b"still here"))
    assert client.take() == wire.publish("t", b"still here", proto_ver=5)


@pytest.mark.parametrize("username, password", [("alice", "wrong"), ("bob", "hunter2")],
                         ids=["wrong-password", "another-user"])
def test_failed_reauthentication_disconnects_with_0x87(rig, username, password):
    client = scram_login(rig)
    assert reauthenticate(client, username, password) == wire.disconnect(0x87, proto_ver=5)
    assert client.closed


def test_auth_0x19_without_a_method_at_connect_disconnects_with_0x82():
    anonymous = Rig("listener 1883\nallow_anonymous true\n")
    client = anonymous.open()
    client.send(wire.connect("c5", proto_level=5))
    client.take()
    client.send(wire.auth(0x19, METHOD))
    assert client.take() == wire.disconnect(0x82, proto_ver=5) and client.closed


@pytest.mark.parametrize("packet", [
    wire.auth(0x18, auth_props("c=biws")),                  # no re-authentication started
    wire.auth(0x19, auth_props("n,,n=alice,r=x", "PLAIN")),  # another method
], ids=["continue-first", "other-method"])
def test_unexpected_auth_after_connack_disconnects_with_0x82(rig, packet):
    client = scram_login(rig)
    client.send(packet)
    assert client.take() == wire.disconnect(0x82, proto_ver=5) and client.closed


# --- reload ---------------------------------------------------------------------------


def test_reload_disconnects_a_scram_client_whose_entry_changed(rig, scram_file):
    alice = scram_login(rig, client_id="a")
    bob = scram_login(rig, "bob", "hunter2", client_id="b")
    assert rig.reload() == 0                           # unchanged entries: both stay
    lines = scram_file.read_text().splitlines()
    scram_file.write_text(f"{lines[0]}\nbob:{make_entry('new')}\n")
    assert rig.reload() == 1
    assert bob.take() == wire.disconnect(0x87, proto_ver=5) and bob.closed
    assert not alice.closed
    assert rig.reload("listener 1883\nallow_anonymous true\n") == 1   # no scram_file at all
    assert alice.closed


# --- any method: rounds, answers that come later ------------------------------------


class Rounds:
    """A method of two challenges whose answers the test gives (Deferreds), and whose
    state is None throughout."""

    name = "ROUNDS"

    def __init__(self) -> None:
        self.pending: list[tuple[bytes | None, Deferred]] = []

    def start(self, client, data):
        return self._ask(data)

    def step(self, client, state, data):
        assert state is None
        return self._ask(data)

    def _ask(self, data):
        d: Deferred = Deferred()
        self.pending.append((data, d))
        return d

    def answer(self, result) -> bytes | None:
        data, d = self.pending.pop(0)
        d.callback(result)
        return data


def rounds_props(data: bytes | None = None) -> bytes:
    props = wire.prop_str(0x15, "ROUNDS")
    return props + wire.prop_str(0x16, data) if data is not None else props


@pytest.fixture
def rounds():
    broker = Broker()
    method = Rounds()
    broker.hub.auth_methods["ROUNDS"] = method
    return broker, method


def test_several_rounds_with_answers_that_come_later(rounds):
    broker, method = rounds
    client = broker.open()
    client.send(wire.connect("c1", proto_level=5, properties=rounds_props(b"hello")))
    assert client.take() == b""                                # nothing until the method answers
    assert method.answer(AuthContinue(b"one?")) == b"hello"
    assert client.take() == wire.auth(0x18, rounds_props(b"one?"))
    client.send(wire.auth(0x18, rounds_props(b"1")))
    assert method.answer(AuthContinue(None)) == b"1"
    assert client.take() == wire.auth(0x18, rounds_props())
    client.send(wire.auth(0x18, rounds_props(b"2")))
    assert method.answer(Allowed(auth_data=b"welcome", username="u")) == b"2"
    assert client.take() == wire.connack_v5(extra=rounds_props(b"welcome"))
    assert broker.hub.session("c1").client.username == "u"
    client.send(wire.auth(0x19, rounds_props(b"again")))
    assert method.answer(AuthContinue(None)) == b"again"
    assert client.take() == wire.auth(0x18, rounds_props())
    client.send(wire.auth(0x18, rounds_props(b"3")))
    method.answer(Allowed(username="u"))
    assert client.take() == wire.auth(0x00, rounds_props()) and not client.closed
    client.send(wire.auth(0x19, rounds_props(b"as someone else")))
    method.answer(Allowed(username="v"))
    assert client.take() == wire.disconnect(0x87, proto_ver=5) and client.closed


def test_auth_while_the_method_has_not_answered_closes(rounds):
    broker, method = rounds
    client = broker.open()
    client.send(wire.connect("c1", proto_level=5, properties=rounds_props(b"hello")))
    client.send(wire.auth(0x18, rounds_props(b"too early")))
    assert client.closed
    method.answer(AuthContinue(b"late"))
    assert client.take() == b""


@pytest.mark.parametrize("result, code", [(False, 0x87), (None, 0x87), (RuntimeError("down"), 0x88)],
                         ids=["false", "none", "failure"])
def test_a_method_refusing_or_failing(rounds, result, code):
    broker, method = rounds
    client = broker.open()
    client.send(wire.connect("c1", proto_level=5, properties=rounds_props(b"hello")))
    data, d = method.pending.pop()
    if isinstance(result, Exception):
        d.errback(result)
    else:
        d.callback(result)
    assert client.take() == wire.connack(code, proto_ver=5) and client.closed


def test_a_bad_scram_file_stops_loading_and_a_failed_reload_keeps_the_old_one(rig, scram_file, tmp_path):
    scram_file.write_text(f"alice:{make_entry('secret')}\nbob:SCRAM-SHA-256$4096\n")
    with pytest.raises(ConfigError) as e:
        rig.reload()
    assert str(e.value) == f"{scram_file}:2: expected SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY"
    scram_login(rig, "bob", "hunter2")                       # the old entries still hold
    with pytest.raises(ConfigError) as e:
        load_security(parse(f"listener 1883\n\nscram_file {tmp_path / 'missing'}\n", "gw.conf"))
    assert str(e.value).startswith("gw.conf:3: scram_file: cannot read SCRAM file")
