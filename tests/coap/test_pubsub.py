"""CoAP publish, read, observe and delete against a real gateway, with aiocoap's client
library, libcoap's coap-client-notls and paho-mqtt on the other side."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from aiocoap import Unreliable
from aiocoap.numbers.codes import (
    BAD_REQUEST,
    CHANGED,
    CONTENT,
    CREATED,
    DELETE,
    DELETED,
    FETCH,
    GET,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    POST,
    PUT,
)
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.numbers.types import CON, NON

from tests.coap.helpers import COAP_CLIENT, HOST, coap_client, unique


@pytest.fixture(scope="module")
def coap_config() -> list[str]:
    return ["sys_interval 1"]


def uri(port: int, path: str, query: str = "") -> str:
    return f"coap://{HOST}:{port}{path}" + (f"?{query}" if query else "")


# --- CoAP -> MQTT ----------------------------------------------------------------------


def test_put_reaches_an_mqtt_subscriber(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("coap/put/")
    sub = mqtt_client(shared_gateway.port)
    sub.subscribe(topic, qos=2)
    response = aio.request(PUT, uri(coap_port, f"/ps/{topic}"), b"21.5")
    assert response.code == CHANGED
    m = sub.get()
    # EMQX's default publish QoS for a confirmable request is 1.
    assert (m.topic, m.payload, m.qos, m.retain) == (topic, b"21.5", 1, False)


def test_non_confirmable_post_publishes_at_qos_0(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("coap/non/")
    sub = mqtt_client(shared_gateway.port)
    sub.subscribe(topic, qos=2)
    response = aio.request(POST, uri(coap_port, f"/ps/{topic}"), b"x",
                           transport_tuning=Unreliable())
    assert response.code == CHANGED
    assert sub.get().qos == 0


def test_query_qos_and_retain(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("coap/retain/")
    first = aio.request(POST, uri(coap_port, f"/ps/{topic}", "qos=2&retain=true"), b"one")
    again = aio.request(POST, uri(coap_port, f"/ps/{topic}", "qos=0&retain=1"), b"two")
    assert (first.code, again.code) == (CREATED, CHANGED)
    sub = mqtt_client(shared_gateway.port)
    sub.subscribe(topic, qos=2)
    m = sub.get()
    assert (m.payload, m.qos, m.retain) == (b"two", 0, True)


def test_coap_client_put_reaches_mqtt(shared_gateway, coap_port, mqtt_client):
    topic = unique("coap/libcoap/")
    sub = mqtt_client(shared_gateway.port)
    sub.subscribe(topic)
    done = coap_client("-m", "put", "-e", "from libcoap", uri(coap_port, f"/ps/{topic}"))
    assert done.returncode == 0, done.stderr
    assert sub.get().payload == b"from libcoap"


# --- MQTT -> CoAP ----------------------------------------------------------------------


def test_mqtt_publish_reaches_a_coap_observer(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("coap/observed/")
    obs = aio.observe(uri(coap_port, f"/ps/{topic}", "qos=0"))
    assert obs.first.code == CONTENT
    assert obs.first.opt.observe == 0
    pub = mqtt_client(shared_gateway.port)
    for value in (b"1", b"2", b"3"):
        pub.publish(topic, value, qos=1)
    got = [obs.next() for _ in range(3)]
    assert [n.payload for n in got] == [b"1", b"2", b"3"]
    numbers = [n.opt.observe for n in got]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert {n.mtype for n in got} == {NON}  # a QoS 0 observation
    obs.cancel()


def test_qos_1_observation_gets_confirmable_notifications(shared_gateway, coap_port, aio,
                                                          mqtt_client):
    topic = unique("coap/con/")
    obs = aio.observe(uri(coap_port, f"/ps/{topic}", "qos=1"))
    pub = mqtt_client(shared_gateway.port)
    pub.publish(topic, b"q1", qos=1)
    pub.publish(topic, b"q0", qos=0)
    first, second = obs.next(), obs.next()
    assert (first.payload, first.mtype) == (b"q1", CON)
    assert (second.payload, second.mtype) == (b"q0", NON)  # delivered at the message's QoS
    obs.cancel()


def test_observe_filters_percent_encoded(shared_gateway, coap_port, aio, mqtt_client):
    base = unique("coap/filter")
    pub = mqtt_client(shared_gateway.port)
    pub.publish(f"{base}/hall/temp", b"retained", retain=True)
    plus = aio.observe(uri(coap_port, f"/ps/{base}/%2B/temp"))
    hash_ = aio.observe(uri(coap_port, f"/ps/{base}/%23"))
    # Retained messages under a filter arrive as notifications after the registration.
    assert plus.next().payload == b"retained"
    assert hash_.next().payload == b"retained"
    pub.publish(f"{base}/kitchen/temp", b"21")
    pub.publish(f"{base}/kitchen/humidity", b"40")
    assert plus.next().payload == b"21"
    assert [hash_.next().payload, hash_.next().payload] == [b"21", b"40"]
    plus.assert_quiet()
    plus.cancel()
    hash_.cancel()


def test_coap_client_observer(shared_gateway, coap_port, aio, tmp_path: Path, mqtt_client):
    topic = unique("coap/libcoap-obs/")
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", "retain=true"), b"v0")
    out = tmp_path / "observer.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([COAP_CLIENT, "-s", "3", "-m", "get",
                                 uri(coap_port, f"/ps/{topic}")], stdout=f)
    try:
        deadline = time.monotonic() + 10
        while b"v0" not in out.read_bytes():  # registered: the retained value came back
            assert time.monotonic() < deadline, "coap-client did not register"
            time.sleep(0.05)
        pub = mqtt_client(shared_gateway.port)
        pub.publish(topic, b"v1")
        pub.publish(topic, b"v2")
        proc.wait(15)
    finally:
        proc.kill()
    assert out.read_bytes().rstrip(b"\n") == b"v0v1v2"


def test_retained_messages_for_a_new_observation_do_not_repeat_on_the_others(
        shared_gateway, coap_port, aio, mqtt_client):
    base = unique("coap/own")
    pub = mqtt_client(shared_gateway.port)
    pub.publish(f"{base}/a", b"retained", retain=True)
    exact = aio.observe(uri(coap_port, f"/ps/{base}/a", "clientid=" + base))
    assert exact.first.payload == b"retained"
    wide = aio.observe(uri(coap_port, f"/ps/{base}/%23", "clientid=" + base))  # same session
    assert wide.next().payload == b"retained"
    pub.publish(f"{base}/a", b"live")
    assert exact.next().payload == b"live"  # and not the retained value once more
    assert wide.next().payload == b"live"
    exact.cancel()
    wide.cancel()


def test_shared_subscription_cannot_be_observed(shared_gateway, coap_port, aio, mqtt_client):
    # An observer expects every state change; a share group gives each message to one.
    response = aio.request(GET, uri(coap_port, "/ps/$share/g/coap/shared"), observe=0)
    assert response.code == BAD_REQUEST
    response = aio.request(GET, uri(coap_port, "/ps/%24share/g/coap/%23"), observe=0)
    assert response.code == BAD_REQUEST


# --- retained values -------------------------------------------------------------------


def test_get_returns_the_retained_message_with_its_content_format(coap_port, aio):
    topic = unique("coap/get/")
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", "retain=true"), b'{"t": 21}',
                content_format=ContentFormat.JSON)
    response = aio.request(GET, uri(coap_port, f"/ps/{topic}"))
    assert (response.code, response.payload) == (CONTENT, b'{"t": 21}')
    assert response.opt.content_format == ContentFormat.JSON
    done = coap_client("-m", "get", uri(coap_port, f"/ps/{topic}"))
    assert done.stdout.rstrip(b"\n") == b'{"t": 21}'


def test_get_without_retained_message_is_not_found(coap_port, aio):
    response = aio.request(GET, uri(coap_port, f"/ps/{unique('coap/none/')}"))
    assert response.code == NOT_FOUND


def test_expiry_query_gives_max_age_and_ends_the_retained_value(coap_port, aio):
    topic = unique("coap/expiry/")
    obs = aio.observe(uri(coap_port, f"/ps/{topic}"))
    put = aio.request(PUT, uri(coap_port, f"/ps/{topic}", "retain=true&expiry=100"), b"soon")
    assert put.code == CREATED
    notification = obs.next()
    assert notification.payload == b"soon" and 0 < notification.opt.max_age <= 100
    got = aio.request(GET, uri(coap_port, f"/ps/{topic}"))
    assert (got.code, got.payload) == (CONTENT, b"soon") and 0 < got.opt.max_age <= 100
    obs.cancel()
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", "retain=true&expiry=0"), b"kept")
    assert aio.request(GET, uri(coap_port, f"/ps/{topic}")).opt.max_age is None  # no expiry
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", "retain=true&expiry=1"), b"brief")
    deadline = time.monotonic() + 15
    while (got := aio.request(GET, uri(coap_port, f"/ps/{topic}"))).code == CONTENT:
        assert got.payload == b"brief"
        assert time.monotonic() < deadline, "the retained value never expired"
        time.sleep(0.2)
    assert got.code == NOT_FOUND


def test_delete_clears_the_retained_message(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("coap/delete/")
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", "retain=true"), b"old")
    assert aio.request(DELETE, uri(coap_port, f"/ps/{topic}")).code == DELETED
    assert aio.request(GET, uri(coap_port, f"/ps/{topic}")).code == NOT_FOUND
    sub = mqtt_client(shared_gateway.port)
    sub.subscribe(topic)
    sub.assert_quiet()


def test_well_known_core_lists_ps_and_retained_topics(coap_port, aio):
    topic = unique("coap/wkc/") + "/with space"
    aio.request(PUT, uri(coap_port, f"/ps/{topic.replace(' ', '%20')}", "retain=true"), b"1",
                content_format=ContentFormat.TEXT)
    response = aio.request(GET, uri(coap_port, "/.well-known/core"))
    assert response.code == CONTENT
    assert response.opt.content_format == ContentFormat.LINKFORMAT
    links = response.payload.decode()
    assert '</ps>;rt="core.ps"' in links
    assert f"</ps/{topic.replace(' ', '%20')}>;obs;ct=0" in links
    done = coap_client("-m", "get", uri(coap_port, "/.well-known/core"))
    assert b"</ps>" in done.stdout


# --- blockwise -------------------------------------------------------------------------

BIG = bytes(range(256)) * 40  # 10 kB


def test_blockwise_put_10k(shared_gateway, coap_port, aio, mqtt_client, tmp_path: Path):
    topic = unique("coap/block1/")
    sub = mqtt_client(shared_gateway.port)
    sub.subscribe(topic)
    assert aio.request(PUT, uri(coap_port, f"/ps/{topic}"), BIG).code == CHANGED
    assert sub.get().payload == BIG
    body = tmp_path / "body"
    body.write_bytes(BIG[::-1])
    done = coap_client("-m", "put", "-b", "64", "-f", str(body), uri(coap_port, f"/ps/{topic}"))
    assert done.returncode == 0, done.stderr
    assert sub.get().payload == BIG[::-1]


def test_blockwise_get_10k(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("coap/block2/")
    mqtt_client(shared_gateway.port).publish(topic, BIG, retain=True)
    response = aio.request(GET, uri(coap_port, f"/ps/{topic}"))
    assert (response.code, response.payload) == (CONTENT, BIG)
    done = coap_client("-m", "get", "-b", "128", uri(coap_port, f"/ps/{topic}"))
    assert done.stdout[:-1] == BIG and done.stdout[-1:] == b"\n"  # coap-client adds one


def test_blockwise_notification_10k(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("coap/block2obs/")
    obs = aio.observe(uri(coap_port, f"/ps/{topic}"))
    mqtt_client(shared_gateway.port).publish(topic, BIG)
    notification = obs.next()
    assert notification.payload == BIG
    obs.cancel()


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, query, expected", [
    (PUT, "/ps/a/%2B", "", BAD_REQUEST),        # wildcard in a topic name
    (PUT, "/ps/a/%23", "", BAD_REQUEST),
    (PUT, "/ps", "", BAD_REQUEST),              # empty topic
    (GET, "/ps/a/%2B", "", BAD_REQUEST),        # a filter is only for Observe
    (DELETE, "/ps/%23", "", BAD_REQUEST),
    (PUT, "/ps/a", "qos=3", BAD_REQUEST),
    (PUT, "/ps/a", "qos=one", BAD_REQUEST),
    (PUT, "/ps/a", "retain=maybe", BAD_REQUEST),
    (PUT, "/ps/a", "expiry=-1", BAD_REQUEST),
    (PUT, "/ps/a", "expiry=soon", BAD_REQUEST),
    (PUT, "/ps/a", "expiry=%C2%B2", BAD_REQUEST),  # a digit to str.isdigit, not to int
    (PUT, "/ps/a", "expiry=4294967296", BAD_REQUEST),
    (GET, "/ps/a", "qos=5", BAD_REQUEST),
    (PUT, "/nothing/here", "", NOT_FOUND),
    (GET, "/", "", NOT_FOUND),
    (PUT, "/.well-known/core", "", METHOD_NOT_ALLOWED),
    (FETCH, "/ps/a", "", METHOD_NOT_ALLOWED),
    (GET, "/mqtt/connection", "", METHOD_NOT_ALLOWED),
])
def test_error_codes(coap_port, aio, method, path, query, expected):
    extra = {"observe": 0} if (method, query) == (GET, "qos=5") else {}
    response = aio.request(method, uri(coap_port, path, query), b"x" if method != GET else b"",
                           **extra)
    assert response.code == expected, response.payload


def test_invalid_observe_value_is_bad_request(coap_port, aio):
    response = aio.request(GET, uri(coap_port, "/ps/a"), observe=7)
    assert response.code == BAD_REQUEST


def test_coap_client_sees_4_04(coap_port):
    done = coap_client("-m", "get", uri(coap_port, "/unknown"))
    assert b"4.04" in done.stdout + done.stderr


# --- $SYS ------------------------------------------------------------------------------


def test_sys_counters(shared_gateway, coap_port, aio, mqtt_client):
    aio.request(GET, uri(coap_port, "/nothing"))  # one error at least
    obs = aio.observe(uri(coap_port, f"/ps/{unique('coap/sys/')}"))
    sub = mqtt_client(shared_gateway.port)
    sub.subscribe("$SYS/broker/coap/#", qos=0)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 10
    wanted = {"coap/observers", "coap/errors", "coap/requests/received"}
    while not (wanted <= set(seen) and seen["coap/observers"] >= 1):
        assert time.monotonic() < deadline, seen
        m = sub.get()
        seen[m.topic.removeprefix("$SYS/broker/")] = int(m.payload)
    assert seen["coap/requests/received"] >= 2
    assert seen["coap/errors"] >= 1
    obs.cancel()
