"""A real gateway with a password file and an ACL file, driven by paho-mqtt and
mosquitto_pub/sub: every denial path, and SIGHUP rereading the files."""

from __future__ import annotations

import subprocess

import pytest

from gateway.security.passwords import make_hash
from tests.conftest import free_port, launch, serving
from tests.security.helpers import WAIT, Client

ACL = """\
topic read public/#

user alice
topic readwrite alice/#
topic read shared/#
topic deny shared/secret
topic read $SYS/broker/uptime
topic write sync/#

user bob
topic write shared/#
topic write alice/inbox
topic write sync/#

pattern readwrite clients/%c/#
pattern read users/%u/#
"""

NOT_AUTHORIZED = 135       # paho reports CONNACK 5 in its v5 form


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    directory = tmp_path_factory.mktemp("files")
    (directory / "passwd").write_text(
        f"alice:{make_hash(b'secret')}\nbob:{make_hash(b'hunter2')}\n")
    (directory / "acl").write_text(ACL)
    yield from serving(launch(directory, [
        f"listener {free_port()} 127.0.0.1", "allow_anonymous true",
        f"password_file {directory / 'passwd'}", f"acl_file {directory / 'acl'}", "sys_interval 1",
    ], listener=False))


def connected(gw, client_id, username=None, password=None):
    c = Client(gw.port, client_id, username, password)
    assert c.connect() == 0
    return c


def test_wrong_password_and_unknown_user_are_refused(gateway):
    for username, password in [("alice", "wrong"), ("mallory", "secret"), ("alice", None)]:
        c = Client(gateway.port, "x", username, password, bind="127.0.0.2")
        assert c.connect() == NOT_AUTHORIZED
        c.close()
    gateway.wait_for_log("wrong password")
    gateway.wait_for_log("unknown user")
    gateway.wait_for_log("from 127.0.0.2:")


def test_mosquitto_pub_with_credentials(gateway):
    sub = connected(gateway, "alice-sub", "alice", "secret")
    assert sub.subscribe("alice/#") == [1]
    ok = subprocess.run(["mosquitto_pub", "-p", str(gateway.port), "-h", "127.0.0.1", "-q", "1",
                         "-u", "bob", "-P", "hunter2", "-t", "alice/inbox", "-m", "hi"],
                        capture_output=True, timeout=WAIT)
    assert ok.returncode == 0
    assert sub.next_message() == ("alice/inbox", b"hi")
    refused = subprocess.run(["mosquitto_pub", "-p", str(gateway.port), "-h", "127.0.0.1", "-A", "127.0.0.3",
                              "-u", "bob", "-P", "wrong", "-t", "alice/inbox", "-m", "hi"],
                             capture_output=True, timeout=WAIT)
    assert refused.returncode != 0 and b"not authori" in refused.stderr
    sub.close()


def test_read_is_checked_per_delivered_message(gateway):
    alice = connected(gateway, "alice-1", "alice", "secret")
    bob = connected(gateway, "bob-1", "bob", "hunter2")
    assert alice.subscribe("shared/#") == [1]
    bob.publish("shared/secret", b"no")          # alice may not read this one
    bob.publish("shared/news", b"yes")
    assert alice.next_message() == ("shared/news", b"yes")
    assert alice.received() == []
    alice.close()
    bob.close()


def test_denied_publish_is_acknowledged_and_dropped(gateway):
    alice = connected(gateway, "alice-2", "alice", "secret")
    bob = connected(gateway, "bob-2", "bob", "hunter2")
    assert alice.subscribe("alice/#") == [1]
    for qos in (0, 1, 2):
        alice.publish("shared/x", b"not allowed", qos)       # alice has only read on shared/#
    assert bob.is_connected() and alice.is_connected()
    bob.publish("alice/inbox", b"marker")
    assert alice.next_message() == ("alice/inbox", b"marker")
    alice.close()
    bob.close()


def test_subscribe_denied_outright_gets_0x80(gateway):
    alice = connected(gateway, "alice-3", "alice", "secret")
    assert alice.subscribe("shared/secret") == [0x80]       # a deny covers it
    assert alice.subscribe("bob/#") == [0x80]               # nothing readable under it
    assert alice.subscribe("#") == [1]                      # allowed, filtered per message
    alice.close()


def test_anonymous_rules_and_patterns(gateway):
    anon = connected(gateway, "dev7")
    bob = connected(gateway, "bob-4", "bob", "hunter2")
    assert anon.subscribe("public/#") == [1]
    assert anon.subscribe("alice/#") == [0x80]
    assert anon.subscribe("clients/dev7/#") == [1]          # %c
    assert anon.subscribe("clients/dev8/#") == [0x80]
    anon.publish("clients/dev7/state", b"on")
    assert anon.next_message() == ("clients/dev7/state", b"on")
    assert bob.subscribe("users/bob/#") == [1]              # %u
    assert bob.subscribe("users/alice/#") == [0x80]
    anon.close()
    bob.close()


def test_sys_is_readable_only_where_allowed(gateway):
    alice = connected(gateway, "alice-5", "alice", "secret")
    bob = connected(gateway, "bob-5", "bob", "hunter2")
    assert alice.subscribe("$SYS/broker/uptime") == [1]
    assert bob.subscribe("$SYS/#") == [0x80]
    assert alice.next_message()[0] == "$SYS/broker/uptime"
    bob.publish("$SYS/broker/uptime", b"fake")              # nobody publishes to $SYS
    alice.c.unsubscribe("$SYS/broker/uptime")
    alice.close()
    bob.close()


def test_mosquitto_sub_sees_only_what_it_may_read(gateway):
    proc = subprocess.Popen(["mosquitto_sub", "-p", str(gateway.port), "-h", "127.0.0.1", "-q", "1",
                             "-u", "alice", "-P", "secret", "-t", "shared/#", "-C", "1", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bob = connected(gateway, "bob-6", "bob", "hunter2")
    try:
        # Until mosquitto_sub has subscribed, publish and look: the first line it prints
        # must be the allowed message, whatever was published before it.
        for _ in range(200):
            bob.publish("shared/secret", b"hidden")
            bob.publish("shared/ok", b"visible")
            if proc.poll() is not None:
                break
            try:
                proc.wait(0.05)
            except subprocess.TimeoutExpired:
                pass
        out, _ = proc.communicate(timeout=WAIT)
        assert out.decode().splitlines() == ["shared/ok visible"]
    finally:
        if proc.poll() is None:
            proc.kill()
        bob.close()
