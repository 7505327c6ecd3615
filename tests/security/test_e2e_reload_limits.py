"""SIGHUP rereading password/ACL files under live connections, Mosquitto 2.0's
anonymous defaults, and the per-listener limits, against a real gateway."""

from __future__ import annotations

from gateway.security.passwords import make_hash
from tests.conftest import free_port
from tests.security.helpers import Client, run_gateway_expecting_failure


def test_sighup_rereads_files_keeps_connections_and_rechecks_rights(tmp_path, gateway):
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    alice_hash = make_hash(b"secret")
    passwd.write_text(f"alice:{alice_hash}\nbob:{make_hash(b'hunter2')}\n")
    acl.write_text("user alice\ntopic readwrite a/#\nuser bob\ntopic readwrite a/#\n")
    gw = gateway(f"listener {free_port()} 127.0.0.1", f"password_file {passwd}", f"acl_file {acl}",
                 listener=False)
    alice = Client(gw.port, "alice", "alice", "secret")
    bob = Client(gw.port, "bob", "bob", "hunter2")
    assert alice.connect() == 0 and bob.connect() == 0
    assert alice.subscribe("a/#") == [1]
    bob.publish("a/1", b"before")
    assert alice.next_message() == ("a/1", b"before")

    # bob is removed; alice may now read only a/public; carol is new.
    passwd.write_text(f"alice:{alice_hash}\ncarol:{make_hash(b'pw')}\n")
    acl.write_text("user alice\ntopic read a/public\ntopic write a/#\n"
                   "user carol\ntopic readwrite a/#\n")
    gw.reload("configuration reloaded")
    assert bob.wait("disconnect")                       # no longer in the password file
    assert alice.is_connected()                         # unchanged entry: kept
    carol = Client(gw.port, "carol", "carol", "pw")
    assert carol.connect() == 0
    carol.publish("a/private", b"hidden")
    carol.publish("a/public", b"shown")
    assert alice.next_message() == ("a/public", b"shown")
    assert alice.received() == []

    # A malformed ACL fails the reload with file:line; the rules in force stay.
    acl.write_text("user alice\ntopic read a/public\ntopic raed a/#\n")
    gw.reload("reload failed")
    gw.wait_for_log(f"{acl}:3: invalid access type 'raed'")
    carol.publish("a/private", b"still hidden")
    carol.publish("a/public", b"still shown")
    assert alice.next_message() == ("a/public", b"still shown")
    assert alice.is_connected() and carol.is_connected()
    for c in (alice, carol):
        c.close()


def test_bad_password_file_stops_startup_with_file_and_line(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text(f"alice:{make_hash(b'x')}\nbob:hunter2\n")
    code, output = run_gateway_expecting_failure(
        tmp_path, f"listener {free_port()} 127.0.0.1\npassword_file {passwd}\n")
    assert code == 1
    assert f"{passwd}:2: password is not hashed" in output


def test_plugin_that_fails_to_load_stops_startup(tmp_path):
    code, output = run_gateway_expecting_failure(
        tmp_path, f"listener {free_port()} 127.0.0.1\nplugin plugins.http_auth\n")
    assert code == 1 and "bad.conf:2: plugin: " in output and "plugin_opt_url" in output


def test_anonymous_refused_once_the_file_defines_a_listener(gateway):
    gw = gateway(f"listener {free_port()} 127.0.0.1", listener=False)
    c = Client(gw.port, "anon", bind="127.0.0.2")
    assert c.connect() == 135
    c.close()
    # Mosquitto 2.0: with no password file or plugin, usernames are refused too.
    named = Client(gw.port, "named", "alice", "x", bind="127.0.0.2")
    assert named.connect() == 135
    named.close()


def test_per_listener_limits(gateway):
    gw = gateway(
        "allow_anonymous true",
        f"listener {free_port()} 127.0.0.1",
        "max_connections 1",
        f"listener {free_port()} 127.0.0.1",
        "max_connection_rate 1/3600",
        f"listener {free_port()} 127.0.0.1",
        "max_keepalive 10",
        listener=False,
    )
    small, rated, strict = gw.ports
    first = Client(small, "s1")
    assert first.connect() == 0
    second = Client(small, "s2")
    assert second.connect() == "closed"                 # max_connections 1
    second.close()
    ok = Client(rated, "r1")
    assert ok.connect() == 0
    over = Client(rated, "r2")
    assert over.connect() == "closed"                   # above 1 per hour from 127.0.0.1
    over.close()
    elsewhere = Client(rated, "r3", bind="127.0.0.5")    # another address has its own budget
    assert elsewhere.connect() == 0
    long_keepalive = Client(strict, "k1")               # paho asks for 30 s
    assert long_keepalive.connect() == 133              # CONNACK 2 (paho shows its v5 form)
    long_keepalive.close()
    first.close()
    for c in (ok, elsewhere):
        c.close()
    gw.wait_for_log("above max_connection_rate")
