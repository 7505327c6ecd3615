"""MQTT over WebSockets (``protocol websockets``): paho-mqtt's websocket transport and
MQTT.js under node, over ws:// and wss://, meeting TCP clients on the same hub; raw
handshakes and frames for what those clients never send."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests import wire
from tests.conftest import REPO, free_port, launch, serving
from tests.e2e.clients import PahoClient, unique
from tests.e2e.wsclient import BINARY, CLOSE, TEXT, RawWebSocket
from tests.security.pki import make_pki

JS = REPO / "tests" / "js"
NODE_TIMEOUT = 60.0      # only to turn a hang into a failure
ORIGIN = "https://app.example:8443"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gw(tmp_path_factory, pki):
    ws, wss, strict, tcp, single = (free_port() for _ in range(5))
    lines = [
        "allow_anonymous true",
        f"listener {ws} 127.0.0.1", "protocol websockets",
        f"listener {wss} 127.0.0.1", "protocol websockets",
        f"certfile {pki['server']}", f"keyfile {pki['server_key']}",
        f"listener {strict} 127.0.0.1", "protocol websockets",
        f"websockets_origin {ORIGIN}", "websockets_origin http://localhost:3000",
        f"listener {tcp} 127.0.0.1",
        f"listener {single} 127.0.0.1", "protocol websockets", "max_connections 1",
    ]
    directory = tmp_path_factory.mktemp("ws")
    for gateway in serving(launch(directory, lines, listener=False, args=["-v"])):
        gateway.ws, gateway.wss, gateway.strict, gateway.tcp, gateway.single = gateway.ports
        yield gateway


@pytest.fixture
def clients():
    made: list[PahoClient] = []

    def make(port: int, **kwargs) -> PahoClient:
        client = PahoClient(port, unique("ws"), **kwargs)
        made.append(client)
        client.connect()
        return client

    yield make
    for client in made:
        client.close()


# --- paho-mqtt -----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [4, 5])
def test_paho_over_ws_meets_a_tcp_client(gw, clients, protocol):
    topic = unique("ws/t")
    over_ws = clients(gw.ws, transport="websockets", protocol=protocol)
    over_tcp = clients(gw.tcp)
    over_ws.subscribe(f"{topic}/#", qos=1)
    over_tcp.subscribe(f"{topic}/#", qos=1)
    over_tcp.publish(f"{topic}/from-tcp", b"hello", qos=1)
    over_ws.publish(f"{topic}/from-ws", b"bonjour", qos=1)
    assert [(m.topic, m.payload) for m in over_ws.wait_for(f"{topic}/from-ws")] == [
        (f"{topic}/from-tcp", b"hello"), (f"{topic}/from-ws", b"bonjour")]
    assert [(m.topic, m.payload) for m in over_tcp.wait_for(f"{topic}/from-ws")] == [
        (f"{topic}/from-tcp", b"hello"), (f"{topic}/from-ws", b"bonjour")]


def test_paho_large_messages_both_ways(gw, clients):
    # Larger than any one WebSocket frame read and than the pre-CONNECT limit.
    topic = unique("ws/big")
    client = clients(gw.ws, transport="websockets")
    client.subscribe(topic, qos=2)
    payload = bytes(range(256)) * 2000
    client.publish(topic, payload, qos=2)
    assert client.next_message().payload == payload


def test_paho_over_wss(gw, clients, pki):
    topic = unique("wss/t")
    client = clients(gw.wss, transport="websockets", ca=pki["ca"])
    client.subscribe(topic, qos=1)
    client.publish(topic, b"secret", qos=1)
    assert client.next_message().payload == b"secret"


def test_wss_client_certificate_names_the_user(tmp_path, pki):
    # use_identity_as_username over wss: the ACL lets device-42 use its own topics only.
    port = free_port()
    (tmp_path / "acl").write_text("user device-42\ntopic readwrite devices/device-42/#\n")
    lines = [f"listener {port} 127.0.0.1", "protocol websockets",
             f"certfile {pki['server']}", f"keyfile {pki['server_key']}", f"cafile {pki['ca']}",
             "require_certificate true", "use_identity_as_username true",
             f"acl_file {tmp_path / 'acl'}"]
    for _ in serving(launch(tmp_path / "gw", lines, listener=False)):
        client = PahoClient(port, unique("cert"), transport="websockets", ca=pki["ca"],
                            cert=(pki["client"], pki["client_key"]))
        try:
            client.connect()
            client.subscribe("#", qos=1)
            client.publish("elsewhere/x", b"denied", qos=1)
            client.publish("devices/device-42/x", b"allowed", qos=1)
            assert [(m.topic, m.payload) for m in client.wait_for("devices/device-42/x")] == [
                ("devices/device-42/x", b"allowed")]
        finally:
            client.close()


# --- MQTT.js under node --------------------------------------------------------------


def run_mqttjs(url: str, topic: str, ca: str = "", version: int | None = None) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is missing: see README, Run the tests"
    assert (JS / "node_modules" / "mqtt").is_dir(), "MQTT.js is missing: npm ci --prefix tests/js"
    args = [node, str(JS / "pubsub.js"), url, topic, ca] + ([str(version)] if version else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=NODE_TIMEOUT, cwd=JS)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "done", done.stdout
    return sorted((json.loads(line) for line in lines[:-1]), key=lambda m: m["qos"])


def expected(topic: str) -> list[dict]:
    return [{"topic": f"{topic}/{q}", "payload": f"hello {q}", "qos": q} for q in (0, 1, 2)]


@pytest.mark.parametrize("version", [3, 4, 5])
def test_mqttjs_over_ws(gw, version):
    topic = unique("js/t")
    assert run_mqttjs(f"ws://127.0.0.1:{gw.ws}/mqtt", topic, version=version) == expected(topic)
    gw.wait_for_log(f"(level {version},")


def test_mqttjs_over_wss(gw, pki):
    topic = unique("js/tls")
    got = run_mqttjs(f"wss://localhost:{gw.wss}/mqtt", topic, ca=pki["ca"])
    assert got == expected(topic)


def test_mqttjs_message_reaches_a_tcp_subscriber(gw, clients):
    topic = unique("js/cross")
    over_tcp = clients(gw.tcp)
    over_tcp.subscribe(f"{topic}/#", qos=2)
    run_mqttjs(f"ws://127.0.0.1:{gw.ws}", topic)
    assert sorted(m.topic for m in over_tcp.wait_for(f"{topic}/2")) == [
        f"{topic}/{q}" for q in (0, 1, 2)]


# --- handshakes ----------------------------------------------------------------------


@pytest.mark.parametrize("offer, chosen", [
    ("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"), ("binary, mqtt", "mqtt"),
    ("mqttv3.1, mqtt", "mqttv3.1"),
])
def test_mqtt_subprotocols_are_accepted(gw, offer, chosen):
    ws = RawWebSocket(gw.ws)
    status, headers = ws.handshake(offer)
    assert (status, headers["sec-websocket-protocol"]) == (101, chosen)
    ws.close()


def test_no_compression_is_negotiated(gw):
    ws = RawWebSocket(gw.ws)
    status, headers = ws.handshake(extra="Sec-WebSocket-Extensions: permessage-deflate; "
                                         "client_max_window_bits")
    assert status == 101 and "sec-websocket-extensions" not in headers
    ws.close()


@pytest.mark.parametrize("offer", [None, "binary", "mqttv5", "wamp.2.json"])
def test_other_subprotocols_are_refused(gw, offer):
    ws = RawWebSocket(gw.ws)
    status, _ = ws.handshake(offer)
    assert status == 406
    assert ws.ends() == []
    ws.close()


def test_plain_http_gets_no_page(gw):
    ws = RawWebSocket(gw.ws)
    ws.sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, _ = ws.read_response()
    assert status >= 400
    ws.close()


@pytest.mark.parametrize("origin, status", [
    (ORIGIN, 101), ("http://localhost:3000", 101), (None, 101),
    ("https://app.example", 403), ("https://evil.example:8443", 403), ("null", 403),
])
def test_websockets_origin(gw, origin, status):
    ws = RawWebSocket(gw.strict)
    assert ws.handshake(origin=origin)[0] == status
    ws.close()


@pytest.mark.parametrize("origin", ["https://anywhere.example", "null"])
def test_any_origin_without_websockets_origin(gw, origin):
    ws = RawWebSocket(gw.ws)
    assert ws.handshake(origin=origin)[0] == 101
    ws.close()


@pytest.mark.parametrize("cookie, status", [(3000, 101), (5000, 431)])
def test_websockets_headers_size(gw, cookie, status):
    # The default bound is Mosquitto 2.1's: 4096 bytes of request headers.
    ws = RawWebSocket(gw.ws)
    assert ws.handshake(extra="Cookie: " + "c" * cookie)[0] == status
    ws.close()


def test_refused_handshakes_are_logged_with_the_reason(gateway):
    # A gateway of its own: the shared one may be summarising refusals by now.
    gw = gateway("protocol websockets")
    ws = RawWebSocket(gw.port)
    ws.handshake("binary")
    ws.close()
    gw.wait_for_log("refused WebSocket connection from 127.0.0.1:")
    gw.wait_for_log("no MQTT subprotocol (mqtt or mqttv3.1)")


# --- frames --------------------------------------------------------------------------


def open_mqtt(port: int, client_id: str) -> RawWebSocket:
    ws = RawWebSocket(port)
    assert ws.handshake()[0] == 101
    return ws


def test_packets_split_and_joined_across_messages(gw):
    ws = open_mqtt(gw.ws, unique("raw"))
    raw = wire.connect(unique("raw"), keepalive=30)
    ws.send(raw[:5])
    ws.send(raw[5:] + wire.pingreq()[:1])          # CONNECT's end with half a PINGREQ
    ws.send(wire.pingreq()[1:] + wire.pingreq())   # its other half and a second one
    assert ws.receive() == (BINARY, wire.connack(0))
    assert ws.receive() == (BINARY, wire.pingresp())
    assert ws.receive() == (BINARY, wire.pingresp())
    ws.send(wire.disconnect())
    assert ws.ends() == [CLOSE]
    ws.close()


def test_fragmented_message(gw):
    ws = open_mqtt(gw.ws, unique("raw"))
    raw = wire.connect(unique("raw"))
    ws.send(raw[:3], fin=False)
    ws.send(raw[3:], opcode=0x0)   # continuation
    assert ws.receive() == (BINARY, wire.connack(0))
    ws.close()


def test_text_message_closes_the_connection(gw):
    ws = open_mqtt(gw.ws, unique("raw"))
    ws.send(wire.connect(unique("raw")), opcode=TEXT)
    assert BINARY not in ws.ends()
    ws.close()


def test_malformed_mqtt_closes_the_websocket(gw):
    ws = open_mqtt(gw.ws, unique("raw"))
    ws.send(wire.pingreq())        # not a CONNECT
    assert ws.ends() == [CLOSE]
    ws.close()


def test_max_connections_counts_websockets_from_the_first_byte(gw):
    first = RawWebSocket(gw.single)      # connected, handshake not even started
    second = RawWebSocket(gw.single)
    assert second.ends() == []           # closed at once
    second.close()
    assert first.handshake()[0] == 101
    first.close()


# --- twistd --------------------------------------------------------------------------


def test_twistd_serves_websockets(tmp_path):
    port = free_port()
    lines = [f"listener {port} 127.0.0.1", "protocol websockets", "allow_anonymous true"]
    for gateway in serving(launch(tmp_path, lines, twistd=True, listener=False)):
        topic = unique("twistd/ws")
        client = PahoClient(port, unique("twistd"), transport="websockets")
        try:
            client.connect()
            client.subscribe(topic, qos=1)
            client.publish(topic, b"through twistd", qos=1)
            assert client.next_message().payload == b"through twistd"
        finally:
            client.close()
        gateway.wait_for_log("listening for websockets on 127.0.0.1:")
