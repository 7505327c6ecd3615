"""OSCORE (RFC 8613) with aiocoap's client against the gateway: protected publishes,
reads and observations under the context's username, and what a wrong context gets."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Iterator

import pytest
from aiocoap.numbers.codes import (
    BAD_OPTION, BAD_REQUEST, CHANGED, CONTENT, CREATED, FORBIDDEN, GET, NOT_FOUND, PUT,
    UNAUTHORIZED,
)

from aiocoap.oscore import NotAProtectedMessage

from tests.coap import rawcoap
from tests.coap.helpers import HOST, AioCoAP, MQTTClient, unique
from tests.conftest import free_port, free_udp_port
from tests.security.helpers import run_gateway_expecting_failure

SALT = "9e7ca92223786340"
SECRET = "0102030405060708090a0b0c0d0e0f10"
ACL = """topic read sensors/#
topic readwrite public/#

user sensor-a
topic readwrite sensors/a/#

user sensor-b
topic readwrite sensors/b/#
"""


def write_context(directory: Path, sender: str, recipient: str, secret: str = SECRET) -> str:
    directory.mkdir(parents=True)
    (directory / "settings.json").write_text(json.dumps({
        "sender-id_hex": sender, "recipient-id_hex": recipient, "secret_hex": secret,
        "salt_hex": SALT}))
    return str(directory) + "/"


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("oscore")
    server = d / "server"
    for name, client_id in (("a", "0a"), ("b", "0b")):
        write_context(server / name, "01", client_id)
    (server / "oscore.json").write_text(json.dumps(
        {":sensor-a": {"oscore": {"basedir": "a/"}},
         ":sensor-b": {"oscore": {"contextfile": "b/"}}}))  # aiocoap's older name
    (d / "acl").write_text(ACL)
    return {
        "file": str(server / "oscore.json"), "acl": str(d / "acl"),
        "a": write_context(d / "client-a", "0a", "01"),
        "b": write_context(d / "client-b", "0b", "01"),
        "stranger": write_context(d / "client-c", "0c", "01"),
        "forger": write_context(d / "client-forger", "0a", "01", "ff" * 16),
    }


@pytest.fixture(scope="module")
def coap_config(contexts: dict[str, str]) -> list[str]:
    return [f"oscore_file {contexts['file']}", f"acl_file {contexts['acl']}"]


def oscore_client(port: int, basedir: str) -> AioCoAP:
    """aiocoap's client with its OSCORE transport and one context for the gateway."""
    return AioCoAP(["oscore", "udp6"], {f"coap://{HOST}:{port}/*": {"oscore": {"basedir": basedir}}})


@pytest.fixture(scope="module")
def clients(shared_gateway, coap_port: int, contexts: dict[str, str]) -> Iterator[dict[str, AioCoAP]]:
    made = {name: oscore_client(coap_port, contexts[name]) for name in ("a", "b", "stranger", "forger")}
    yield made
    for client in made.values():
        client.close()


def uri(port: int, path: str, query: str = "") -> str:
    return f"coap://{HOST}:{port}{path}" + (f"?{query}" if query else "")


def test_protected_publish_under_the_context_username(shared_gateway, coap_port, clients) -> None:
    mqtt = MQTTClient(shared_gateway.port)
    mqtt.subscribe("sensors/#")
    topic = unique("sensors/a/")
    response = clients["a"].request(PUT, uri(coap_port, f"/ps/{topic}"), b"21.5")
    assert response.code == CHANGED
    got = mqtt.get()
    assert (got.topic, got.payload) == (topic, b"21.5")
    # sensor-a's ACL, whatever the query says.
    response = clients["a"].request(PUT, uri(coap_port, "/ps/sensors/b/t", "username=sensor-b"), b"x")
    assert response.code == FORBIDDEN
    assert clients["b"].request(PUT, uri(coap_port, "/ps/sensors/b/t"), b"b").code == CHANGED
    assert mqtt.get().payload == b"b"
    mqtt.close()


def test_protected_read_and_observe(shared_gateway, coap_port, clients) -> None:
    topic = unique("sensors/a/obs")
    a = clients["a"]
    assert a.request(PUT, uri(coap_port, f"/ps/{topic}", "retain=true"), b"v0").code == CREATED
    assert a.request(GET, uri(coap_port, f"/ps/{topic}")).payload == b"v0"
    obs = a.observe(uri(coap_port, f"/ps/{topic}"))
    assert (obs.first.code, obs.first.payload) == (CONTENT, b"v0")
    a.request(PUT, uri(coap_port, f"/ps/{topic}"), b"v1")
    mqtt = MQTTClient(shared_gateway.port)
    mqtt.publish(f"{topic}", b"denied")  # anonymous MQTT may only read sensors/#
    mqtt.close()
    clients["b"].request(PUT, uri(coap_port, f"/ps/{topic}"), b"b's write is refused")
    assert obs.next().payload == b"v1"
    obs.assert_quiet()
    obs.cancel()
    # sensor-b may not read sensor-a's topics.
    assert clients["b"].request(GET, uri(coap_port, f"/ps/{topic}")).code == FORBIDDEN


def test_unprotected_requests_are_anonymous(coap_port, aio) -> None:
    assert aio.request(PUT, uri(coap_port, "/ps/sensors/a/t"), b"x").code == FORBIDDEN
    assert aio.request(PUT, uri(coap_port, unique("/ps/public/"))).code == CHANGED


def unprotected_answer(client: AioCoAP, code: object, url: str, payload: bytes = b"") -> object:
    """The gateway's code for a request it could not unprotect: the answer is in the
    clear, which aiocoap's client refuses as a response, keeping it on the error."""
    with pytest.raises(NotAProtectedMessage) as refused:
        client.request(code, url, payload)
    return refused.value.plain_message.code


def test_an_unknown_context_is_unauthorized(coap_port, clients) -> None:
    assert unprotected_answer(clients["stranger"], PUT, uri(coap_port, "/ps/public/x")) == UNAUTHORIZED


def test_a_wrong_key_does_not_decrypt(coap_port, clients) -> None:
    url = uri(coap_port, "/ps/sensors/a/t")
    assert unprotected_answer(clients["forger"], PUT, url, b"forged") == BAD_REQUEST


@pytest.mark.parametrize("value", [b"", b"\xff", b"\x09\x01", b"\x1f" + bytes(40), b"\x08\x00"])
def test_garbage_oscore_options(shared_gateway, coap_port, clients, value: bytes) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    options = [(9, value)] if value else [(9, b"")]
    datagram = rawcoap.message(rawcoap.CON, rawcoap.POST, 0x4242, b"tk", options, b"\x00\x01\x02")
    sock.sendto(datagram, (HOST, coap_port))
    answer, _ = sock.recvfrom(2048)
    sock.close()
    assert answer[1] in (BAD_OPTION, BAD_REQUEST, UNAUTHORIZED)
    # The gateway goes on, protected requests included.
    assert clients["a"].request(GET, uri(coap_port, "/ps/sensors/a/none")).code == NOT_FOUND
    assert "Traceback" not in shared_gateway.stderr


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read"),
    ("{not json", "not valid JSON"),
    ('{":x": {"dtls": {"psk": {"ascii": "k"}}}}', "is not {\"oscore\""),
    ('{":x": {"oscore": {"basedir": "missing/"}}}', "cannot load an OSCORE context"),
])
def test_a_bad_oscore_file_stops_startup_at_its_line(tmp_path: Path, content: str | None,
                                                      reason: str) -> None:
    oscore = tmp_path / "oscore.json"
    if content is not None:
        oscore.write_text(content)
    conf = (f"listener {free_port()} {HOST}\nallow_anonymous true\n"
            f"listener {free_udp_port()} {HOST}\nprotocol coap\noscore_file {oscore}\n")
    code, output = run_gateway_expecting_failure(tmp_path, conf)
    assert code == 1
    assert "bad.conf:5: oscore_file: " in output and str(oscore) in output and reason in output
