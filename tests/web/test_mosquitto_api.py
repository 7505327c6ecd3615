"""``/api/v1/*`` against the shapes of Mosquitto 2.1's ``src/http_api.c`` (and the
``$SYS`` names of its ``src/sys_tree.c``), and ``http_dir`` as it serves files."""

from __future__ import annotations

import os

import pytest

from gateway import __version__
from gateway.web.files import resolve
from tests.conftest import free_port, free_udp_port
from tests.e2e.clients import unique
from tests.web.helpers import get

#: Every key Mosquitto 2.1 puts in /api/v1/systree: its metrics that have a topic
#: (the heap ones only with memory tracking), then the uptime.
MOSQUITTO_SYSTREE = [
    "clients/total", "clients/maximum", "clients/disconnected", "clients/connected",
    "clients/expired", "messages/stored", "store/messages/bytes", "subscriptions/count",
    "shared_subscriptions/count", "retained messages/count", "heap/current", "heap/maximum",
    "messages/received", "messages/sent", "bytes/received", "bytes/sent",
    "publish/bytes/received", "publish/bytes/sent", "packet/out/count", "packet/out/bytes",
    "connections/socket/count", "publish/messages/dropped", "publish/messages/received",
    "publish/messages/sent", "uptime",
]
#: What the gateway does not count, left out as Mosquitto leaves out what it lacks.
NOT_COUNTED = {"heap/current", "heap/maximum", "publish/bytes/received", "publish/bytes/sent",
               "packet/out/count", "packet/out/bytes", "connections/socket/count"}
#: One listener object of /api/v1/listeners (a TCP one: "path" is for Unix sockets).
LISTENER_FIELDS = {"port": int, "protocol": str, "tls": bool, "mtls": bool, "allow_anonymous": bool}
MOSQUITTO_PROTOCOLS = {"mqtt", "mqtt-sn", "websockets", "httpapi"}


@pytest.fixture
def api(gateway):
    http, sn, coap = free_port(), free_udp_port(), free_udp_port()
    gw = gateway(f"listener {http}", "protocol http_api", "listener_allow_anonymous true",
                 f"listener {sn} 127.0.0.1", "protocol mqttsn", f"listener {coap} 127.0.0.1",
                 "protocol coap")
    gw.http_port, gw.sn_port, gw.coap_port = http, sn, coap
    return gw


def test_systree_has_mosquittos_keys_and_integers(api, paho) -> None:
    before = get(api.http_port, "/api/v1/systree")
    assert before.status == 200
    assert before.headers["Content-Type"] == "application/json"
    assert before.headers["Access-Control-Allow-Origin"] == "*"
    tree = before.json()
    expected = [f"$SYS/broker/{k}" for k in MOSQUITTO_SYSTREE if k not in NOT_COUNTED]
    assert list(tree) == expected
    assert all(type(v) is int for v in tree.values())
    client = paho(api.port, unique("systree"))
    client.connect()
    client.subscribe("a/#", 1)
    client.publish("a/b", b"x", 1, retain=True)
    after = get(api.http_port, "/api/v1/systree").json()
    assert after["$SYS/broker/clients/connected"] == tree["$SYS/broker/clients/connected"] + 1
    assert after["$SYS/broker/subscriptions/count"] == tree["$SYS/broker/subscriptions/count"] + 1
    assert after["$SYS/broker/publish/messages/received"] == tree["$SYS/broker/publish/messages/received"] + 1
    assert after["$SYS/broker/retained messages/count"] == tree["$SYS/broker/retained messages/count"] + 1


def test_listeners_as_mosquitto_describes_them(api) -> None:
    listeners = get(api.http_port, "/api/v1/listeners").json()
    assert list(listeners) == ["listeners"]
    for listener in listeners["listeners"]:
        assert {k: type(v) for k, v in listener.items()} == LISTENER_FIELDS
    described = {(x["port"], x["protocol"], x["tls"], x["mtls"], x["allow_anonymous"])
                 for x in listeners["listeners"]}
    assert described == {(api.port, "mqtt", False, False, True),
                         (api.http_port, "httpapi", False, False, True),
                         (api.sn_port, "mqtt-sn", False, False, True),
                         (api.coap_port, "coap", False, False, True)}
    assert {x["protocol"] for x in listeners["listeners"]} - {"coap"} <= MOSQUITTO_PROTOCOLS


def test_version_is_bare_text(api) -> None:
    answer = get(api.http_port, "/api/v1/version")
    assert answer.body == __version__.encode()
    assert get(api.http_port, "/api/v1/nothing").status == 404
    assert get(api.http_port, "/api/v2/systree").status == 404


def test_http_dir_serves_its_files_and_nothing_outside(gateway, tmp_path) -> None:
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_text("<p>plant dashboard</p>")
    (www / "data.json").write_text('{"a": 1}')
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", www / "link.txt")
    http = free_port()
    gateway(f"listener {http}", "protocol http_api", "listener_allow_anonymous true",
            f"http_dir {www}")
    assert get(http, "/").body == b"<p>plant dashboard</p>"
    assert get(http, "/data.json").body == b'{"a": 1}'
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/link.txt", "/sub/", "/sub", "/missing"):
        assert get(http, path).status == 404, path
    # what http_dir lacks comes from the built-in status page
    assert get(http, "/status.js").status == 200


def test_resolve_stays_inside_the_directory(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "index.html").write_text("i")
    (tmp_path / "d" / "f").write_text("f")
    (tmp_path / "x").write_text("x")
    root = str(tmp_path / "d")
    assert resolve(root, "/") == str(tmp_path / "d" / "index.html")
    assert resolve(root, "/f") == str(tmp_path / "d" / "f")
    assert resolve(root, "/../x") is None
    assert resolve(root, "/f/") is None
    assert resolve(root, "/\x00") is None
