"""The MQTT channel holding packets for an ACL plugin: a real Hub, a real channel,
StringTransport and task.Clock, the plugin's answers fired by the test."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.testing import StringTransport

from gateway.hub.hub import Hub
from gateway.mqtt.channel import CONNECTED, WAITING, MQTTChannel, MQTTSettings
from gateway.mqtt.packets import Connect, Publish, Subscribe
from tests.security.test_plugins import slow_acl_security


def setup(tmp_path):
    security = slow_acl_security(tmp_path, "allow_anonymous true")
    hub = Hub()
    security.install(hub)
    link = StringTransport()
    channel = MQTTChannel(hub, MQTTSettings(), link, task.Clock(), "127.0.0.1:1000")
    channel.handle(Connect("c1"))
    return channel, link, security.policy(None).plugins[0].obj


def test_held_subscribe_then_publish_keep_their_order(tmp_path):
    channel, link, slow = setup(tmp_path)
    assert channel.state == CONNECTED
    link.clear()
    channel.handle(Subscribe(1, [("t/#", 1)]))
    assert channel.state == WAITING and link.value() == b""       # nothing answered yet
    channel.handle(Publish("t/1", b"x", 1, packet_id=7))            # queued behind it
    assert [t for t, _ in slow.pending] == ["t/#"]
    slow.pending[0][1].callback(True)                               # subscribe allowed
    # Now the PUBLISH is held: its WRITE, and READ for the new subscriber.
    assert channel.state == WAITING
    assert sorted(t for t, _ in slow.pending[1:]) == ["t/1", "t/1"]
    assert link.value().startswith(b"\x90\x03\x00\x01\x01")           # SUBACK granted QoS 1
    link.clear()
    for _, d in slow.pending[1:]:
        d.callback(True)
    assert channel.state == CONNECTED
    data = link.value()
    assert b"t/1" in data and data.endswith(b"\x40\x02\x00\x07")      # delivered, then PUBACK


def test_denied_subscribe_after_the_wait(tmp_path):
    channel, link, slow = setup(tmp_path)
    link.clear()
    channel.handle(Subscribe(2, [("secret/#", 0)]))
    slow.pending[0][1].callback(False)
    assert link.value() == b"\x90\x03\x00\x02\x80"                   # SUBACK 0x80
