"""TLS-PSK: Mosquitto's ``psk_file`` and ``psk_hint``, with ``mosquitto_pub --psk``.

The same file serves the DTLS listeners (tests/coap/test_dtls.py, tests/mqttsn/test_dtls.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.psk import PskFile
from tests.conftest import HOST, free_port, free_udp_port
from tests.e2e.clients import unique
from tests.security.helpers import run_gateway_expecting_failure

KEY = "00112233445566778899aabbccddeeff"
ACL = """topic read devices/#
topic write devices/probe

user dev1
topic readwrite devices/dev1/#
"""


def test_psk_file_as_mosquitto_reads_it() -> None:
    keys = PskFile.parse("# comment\ndev1:0A0b\n\nno colon here\n dev2 : abc \ndev3:00ff:extra\n")
    assert keys.keys == {"dev1": b"\x0a\x0b", "dev2": b"\x0a\xbc", "dev3": b"\x00\xff"}


@pytest.mark.parametrize("text, reason", [
    ("dev1:\n", "empty key for identity 'dev1'"),
    ("dev1:xyz\n", "not hexadecimal"),
    (":00\n", "empty identity"),
    ("dev1:" + "00" * 513 + "\n", "longer than 512 bytes"),
])
def test_bad_psk_file_lines(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as e:
        PskFile.parse("# first\n" + text, "psk")
    assert (e.value.path, e.value.line) == ("psk", 2)


@pytest.fixture
def psk_gateway(gateway, tmp_path: Path):
    (tmp_path / "psk").write_text(f"dev1:{KEY}\ndev2:{KEY}\n")
    (tmp_path / "acl").write_text(ACL)
    tls = free_port()
    gw = gateway(f"psk_file {tmp_path / 'psk'}", f"acl_file {tmp_path / 'acl'}",
                 f"listener {tls} {HOST}", "psk_hint mqttgateway", "use_identity_as_username true")
    gw.psk_port = tls
    gw.psk_path = tmp_path / "psk"
    return gw


def pub(port: int, identity: str, key: str, topic: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "--psk", key,
                           "--psk-identity", identity, "-t", topic, "-m", "psk", "-q", "1", *extra],
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
def test_the_psk_identity_is_the_username(psk_gateway, paho, version: str) -> None:
    sub = paho(psk_gateway.port, unique("sub"))
    sub.connect()
    sub.subscribe("devices/#", 1)
    topic = unique("devices/dev1/")
    done = pub(psk_gateway.psk_port, "dev1", KEY, topic, "--tls-version", version)
    assert done.returncode == 0, done.stderr
    got = sub.next_message()
    assert (got.topic, got.payload) == (topic, b"psk")
    # dev2 has no ACL entry: its message is dropped (MQTT 3.1.1 still acknowledges it).
    done = pub(psk_gateway.psk_port, "dev2", KEY, unique("devices/dev1/"), "--tls-version", version)
    assert done.returncode == 0, done.stderr
    sub.publish("devices/probe", b"")
    assert sub.next_message().topic == "devices/probe"


@pytest.mark.parametrize("identity, key", [("dev1", "ffff" * 8), ("nobody", KEY)])
def test_a_wrong_key_or_identity_is_refused(psk_gateway, identity: str, key: str) -> None:
    done = pub(psk_gateway.psk_port, identity, key, "devices/dev1/t")
    assert done.returncode != 0
    assert "TLS" in done.stderr or "Connection" in done.stderr or "protocol" in done.stderr


def test_sighup_rereads_the_psk_file_for_new_handshakes(psk_gateway) -> None:
    psk_gateway.psk_path.write_text(f"dev1:{'ab' * 16}\n")
    psk_gateway.reload("configuration reloaded")
    assert pub(psk_gateway.psk_port, "dev1", KEY, "devices/dev1/t").returncode != 0
    assert pub(psk_gateway.psk_port, "dev1", "ab" * 16, "devices/dev1/t").returncode == 0


@pytest.mark.parametrize("lines, where, reason", [
    (["listener {tcp}", "psk_hint h"], "bad.conf:4: psk_hint:", "needs a psk_file"),
    (["psk_file {dir}/missing", "listener {tcp}", "psk_hint h"], "bad.conf:3: psk_file:",
     "cannot read"),
    (["psk_file {dir}/psk", "listener {tcp}", "protocol websockets", "psk_hint h"],
     "bad.conf:6: psk_hint:", "TLS-PSK is for protocol mqtt, coap and mqttsn listeners only"),
    (["psk_file {dir}/psk", "listener {tcp}", "psk_hint h", "require_certificate true"],
     "bad.conf:6: require_certificate:", "a PSK handshake has no client certificate"),
    (["psk_file {dir}/psk", "listener {udp}", "protocol coap", "psk_hint h",
      "tls_version tlsv1.3"], "bad.conf:7: tls_version:", "DTLS 1.2 only"),
    (["psk_file {dir}/psk", "listener {udp}", "protocol mqttsn", "psk_hint h",
      "mqttsn_multicast 225.1.1.1 1883"], "bad.conf:7: mqttsn_multicast:", "cannot be encrypted"),
])
def test_psk_settings_refused_at_their_line(tmp_path: Path, lines: list[str], where: str,
                                            reason: str) -> None:
    (tmp_path / "psk").write_text(f"a:{KEY}\n")
    text = "\n".join([f"listener {free_port()} {HOST}", "allow_anonymous true", *lines]) + "\n"
    text = text.format(tcp=free_port(), udp=free_udp_port(), dir=tmp_path)
    code, output = run_gateway_expecting_failure(tmp_path, text)
    assert code == 1
    assert where in output and reason in output, output


def test_a_bad_psk_file_line_stops_startup_at_that_line(tmp_path: Path) -> None:
    (tmp_path / "psk").write_text(f"a:{KEY}\nb:not-hex\n")
    text = f"listener {free_port()} {HOST}\npsk_file {tmp_path / 'psk'}\npsk_hint h\n"
    code, output = run_gateway_expecting_failure(tmp_path, text)
    assert code == 1
    assert f"{tmp_path / 'psk'}:2: the key for identity 'b' is not hexadecimal" in output
