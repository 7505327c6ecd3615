"""The gateway process with a ``scram_file`` written by ``mqttgateway-passwd -s``: SCRAM
logins and re-authentication over a socket (scramp computes the client's side, raw
bytes carry it), the password file next to it for MQTT 3.1.1 clients, reload, and a
plugin's reason codes and properties on the wire at levels 4 and 5."""

from __future__ import annotations

from pathlib import Path

from scramp import ScramClient

from tests import wire
from tests.e2e.clients import RawClient
from tests.mqtt.test_enhanced_auth import SCRAM, auth_props, data_of
from tests.security.helpers import Client
from tests.security.test_passwd_command import passwd

PLUGIN = '''
from gateway.hub.api import Allowed, Denied, Reason

def make_plugin(options):
    return Plugin()

class Plugin:
    def authenticate(self, client, password):
        if client.username == "banned":
            return Denied(Reason.BANNED, "go away", (("contact", "ops"),))
        if client.username == "vip":
            return Allowed(user_properties=(("tier", "gold"),))
        return None
'''


def packet_bytes(first: int, body: bytes) -> bytes:
    return bytes((first,)) + wire.remaining_length(len(body)) + body


def scram_connect(raw: RawClient, username: str, password: str, client_id: str) -> int:
    """CONNECT, AUTH, AUTH; the CONNACK code (the server's signature checked on success)."""
    scram = ScramClient([SCRAM], username, password)
    raw.send(wire.connect(client_id, proto_level=5, properties=auth_props(scram.get_client_first())))
    first, body = raw.read_packet()
    assert first == 0xF0 and body[0] == 0x18, (first, body)
    scram.set_server_first(data_of(packet_bytes(first, body)))
    raw.send(wire.auth(0x18, auth_props(scram.get_client_final())))
    first, body = raw.read_packet()
    assert first == 0x20, (first, body)
    if body[1] == 0:
        scram.set_server_final(data_of(packet_bytes(first, body)))
    return body[1]


def reauthenticate(raw: RawClient, username: str, password: str) -> tuple[int, int]:
    """AUTH 0x19, AUTH 0x18; the last packet's type and reason code."""
    scram = ScramClient([SCRAM], username, password)
    raw.send(wire.auth(0x19, auth_props(scram.get_client_first())))
    first, body = raw.read_packet()
    scram.set_server_first(data_of(packet_bytes(first, body)))
    raw.send(wire.auth(0x18, auth_props(scram.get_client_final())))
    first, body = raw.read_packet()
    if first == 0xF0 and body[0] == 0:
        scram.set_server_final(data_of(packet_bytes(first, body)))
    return first, body[0]


def make_files(directory: Path) -> tuple[Path, Path]:
    pw, scram = directory / "passwd", directory / "scram"
    for args in (["-c", "-b", str(pw), "alice", "secret"], ["-b", str(pw), "bob", "hunter2"]):
        done = passwd("-s", str(scram), *args)
        assert done.returncode == 0, done.stderr
    return pw, scram


def test_scram_and_password_logins_side_by_side(tmp_path, gateway):
    pw, scram = make_files(tmp_path)
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite alice/#\n")
    plugin = tmp_path / "answers.py"
    plugin.write_text(PLUGIN)
    gw = gateway(f"password_file {pw}", f"scram_file {scram}", f"acl_file {acl}", f"plugin {plugin}")

    with RawClient(gw.port) as raw:
        assert scram_connect(raw, "alice", "secret", "scram-alice") == 0
        # The ACL sees the username SCRAM established.
        raw.send(wire.subscribe(1, [("alice/#", 0), ("bob/#", 0)], proto_ver=5))
        raw.expect(wire.suback(1, [0, 0x80], proto_ver=5))   # 0x80: see codes.suback_v5
        raw.send(wire.publish("alice/x", b"hi", proto_ver=5))
        raw.expect(wire.publish("alice/x", b"hi", proto_ver=5))
        assert reauthenticate(raw, "alice", "secret") == (0xF0, 0x00)
        raw.send(wire.pingreq())
        raw.expect(wire.pingresp())

    password_client = Client(gw.port, "pw-bob", "bob", "hunter2")
    try:
        assert password_client.connect() == 0            # MQTT 3.1.1, the password file
    finally:
        password_client.close()

    with RawClient(gw.port) as raw:                      # a plugin's answers at level 5
        raw.send(wire.connect("vip", proto_level=5, username="vip", password="x"))
        raw.expect(wire.connack_v5(extra=wire.prop_pair(0x26, "tier", "gold")))
    with RawClient(gw.port) as raw:
        raw.send(wire.connect("banned5", proto_level=5, username="banned", password="x"))
        raw.expect(wire.connack(0x8A, proto_ver=5, properties=wire.prop_str(0x1F, "go away")
                                + wire.prop_pair(0x26, "contact", "ops")))
        raw.expect_closed()
    with RawClient(gw.port) as raw:                      # and at level 4
        raw.send(wire.connect("banned4", username="banned", password="x"))
        raw.expect(wire.connack(5))

    with RawClient(gw.port) as raw:
        assert scram_connect(raw, "alice", "wrong", "scram-wrong") == 0x87
        raw.expect_closed()
    gw.wait_for_log("SCRAM-SHA-256 authentication failed for scram-wrong")


def test_reload_disconnects_a_scram_user_deleted_from_the_file(tmp_path, gateway):
    pw, scram = make_files(tmp_path)
    gw = gateway(f"password_file {pw}", f"scram_file {scram}")
    with RawClient(gw.port) as alice, RawClient(gw.port) as bob:
        assert scram_connect(alice, "alice", "secret", "a") == 0
        assert scram_connect(bob, "bob", "hunter2", "b") == 0
        assert passwd("-s", str(scram), "-D", str(pw), "bob").returncode == 0
        gw.reload("configuration reloaded")
        bob.expect(wire.disconnect(0x87, proto_ver=5))
        bob.expect_closed()
        alice.send(wire.pingreq())
        alice.expect(wire.pingresp())
        with RawClient(gw.port) as again:
            assert scram_connect(again, "bob", "hunter2", "b2") == 0x87
