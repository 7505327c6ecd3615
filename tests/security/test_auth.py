"""The security chain on its own: a real Hub, task.Clock for the login throttle."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from gateway.config import Listener, default_config, parse
from gateway.errors import ConfigError
from gateway.hub.api import Allowed, ClientInfo, Denied, Message, Subscription
from gateway.hub.auth import FREE_FAILURES, Security, peer_host
from gateway.security.policy import build_policies, load_security
from gateway.hub.hub import Hub
from gateway.security.passwords import make_hash
from gateway.tls import uses_certificate_identity


def answer(result):
    """Whether an authentication result (or an already-fired Deferred of one) allows."""
    if isinstance(result, Deferred):
        out = []
        result.addBoth(out.append)
        assert out, "still waiting"
        result = out[0]
    return bool(result) if isinstance(result, (Allowed, Denied)) else result


@pytest.fixture
def files(tmp_path: Path):
    pw = tmp_path / "passwd"
    pw.write_text(f"alice:{make_hash(b'secret')}\nbob:{make_hash(b'hunter2')}\n")
    acl = tmp_path / "acl"
    acl.write_text("topic read public/#\nuser alice\ntopic readwrite alice/#\n")
    return pw, acl


def security(text: str, clock=None) -> Security:
    return load_security(parse(text, "gw.conf"), clock or task.Clock())


_ports = itertools.count(1)


def client(username=None, listener=None, client_id="c1", peer=None):
    # A fresh address each time, so the login throttle stays out of unrelated tests.
    peer = peer or f"10.0.{next(_ports) % 250}.{next(_ports) % 250}:4000"
    return ClientInfo(client_id, "mqtt", peer, username, listener, uses_certificate_identity(listener))


def test_no_config_file_allows_anonymous_on_loopback():
    s = load_security(default_config(), task.Clock())
    assert answer(s.authenticate(client(), None)) is True
    assert s.fast_authorizer()(client(), "write", "any/topic")


@pytest.mark.parametrize("text, anonymous, named", [
    ("listener 1883\n", False, False),                        # Mosquitto 2.0: nothing gets in
    ("listener 1883\nallow_anonymous true\n", True, True),
    ("allow_anonymous false\n", False, False),
])
def test_without_backends_allow_anonymous_decides_for_everyone(text, anonymous, named):
    s = security(text)
    assert answer(s.authenticate(client(), None)) is anonymous
    assert answer(s.authenticate(client("alice"), b"x")) is named


def test_password_file(files):
    pw, _ = files
    s = security(f"listener 1883\npassword_file {pw}\n")
    assert answer(s.authenticate(client("alice"), b"secret")) is True
    assert answer(s.authenticate(client("alice"), b"wrong")) is False
    assert answer(s.authenticate(client("mallory"), b"secret")) is False
    assert answer(s.authenticate(client("alice"), None)) is False
    assert answer(s.authenticate(client(), None)) is False               # anonymous refused
    s = security(f"listener 1883\nallow_anonymous true\npassword_file {pw}\n")
    assert answer(s.authenticate(client(), None)) is True
    assert answer(s.authenticate(client("mallory"), b"x")) is False      # usernames still checked


def test_failed_logins_are_logged_with_the_address(files):
    pw, _ = files
    s = security(f"listener 1883\npassword_file {pw}\n")
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        answer(s.authenticate(client("alice", peer="192.0.2.7:5000"), b"nope"))
        answer(s.authenticate(client("mallory", peer="192.0.2.8:5000"), b"nope"))
    finally:
        globalLogPublisher.removeObserver(events)
    failures = [(e["peer"], e["reason"]) for e in events if "reason" in e and "peer" in e]
    assert failures == [("192.0.2.7:5000", "wrong password"), ("192.0.2.8:5000", "unknown user")]


def test_repeated_failures_from_one_address_are_slowed_down(files):
    pw, _ = files
    clock = task.Clock()
    s = security(f"listener 1883\npassword_file {pw}\n", clock)
    bad = client("alice", peer="192.0.2.7:5000")
    for _ in range(FREE_FAILURES):
        assert answer(s.authenticate(bad, b"nope")) is False            # answered at once
    interval = s.throttle.interval("192.0.2.7")
    assert interval > 0
    d = s.authenticate(bad, b"nope")
    assert isinstance(d, Deferred) and not d.called                   # now delayed
    clock.advance(interval - 0.001)
    assert not d.called
    clock.advance(0.001)
    assert answer(d) is False
    # Parallel attempts queue one after another; a good password waits its turn too.
    interval = s.throttle.interval("192.0.2.7")
    first = s.authenticate(client("alice", peer="192.0.2.7:5001"), b"nope")
    second = s.authenticate(client("alice", peer="192.0.2.7:5002"), b"secret")
    clock.advance(interval)
    assert answer(first) is False and not second.called
    clock.advance(interval)
    assert answer(second) is True
    # Other addresses are not affected, and the address is forgiven after a while.
    assert answer(s.authenticate(client("alice", peer="192.0.2.9:5000"), b"secret")) is True
    clock.advance(10_000)
    assert s.throttle.interval("192.0.2.7") == 0


@pytest.mark.parametrize("peer, host", [("10.0.0.1:4000", "10.0.0.1"), ("::1:4000", "::1"),
                                        ("unix", "unix")])
def test_peer_host(peer, host):
    assert peer_host(peer) == host


def test_acl_and_dollar_rules(files):
    pw, acl = files
    s = security(f"listener 1883\npassword_file {pw}\nacl_file {acl}\n")
    authorize = s.fast_authorizer()
    assert authorize(client("alice"), "write", "alice/x")
    assert not authorize(client("alice"), "read", "public/x")
    assert authorize(client(), "read", "public/x")
    assert not authorize(client("alice"), "write", "$SYS/broker/version")
    open_s = security("listener 1883\nallow_anonymous true\n")
    guard = open_s.fast_authorizer()
    assert guard(client(), "read", "$SYS/broker/version")
    assert not guard(client(), "write", "$SYS/broker/version")     # nobody publishes to $SYS
    assert not guard(client(), "write", "$share/g/t")


def test_per_listener_settings(files, tmp_path):
    pw, acl = files
    s = security(f"per_listener_settings true\n"
                 f"listener 1883\nallow_anonymous true\n"
                 f"listener 8883\npassword_file {pw}\nacl_file {acl}\n")
    open_l, closed_l = Listener(1883), Listener(8883)
    assert answer(s.authenticate(client(listener=open_l), None)) is True
    assert answer(s.authenticate(client(listener=closed_l), None)) is False
    assert answer(s.authenticate(client("alice", listener=closed_l), b"secret")) is True
    assert s.authorize(client("x", listener=open_l), "read", "alice/x")
    assert not s.authorize(client("x", listener=closed_l), "read", "alice/x")
    assert not s.authorize(client("x", listener=Listener(9999)), "read", "a")   # unknown listener


def test_certificate_identity_listener_needs_a_username_from_the_certificate(tmp_path):
    s = security("listener 8883\ncertfile c\nkeyfile k\ncafile ca\nrequire_certificate true\n"
                 "use_identity_as_username true\n")
    tls = Listener(8883, certfile="c", keyfile="k", cafile="ca", require_certificate=True,
                   use_identity_as_username=True)
    assert answer(s.authenticate(client("device-42", tls), None)) is True
    assert answer(s.authenticate(client(None, tls), b"pw")) is False


def test_bad_files_stop_loading_with_file_and_line(tmp_path, files):
    pw, acl = files
    bad = tmp_path / "bad-acl"
    bad.write_text("topic read a\ntopik b\n")
    with pytest.raises(ConfigError) as e:
        security(f"acl_file {bad}\n")
    assert str(e.value).startswith(f"{bad}:2: invalid line")


class Endpoint:
    def __init__(self):
        self.closed = False
        self.got = []

    def send_publish(self, message, qos, packet_id, dup, retain, sub_ids=()):
        self.got.append(message.topic)
        return True

    def send_pubrel(self, packet_id):
        pass

    def close(self, reason):
        self.closed = True


def test_reload_rechecks_connected_clients(tmp_path, files):
    pw, acl = files
    conf = f"listener 1883\npassword_file {pw}\nacl_file {acl}\n"
    s = security(conf)
    hub = Hub()
    s.install(hub)
    alice, bob = Endpoint(), Endpoint()
    session_a, _ = hub.connect(client("alice", client_id="a"), alice, True)
    session_b, _ = hub.connect(client("bob", client_id="b"), bob, True)
    hub.subscribe(session_a, "#", Subscription(0))
    hub.publish(Message("alice/x", b"1"))
    assert alice.got == ["alice/x"]
    # bob's password changes, alice loses read access to alice/#.
    pw.write_text(f"alice:{pw.read_text().splitlines()[0].split(':', 1)[1]}\nbob:{make_hash(b'new')}\n")
    acl.write_text("user alice\ntopic write alice/#\n")
    old = s.snapshot()
    s.replace(build_policies(parse(conf, "gw.conf"), s.clock))
    s.install(hub)
    assert s.recheck(hub, old) == 1
    assert bob.closed and not alice.closed
    hub.publish(Message("alice/x", b"2"))
    assert alice.got == ["alice/x"]                       # the new ACL applies at once


def test_failed_reload_keeps_the_old_rules(tmp_path, files):
    pw, acl = files
    conf = f"listener 1883\npassword_file {pw}\nacl_file {acl}\n"
    s = security(conf)
    acl.write_text("topic sideways a\n")
    with pytest.raises(ConfigError):
        s.replace(build_policies(parse(conf, "gw.conf"), s.clock))
    assert s.authorize(client("alice"), "write", "alice/x")


def test_reload_keeps_clients_the_password_file_never_vouched_for(tmp_path, files):
    pw, acl = files
    conf = f"listener 1883\nallow_anonymous true\npassword_file {pw}\n"
    s = security(conf)
    hub = Hub()
    s.install(hub)
    sensor, anon, alice = Endpoint(), Endpoint(), Endpoint()
    hub.connect(ClientInfo("boiler", "mqttsn", "udp", "sensors"), sensor, True)
    hub.connect(client(client_id="anon"), anon, True)
    hub.connect(client("alice", client_id="a"), alice, True)
    old = s.snapshot()
    pw.write_text(f"alice:{make_hash(b'changed')}\n")
    s.replace(build_policies(parse(conf.replace("allow_anonymous true", "allow_anonymous false"), "gw.conf"), s.clock))
    assert s.recheck(hub, old) == 2
    assert (sensor.closed, anon.closed, alice.closed) == (False, True, True)
