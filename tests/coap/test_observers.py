"""Observers that go away are cleaned up: RST to a CON or NON notification, an address
that reports ICMP port unreachable, deregistration with Observe=1, and a takeover of
the client id. The gateway's
$SYS counters (sys_interval 1) show the observation and its hub session leave."""

from __future__ import annotations

import queue
import socket
import time

import pytest
from aiocoap.numbers.codes import CHANGED, CONTENT, GET, PUT, SERVICE_UNAVAILABLE

from tests.coap import rawcoap
from tests.coap.helpers import HOST, TIMEOUT, AioCoAP, unique


@pytest.fixture(scope="module")
def coap_config() -> list[str]:
    return ["sys_interval 1"]


def uri(port: int, path: str, query: str = "") -> str:
    return f"coap://{HOST}:{port}{path}" + (f"?{query}" if query else "")


class SysWatch:
    """Latest values of a few $SYS topics, from a subscribed MQTT client."""

    NAMES = ("coap/observers", "clients/connected")

    def __init__(self, mqtt_client, port: int) -> None:
        self.sub = mqtt_client(port)
        self.sub.subscribe([f"$SYS/broker/{n}" for n in self.NAMES], qos=0)
        self.values: dict[str, int] = {}
        self.wait(lambda v: all(n in v for n in self.NAMES))
        # The retained values may predate this subscriber's own connection; $SYS
        # republishes what changed every sys_interval (1 s), so read on for 1.5 s.
        deadline = time.monotonic() + 1.5
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                m = self.sub.messages.get(timeout=remaining)
            except queue.Empty:
                break
            self.values[m.topic.removeprefix("$SYS/broker/")] = int(m.payload)

    def wait(self, predicate, timeout: float = TIMEOUT) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while not predicate(self.values):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"$SYS never matched; last values {self.values}"
            try:
                m = self.sub.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            self.values[m.topic.removeprefix("$SYS/broker/")] = int(m.payload)
        return dict(self.values)


class RawObserver:
    """A UDP socket that registers an observation by hand and sees every datagram."""

    def __init__(self, port: int, topic: str, qos: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((HOST, port))
        self.sock.settimeout(TIMEOUT)
        self.sock.send(rawcoap.request(rawcoap.CON, rawcoap.GET, 0x1000, b"ob", f"/ps/{topic}",
                                       [f"qos={qos}"], extra=[(rawcoap.OBSERVE, b"")]))
        first = self.receive()
        assert (first.mtype, first.code, first.token) == (rawcoap.ACK, CONTENT, b"ob")

    def receive(self, timeout: float = TIMEOUT) -> rawcoap.Parsed:
        self.sock.settimeout(timeout)
        return rawcoap.parse(self.sock.recv(2048))

    def reset(self, mid: int) -> None:
        self.sock.send(rawcoap.empty(rawcoap.RST, mid))

    def assert_quiet(self, wait: float = 0.5) -> None:
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(2048)
        except socket.timeout:
            return
        raise AssertionError(f"unexpected datagram {rawcoap.parse(data)}")

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("qos, mtype", [(1, rawcoap.CON), (0, rawcoap.NON)])
def test_rst_to_a_notification_ends_the_observation(shared_gateway, coap_port, mqtt_client,
                                                    qos, mtype):
    watch = SysWatch(mqtt_client, shared_gateway.port)
    before = watch.values["coap/observers"]
    topic = unique("coap/rst/")
    observer = RawObserver(coap_port, topic, qos)
    watch.wait(lambda v: v["coap/observers"] == before + 1)
    pub = mqtt_client(shared_gateway.port)
    pub.publish(topic, b"first", qos=qos)
    notification = observer.receive()
    assert (notification.mtype, notification.payload) == (mtype, b"first")
    observer.reset(notification.mid)  # "I do not know this token"
    watch.wait(lambda v: v["coap/observers"] == before)
    pub.publish(topic, b"second", qos=qos)
    observer.assert_quiet()
    observer.close()


def test_vanished_observer_is_cleaned_up(shared_gateway, coap_port, mqtt_client):
    pub = mqtt_client(shared_gateway.port)
    watch = SysWatch(mqtt_client, shared_gateway.port)
    before = dict(watch.values)
    topic = unique("coap/vanish/")
    gone = AioCoAP()
    gone.observe(uri(coap_port, f"/ps/{topic}", "clientid=" + unique("vanishing")))
    watch.wait(lambda v: v["coap/observers"] == before["coap/observers"] + 1
               and v["clients/connected"] == before["clients/connected"] + 1)
    gone.close()  # its socket is closed: the next notification gets ICMP port unreachable
    pub.publish(topic, b"anyone?", qos=0)
    watch.wait(lambda v: v["coap/observers"] == before["coap/observers"]
               and v["clients/connected"] == before["clients/connected"])


def test_deregistration_with_observe_1(shared_gateway, coap_port, aio, mqtt_client):
    watch = SysWatch(mqtt_client, shared_gateway.port)
    before = watch.values["coap/observers"]
    topic = unique("coap/dereg/")
    obs = aio.observe(uri(coap_port, f"/ps/{topic}"))
    watch.wait(lambda v: v["coap/observers"] == before + 1)
    response = aio.request(GET, uri(coap_port, f"/ps/{topic}"), observe=1)
    assert response.code == CONTENT
    ended = obs.next()
    assert ended.opt.observe is None  # a response without Observe ends it (RFC 7641 3.3.1)
    watch.wait(lambda v: v["coap/observers"] == before)


def test_two_observations_of_one_client_share_a_session(shared_gateway, coap_port, aio,
                                                        mqtt_client):
    pub = mqtt_client(shared_gateway.port)
    watch = SysWatch(mqtt_client, shared_gateway.port)
    before = dict(watch.values)
    base = unique("coap/two")
    a = aio.observe(uri(coap_port, f"/ps/{base}/a", "clientid=" + base))
    b = aio.observe(uri(coap_port, f"/ps/{base}/%23", "clientid=" + base))
    watch.wait(lambda v: v["coap/observers"] == before["coap/observers"] + 2
               and v["clients/connected"] == before["clients/connected"] + 1)
    pub.publish(f"{base}/a", b"both")
    assert a.next().payload == b"both"
    assert b.next().payload == b"both"
    aio.request(GET, uri(coap_port, f"/ps/{base}/a", "clientid=" + base), observe=1)
    aio.request(GET, uri(coap_port, f"/ps/{base}/%23", "clientid=" + base), observe=1)
    watch.wait(lambda v: v == before)


def test_a_vanished_observer_does_not_end_other_observations(shared_gateway, coap_port, aio,
                                                              mqtt_client):
    # Linux reports the ICMP error of the notification to the vanished observer once more
    # on the next send, whoever it is for; that send must not be taken for a failure of
    # its own peer (aiocoap's udp6 would end the peer's observations and drop the answer).
    topic, other = unique("coap/gone/"), unique("coap/neighbour/")
    neighbour = aio.observe(uri(coap_port, f"/ps/{other}"))
    gone = AioCoAP()
    gone.observe(uri(coap_port, f"/ps/{topic}"))
    gone.close()
    answer = aio.request(PUT, uri(coap_port, f"/ps/{topic}", "qos=0"), b"to the void")
    assert answer.code == CHANGED
    mqtt_client(shared_gateway.port).publish(other, b"still here")
    assert neighbour.next().payload == b"still here"
    neighbour.cancel()


def test_the_listener_still_reads_after_icmp_errors(shared_gateway, coap_port, aio):
    # On uvloop's loop (the gateway's default) libuv stops watching a socket that
    # reports an error, as this UDP socket does for each ICMP error it queues: without
    # watching it again the listener would answer nothing after the first one.
    topic = unique("coap/deaf/")
    for n in range(3):
        gone = AioCoAP()
        gone.observe(uri(coap_port, f"/ps/{topic}"))
        gone.close()
        # The notification to the closed port gets ICMP port unreachable at once.
        assert aio.request(PUT, uri(coap_port, f"/ps/{topic}", "qos=0"), b"%d" % n).code == CHANGED
        assert aio.request(PUT, uri(coap_port, f"/ps/{topic}", "qos=0"), b"after").code == CHANGED


def test_reregistration_replaces_the_only_observation(shared_gateway, coap_port, aio,
                                                       mqtt_client):
    pub = mqtt_client(shared_gateway.port)
    watch = SysWatch(mqtt_client, shared_gateway.port)
    before = dict(watch.values)
    topic = unique("coap/again/")
    first = aio.observe(uri(coap_port, f"/ps/{topic}", "clientid=again"))
    second = aio.observe(uri(coap_port, f"/ps/{topic}", "clientid=again"))  # another token
    assert first.next().code == SERVICE_UNAVAILABLE  # the older one is ended
    pub.publish(topic, b"to the newer one")
    assert second.next().payload == b"to the newer one"
    watch.wait(lambda v: v["coap/observers"] == before["coap/observers"] + 1
               and v["clients/connected"] == before["clients/connected"] + 1)
    second.cancel()
    aio.request(GET, uri(coap_port, f"/ps/{topic}", "clientid=again"), observe=1)
    watch.wait(lambda v: v == before)


def test_an_mqtt_client_with_the_same_id_takes_the_session_over(shared_gateway, coap_port,
                                                               aio, mqtt_client):
    watch = SysWatch(mqtt_client, shared_gateway.port)
    before = dict(watch.values)
    client_id = unique("twin")
    obs = aio.observe(uri(coap_port, f"/ps/{unique('coap/twin/')}", "clientid=" + client_id))
    mqtt_client(shared_gateway.port, client_id=client_id)
    ended = obs.next()
    assert (ended.code, ended.payload) == (SERVICE_UNAVAILABLE, b"session taken over")
    watch.wait(lambda v: v["coap/observers"] == before["coap/observers"]
               and v["clients/connected"] == before["clients/connected"] + 1)  # the MQTT one


def test_confirmable_notifications_wait_for_each_ack(shared_gateway, coap_port, mqtt_client):
    # NSTART = 1: one CON notification in flight per observer, the next one only after
    # the ACK; the hub's inflight window and queue hold the rest, in order.
    topic = unique("coap/acks/")
    observer = RawObserver(coap_port, topic, qos=1)
    pub = mqtt_client(shared_gateway.port)
    for i in range(5):
        pub.publish(topic, b"m%d" % i, qos=1)
    got = []
    for _ in range(5):
        notification = observer.receive()
        assert notification.mtype == rawcoap.CON
        observer.assert_quiet(0.3)  # nothing more until this one is acknowledged
        got.append(notification.payload)
        observer.sock.send(rawcoap.empty(rawcoap.ACK, notification.mid))
    assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    observer.close()
