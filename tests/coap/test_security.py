"""How CoAP clients authenticate (EMQX's connectionless query and connection mode) and
how the ACL file applies to them, against a gateway with a password file and an ACL."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiocoap.numbers.codes import (
    BAD_REQUEST,
    CHANGED,
    CONTENT,
    CREATED,
    DELETE,
    DELETED,
    FORBIDDEN,
    GET,
    POST,
    PUT,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
)

from gateway.passwd import set_password
from tests.coap.helpers import HOST, coap_client, coap_lines, unique
from tests.conftest import free_udp_port

DEV = "clientid=dev1&username=dev&password=secret"
READER = "username=reader&password=pw"

ACL = """\
user dev
topic readwrite devices/#
user reader
topic read devices/#
"""


@pytest.fixture(scope="module")
def security_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("coap-security")
    passwords, acl = d / "passwords", d / "acl"
    set_password(str(passwords), "dev", "secret", create=True)
    set_password(str(passwords), "reader", "pw", create=False)
    acl.write_text(ACL)
    return passwords, acl


@pytest.fixture(scope="module")
def coap_config(security_files: tuple[Path, Path]) -> list[str]:
    passwords, acl = security_files
    return ["allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}"]


def uri(port: int, path: str, query: str = "") -> str:
    return f"coap://{HOST}:{port}{path}" + (f"?{query}" if query else "")


def test_query_credentials_publish(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("devices/")
    sub = mqtt_client(shared_gateway.port, username="reader", password="pw")
    sub.subscribe(topic)
    assert aio.request(PUT, uri(coap_port, f"/ps/{topic}", DEV), b"on").code == CHANGED
    assert sub.get().payload == b"on"


@pytest.mark.parametrize("query", ["", "username=dev&password=wrong"])
def test_authentication_failure_is_4_01(coap_port, aio, query):
    response = aio.request(PUT, uri(coap_port, "/ps/devices/x", query), b"x")
    assert response.code == UNAUTHORIZED


def test_acl_denial_is_4_03(coap_port, aio):
    assert aio.request(PUT, uri(coap_port, "/ps/elsewhere/x", DEV), b"x").code == FORBIDDEN
    assert aio.request(PUT, uri(coap_port, "/ps/devices/x", READER), b"x").code == FORBIDDEN
    response = aio.request(GET, uri(coap_port, "/ps/elsewhere/%23", DEV), observe=0)
    assert response.code == FORBIDDEN
    assert aio.request(DELETE, uri(coap_port, "/ps/devices/x", READER)).code == FORBIDDEN


def test_acl_denials_are_counted_and_logged(shared_gateway, coap_port, aio):
    topic = unique("elsewhere/")
    assert aio.request(PUT, uri(coap_port, f"/ps/{topic}", DEV), b"x").code == FORBIDDEN
    shared_gateway.wait_for_log(f"denied PUBLISH to {topic} for dev1 (username dev, coap from")
    response = aio.request(GET, uri(coap_port, f"/ps/{topic}/%2B", DEV), observe=0)
    assert response.code == FORBIDDEN
    shared_gateway.wait_for_log(f"denied SUBSCRIBE to {topic}/+ for dev1 (username dev, coap")


def test_a_refused_observation_does_not_take_over_its_client_id(shared_gateway, coap_port, aio,
                                                                mqtt_client):
    client_id = unique("busy")
    topic = unique("devices/")
    sub = mqtt_client(shared_gateway.port, client_id=client_id, username="reader", password="pw")
    sub.subscribe(topic)
    query = f"clientid={client_id}&username=dev&password=secret"
    assert aio.request(GET, uri(coap_port, "/ps/elsewhere/%23", query), observe=0).code == FORBIDDEN
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", DEV), b"still connected")
    assert sub.get().payload == b"still connected"


def test_reader_reads_and_observes(shared_gateway, coap_port, aio, mqtt_client):
    topic = unique("devices/")
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", DEV + "&retain=true"), b"state")
    response = aio.request(GET, uri(coap_port, f"/ps/{topic}", READER))
    assert (response.code, response.payload) == (CONTENT, b"state")
    obs = aio.observe(uri(coap_port, f"/ps/{topic}", READER))
    assert obs.first.payload == b"state"
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", DEV), b"next")
    assert obs.next().payload == b"next"
    obs.cancel()


def test_libcoap_with_query_credentials(coap_port):
    done = coap_client("-m", "put", "-e", "v", uri(coap_port, "/ps/devices/libcoap", DEV))
    assert done.returncode == 0 and done.stdout == b"", (done.stdout, done.stderr)


def test_connection_mode(shared_gateway, coap_port, aio, mqtt_client):
    client_id = unique("conn")
    opened = aio.request(POST, uri(coap_port, "/mqtt/connection",
                                   f"clientid={client_id}&username=dev&password=secret"))
    assert opened.code == CREATED
    token = opened.payload.decode()
    assert token.isdigit()  # EMQX's token: a 32-bit number in decimal
    auth = f"clientid={client_id}&token={token}"

    topic = unique("devices/conn")
    sub = mqtt_client(shared_gateway.port, username="reader", password="pw")
    sub.subscribe(topic)
    assert aio.request(POST, uri(coap_port, f"/ps/{topic}", auth), b"hi").code == CHANGED
    assert sub.get().payload == b"hi"
    wrong = f"clientid={client_id}&token={int(token) ^ 1}"
    assert aio.request(POST, uri(coap_port, f"/ps/{topic}", wrong), b"x").code == UNAUTHORIZED
    # the token carries the user: the ACL of "dev" applies
    assert aio.request(POST, uri(coap_port, "/ps/elsewhere", auth), b"x").code == FORBIDDEN

    obs = aio.observe(uri(coap_port, f"/ps/{topic}", auth))
    aio.request(PUT, uri(coap_port, f"/ps/{topic}", auth), b"notified")
    assert obs.next().payload == b"notified"

    assert aio.request(PUT, uri(coap_port, "/mqtt/connection", auth)).code == CHANGED  # heartbeat
    assert aio.request(DELETE, uri(coap_port, "/mqtt/connection", auth)).code == DELETED
    # closing the connection ends its observations with a final error response
    assert obs.next().code == SERVICE_UNAVAILABLE
    assert aio.request(POST, uri(coap_port, f"/ps/{topic}", auth), b"x").code == UNAUTHORIZED


def test_connection_with_bad_password_is_refused(coap_port, aio):
    response = aio.request(POST, uri(coap_port, "/mqtt/connection",
                                     "clientid=c9&username=dev&password=nope"))
    assert response.code == UNAUTHORIZED


def test_connection_expires_without_heartbeat(gateway, aio):
    port = free_udp_port()
    gw = gateway(*coap_lines(port, "coap_heartbeat 1"))
    opened = aio.request(POST, uri(port, "/mqtt/connection", "clientid=hb"))
    auth = f"clientid=hb&token={opened.payload.decode()}"
    assert aio.request(PUT, uri(port, "/ps/hb", auth), b"x").code == CHANGED
    gw.wait_for_log("CoAP connection hb expired")  # nothing sent for a heartbeat interval
    assert aio.request(PUT, uri(port, "/ps/hb", auth), b"x").code == UNAUTHORIZED


def test_connection_required(gateway, aio):
    port = free_udp_port()
    gateway(*coap_lines(port, "coap_connection_required true"))
    assert aio.request(PUT, uri(port, "/ps/t", "clientid=a"), b"x").code == UNAUTHORIZED
    opened = aio.request(POST, uri(port, "/mqtt/connection", "clientid=a"))
    auth = f"clientid=a&token={opened.payload.decode()}"
    assert aio.request(PUT, uri(port, "/ps/t", auth), b"x").code == CHANGED


def test_max_connections_bounds_stateful_clients(gateway, aio):
    port = free_udp_port()
    gateway(*coap_lines(port, "max_connections 1"))
    first = aio.request(POST, uri(port, "/mqtt/connection", "clientid=one"))
    assert first.code == CREATED
    second = aio.request(POST, uri(port, "/mqtt/connection", "clientid=two"))
    assert second.code == SERVICE_UNAVAILABLE and second.opt.max_age
    # stateless requests are not clients
    assert aio.request(PUT, uri(port, "/ps/t"), b"x").code == CHANGED


def test_failing_authentication_backend_is_5_03(gateway, aio, tmp_path):
    plugin = tmp_path / "broken_auth.py"
    plugin.write_text("class Broken:\n"
                      "    def authenticate(self, client, password):\n"
                      "        raise RuntimeError('backend down')\n"
                      "def make_plugin(options):\n"
                      "    return Broken()\n")
    port = free_udp_port()
    gw = gateway(*coap_lines(port, f"plugin {plugin}"))
    response = aio.request(PUT, uri(port, "/ps/t", "username=u&password=p"), b"x")
    assert response.code == SERVICE_UNAVAILABLE and response.opt.max_age
    opened = aio.request(POST, uri(port, "/mqtt/connection", "clientid=c&username=u&password=p"))
    assert opened.code == SERVICE_UNAVAILABLE
    assert gw.stop() == 0  # the plugin's traceback is in the log, as it should be
    gw.wait_for_log("backend down")


def test_retain_not_available_is_4_00(gateway, aio):
    port = free_udp_port()
    gateway(*coap_lines(port, "retain_available false"))
    assert aio.request(PUT, uri(port, "/ps/noretain", "retain=true"), b"x").code == BAD_REQUEST
    assert aio.request(PUT, uri(port, "/ps/noretain"), b"x").code == CHANGED


def test_reload_revoking_a_password_ends_observations_with_4_01(gateway, aio, tmp_path):
    passwords = tmp_path / "passwords"
    set_password(str(passwords), "dev", "secret", create=True)
    port = free_udp_port()
    gw = gateway(*coap_lines(port, "allow_anonymous false", f"password_file {passwords}"))
    obs = aio.observe(uri(port, "/ps/revoked", "clientid=rv&" + "username=dev&password=secret"))
    set_password(str(passwords), "dev", "changed", create=False)
    gw.reload("configuration reloaded")
    ended = obs.next()
    assert (ended.code, ended.payload) == (UNAUTHORIZED, b"not authorized")
