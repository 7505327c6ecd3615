"""CoAP over DTLS (coaps://) with libcoap's clients, both TLS libraries of Debian's
``libcoap3-bin``, against one gateway with a PSK listener and a certificate listener."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.coap.helpers import HOST, TIMEOUT, MQTTClient, unique
from tests.conftest import free_udp_port
from tests.dtls.client import DTLSClient
from tests.security.pki import make_pki

CLIENTS = {name: shutil.which(f"coap-client-{name}") or f"/usr/bin/coap-client-{name}"
           for name in ("openssl", "gnutls")}
IDENTITY, KEY = "sensor-1", "secretPSK"  # libcoap's -k takes the key as raw bytes
ACL = """topic readwrite #

user sensor-1
topic readwrite sensors/sensor-1/#

user device-42
topic readwrite sensors/device-42/#
"""
PSK = ["-u", IDENTITY, "-k", KEY]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"psk": free_udp_port(), "cert": free_udp_port()}


@pytest.fixture(scope="module")
def shared_gateway_config(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, str],
                          ports: dict[str, int]) -> list[str]:
    d = tmp_path_factory.mktemp("coaps")
    (d / "psk").write_text(f"{IDENTITY}:{KEY.encode().hex()}\nsensor-2:{b'other'.hex()}\n")
    (d / "acl").write_text(ACL)
    return [
        f"psk_file {d / 'psk'}", f"acl_file {d / 'acl'}",
        f"listener {ports['psk']} {HOST}", "protocol coap", "psk_hint mqttgateway",
        "use_identity_as_username true",
        f"listener {ports['cert']} {HOST}", "protocol coap", f"certfile {pki['server']}",
        f"keyfile {pki['server_key']}", f"cafile {pki['ca']}", "require_certificate true",
        "use_identity_as_username true",
    ]


@pytest.fixture
def subscriber(shared_gateway) -> Iterator[MQTTClient]:
    client = MQTTClient(shared_gateway.port)
    client.subscribe("sensors/#")
    yield client
    client.close()


def coaps(client: str, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CLIENTS[client], *args], capture_output=True, timeout=timeout)


def no_session(done: subprocess.CompletedProcess[bytes]) -> bool:
    """libcoap's words when its DTLS handshake failed: the request never went out."""
    return b"cannot send CoAP pdu" in done.stdout + done.stderr


def uri(port: int, path: str, query: str = "") -> str:
    return f"coaps://{HOST}:{port}{path}" + (f"?{query}" if query else "")


@pytest.mark.parametrize("client", CLIENTS)
def test_psk_put_reaches_an_mqtt_subscriber(shared_gateway, ports, subscriber, client) -> None:
    topic = f"sensors/sensor-1/{unique(client)}"
    done = coaps(client, "-m", "put", "-e", "21.5", *PSK, uri(ports["psk"], f"/ps/{topic}"))
    assert done.returncode == 0, done.stderr
    got = subscriber.get()
    assert (got.topic, got.payload) == (topic, b"21.5")


@pytest.mark.parametrize("client", CLIENTS)
def test_psk_get_and_observe(shared_gateway, ports, tmp_path: Path, client) -> None:
    topic = f"sensors/sensor-1/{unique('obs')}"
    done = coaps(client, "-m", "put", "-e", "v0", *PSK, uri(ports["psk"], f"/ps/{topic}", "retain=true"))
    assert done.returncode == 0, done.stderr
    got = coaps(client, "-m", "get", *PSK, uri(ports["psk"], f"/ps/{topic}"))
    assert got.stdout.rstrip(b"\n") == b"v0"
    out = tmp_path / "observer.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([CLIENTS[client], "-s", "3", "-m", "get", *PSK,
                                 uri(ports["psk"], f"/ps/{topic}")], stdout=f)
    try:
        deadline = time.monotonic() + TIMEOUT
        while b"v0" not in out.read_bytes():  # registered: the retained value came back
            assert time.monotonic() < deadline, "coap-client did not register"
            time.sleep(0.05)
        pub = MQTTClient(shared_gateway.port)
        pub.publish(topic, b"v1")
        pub.publish(topic, b"v2")
        pub.close()
        proc.wait(TIMEOUT)
    finally:
        proc.kill()
    assert out.read_bytes().rstrip(b"\n") == b"v0v1v2"
    done = coaps(client, "-m", "delete", *PSK, uri(ports["psk"], f"/ps/{topic}"))
    assert done.returncode == 0  # no retained message left for the other tests' subscribers


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("credentials", [[IDENTITY, "wrongKey!"], ["stranger", KEY]],
                         ids=["wrong-key", "unknown-identity"])
def test_a_wrong_psk_is_refused(shared_gateway, ports, subscriber, client, credentials) -> None:
    topic = f"sensors/sensor-1/{unique('refused')}"
    done = coaps(client, "-B", "2", "-m", "put", "-e", "x", "-u", credentials[0], "-k", credentials[1],
                 uri(ports["psk"], f"/ps/{topic}"))
    assert no_session(done)
    subscriber.assert_quiet(0.5)


@pytest.mark.parametrize("client", CLIENTS)
def test_the_acl_applies_to_the_psk_identity(shared_gateway, ports, subscriber, client) -> None:
    done = coaps(client, "-m", "put", "-e", "x", *PSK, uri(ports["psk"], "/ps/sensors/device-42/t"))
    assert b"4.03" in done.stdout + done.stderr
    # Credentials in the query do not change who the client is.
    done = coaps(client, "-m", "put", "-e", "x", *PSK,
                 uri(ports["psk"], "/ps/sensors/device-42/t", "username=device-42&password=x"))
    assert b"4.03" in done.stdout + done.stderr
    subscriber.assert_quiet(0.5)


@pytest.mark.parametrize("client", CLIENTS)
def test_certificates(shared_gateway, ports, subscriber, pki, client) -> None:
    topic = f"sensors/device-42/{unique(client)}"
    cert = ["-c", pki["client"], "-j", pki["client_key"], "-C", pki["ca"]]
    done = coaps(client, "-m", "put", "-e", "cert", *cert, uri(ports["cert"], f"/ps/{topic}"))
    assert done.returncode == 0, done.stderr
    got = subscriber.get()
    assert (got.topic, got.payload) == (topic, b"cert")
    done = coaps(client, "-m", "put", "-e", "x", *cert, uri(ports["cert"], "/ps/sensors/sensor-1/t"))
    assert b"4.03" in done.stdout + done.stderr


@pytest.mark.parametrize("client", CLIENTS)
def test_an_unknown_ca_is_refused_both_ways(shared_gateway, ports, subscriber, pki, client) -> None:
    foreign = ["-c", pki["foreign"], "-j", pki["foreign_key"], "-C", pki["ca"]]
    done = coaps(client, "-B", "2", "-m", "put", "-e", "x", *foreign,
                 uri(ports["cert"], "/ps/sensors/intruder/t"))
    assert no_session(done)
    # The client does not trust a server whose CA it does not know either.
    mistrust = ["-c", pki["client"], "-j", pki["client_key"], "-C", pki["other_ca"]]
    done = coaps(client, "-B", "2", "-m", "put", "-e", "x", *mistrust,
                 uri(ports["cert"], "/ps/sensors/device-42/t"))
    assert no_session(done)
    subscriber.assert_quiet(0.5)


def test_connection_mode_over_dtls(shared_gateway, ports, subscriber) -> None:
    client_id = unique("conn")
    opened = coaps("openssl", "-m", "post", *PSK, uri(ports["psk"], "/mqtt/connection", f"clientid={client_id}"))
    token = opened.stdout.strip().decode()
    assert token.isdigit(), opened
    topic = f"sensors/sensor-1/{unique('conn')}"
    done = coaps("openssl", "-m", "put", "-e", "tok", *PSK,
                 uri(ports["psk"], f"/ps/{topic}", f"clientid={client_id}&token={token}"))
    assert done.returncode == 0, done.stderr
    got = subscriber.get()
    assert (got.topic, got.payload) == (topic, b"tok")
    done = coaps("openssl", "-m", "put", *PSK,
                 uri(ports["psk"], "/mqtt/connection", f"clientid={client_id}&token={token}"))
    assert b"4." not in done.stdout + done.stderr  # the heartbeat
    done = coaps("openssl", "-m", "put", "-e", "x", *PSK,
                 uri(ports["psk"], f"/ps/{topic}", f"clientid={client_id}&token=1"))
    assert b"4.01" in done.stdout + done.stderr


def test_garbage_and_truncated_records(shared_gateway, ports, subscriber) -> None:
    """Datagrams that are not DTLS, or cut short, from a stranger and inside a live
    session: dropped, and the session and the listener go on."""
    client = DTLSClient(ports["psk"], psk=(IDENTITY, KEY.encode())).handshake()
    hello = DTLSClient(ports["psk"], psk=(IDENTITY, KEY.encode())).end.start()[0]
    get = bytes([0x40, 0x01, 0x12, 0x34, 0xB1]) + b"x"  # CON GET /x
    record = client.end.send(get)[0]
    junk = [b"", b"\x16", bytes(1500), hello[:40], hello[:-3], record[:-2], record[:13] + bytes(30),
            b"\x17\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x10" + bytes(16), b"\x40\x01\x00\x01"]
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for data in junk:
        stranger.sendto(data, (HOST, ports["psk"]))
        client.sock.send(data)
    stranger.close()
    client.send(bytes([0x40, 0x01, 0x12, 0x35, 0xB1]) + b"x")
    answer = client.recv()
    assert answer[1] == 0x84 and answer[2:4] == b"\x12\x35"  # 4.04 Not Found, as CoAP answers
    client.close()
    topic = f"sensors/sensor-1/{unique('after')}"
    done = coaps("openssl", "-m", "put", "-e", "ok", *PSK, uri(ports["psk"], f"/ps/{topic}"))
    assert done.returncode == 0
    assert subscriber.get().payload == b"ok"
    assert "Traceback" not in shared_gateway.stderr
