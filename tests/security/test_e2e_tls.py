"""TLS listeners with certificates made at test time: paho-mqtt and mosquitto_pub as
clients, every refusal (wrong CA, no certificate, expired, revoked), certificate
identities as usernames, bad files at startup and SIGHUP certificate reload."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from gateway.security.passwords import make_hash
from tests.conftest import free_port, launch, serving
from tests.security.helpers import WAIT, Client, run_gateway_expecting_failure
from tests.security.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("tls")
    (directory / "passwd").write_text(f"alice:{make_hash(b'secret')}\n")
    (directory / "acl").write_text("user alice\ntopic readwrite alice/#\n"
                                   "user device-42\ntopic readwrite devices/device-42/#\n")
    conf = f"""\
per_listener_settings true
listener {free_port()} 127.0.0.1
certfile {pki['server']}
keyfile {pki['server_key']}
password_file {directory / 'passwd'}
acl_file {directory / 'acl'}

listener {free_port()} 127.0.0.1
certfile {pki['server']}
keyfile {pki['server_key']}
cafile {pki['ca']}
require_certificate true
crlfile {pki['crl']}
tls_version tlsv1.2
password_file {directory / 'passwd'}

listener {free_port()} 127.0.0.1
certfile {pki['server']}
keyfile {pki['server_key']}
cafile {pki['ca']}
require_certificate true
use_identity_as_username true
acl_file {directory / 'acl'}

listener {free_port()} 127.0.0.1
certfile {pki['server']}
keyfile {pki['server_key']}
cafile {pki['ca']}
use_identity_as_username true
acl_file {directory / 'acl'}
"""
    # serving() yields the gateway once; after the module it stops it and checks the exit.
    for gw in serving(launch(directory, conf.splitlines(), listener=False)):
        gw.server, gw.mutual, gw.identity, gw.identity_optional = gw.ports
        yield gw


def tls(pki, cert=None, ca="ca"):
    out = {"ca": pki[ca]}
    if cert:
        out.update(cert=pki[cert], key=pki[f"{cert}_key"])
    return out


def test_server_tls_with_credentials(shared_gateway, pki):
    c = Client(shared_gateway.server, "a1", "alice", "secret", tls=tls(pki))
    assert c.connect() == 0
    assert c.subscribe("alice/#") == [1]
    c.publish("alice/x", b"over tls")
    assert c.next_message() == ("alice/x", b"over tls")
    c.close()
    bad = Client(shared_gateway.server, "a2", "alice", "wrong", tls=tls(pki), bind="127.0.0.2")
    assert bad.connect() == 135
    bad.close()
    anonymous = Client(shared_gateway.server, "a3", tls=tls(pki), bind="127.0.0.2")
    assert anonymous.connect() == 135
    anonymous.close()


def test_client_refuses_a_server_from_another_ca(shared_gateway, pki):
    c = Client(shared_gateway.server, "a4", "alice", "secret", tls=tls(pki, ca="other_ca"))
    assert c.connect() == "closed"
    c.close()


def test_mutual_tls_with_mosquitto_pub(shared_gateway, pki):
    sub = Client(shared_gateway.mutual, "m1", "alice", "secret", tls=tls(pki, "client"))
    assert sub.connect() == 0
    assert sub.subscribe("t") == [1]
    done = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(shared_gateway.mutual),
                           "--cafile", pki["ca"], "--cert", pki["client"], "--key", pki["client_key"],
                           "-u", "alice", "-P", "secret", "-t", "t", "-m", "from mosquitto_pub", "-q", "1"],
                          capture_output=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert sub.next_message() == ("t", b"from mosquitto_pub")
    sub.close()


@pytest.mark.parametrize("cert", [None, "foreign", "expired", "revoked"],
                         ids=["no-certificate", "wrong-ca", "expired", "revoked"])
def test_mutual_tls_refusals(shared_gateway, pki, cert):
    # With TLS 1.3 the refusal may come after connect() returns: check the first round trip.
    c = Client(shared_gateway.mutual, "m2", "alice", "secret", tls=tls(pki, cert))
    assert c.connect() == "closed"
    c.close()
    args = ["mosquitto_pub", "-h", "localhost", "-p", str(shared_gateway.mutual), "--cafile", pki["ca"],
            "-u", "alice", "-P", "secret", "-t", "t", "-m", "x", "-q", "1"]
    if cert:
        args += ["--cert", pki[cert], "--key", pki[f"{cert}_key"]]
    assert subprocess.run(args, capture_output=True, timeout=WAIT).returncode != 0


def test_certificate_identity_is_the_username(shared_gateway, pki):
    c = Client(shared_gateway.identity, "d1", "alice", "ignored", tls=tls(pki, "client"))
    assert c.connect() == 0                                    # username comes from CN device-42
    assert c.subscribe("devices/device-42/#") == [1]
    assert c.subscribe("alice/#") == [0x80]                    # not alice, whatever CONNECT said
    c.close()


def test_certificate_identity_without_require_certificate(shared_gateway, pki):
    """As Mosquitto: valid; a client with a certificate is named by it, one without is
    refused with CONNACK 4 (bad user name or password; 0x86 at MQTT 5, as here)."""
    c = Client(shared_gateway.identity_optional, "d2", tls=tls(pki, "client"))
    assert c.connect() == 0
    assert c.subscribe("devices/device-42/#") == [1]
    c.close()
    anonymous = Client(shared_gateway.identity_optional, "d3", "alice", "secret", tls=tls(pki, None))
    assert anonymous.connect() == 0x86
    anonymous.close()


@pytest.mark.parametrize("cert, alert", [
    (None, "CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE"),
    ("foreign", "UNKNOWN_CA"),
    ("expired", "CERTIFICATE_EXPIRED"),
    ("revoked", "CERTIFICATE_REVOKED"),
])
def test_each_refusal_has_its_own_tls_alert(shared_gateway, pki, cert, alert):
    """What a plain TLS 1.2 client is told, so each refusal is the one intended."""
    import re
    import socket
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(pki[cert], pki[f"{cert}_key"])
    with socket.create_connection(("127.0.0.1", shared_gateway.mutual), WAIT) as raw:
        with pytest.raises(ssl.SSLError) as e:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00")
                s.recv(4)
    assert re.search(alert, str(e.value))


BAD_FILES = [
    ("certfile", lambda d, p: str(d / "missing.pem"), "cannot read file"),
    ("certfile", lambda d, p: p["server_key"], "cannot load certificate"),
    ("keyfile", lambda d, p: p["client_key"], "cannot use private key"),
    ("cafile", lambda d, p: str(d / "missing.pem"), "cannot read file"),
    ("crlfile", lambda d, p: p["server"], "cannot load CRL"),
]


@pytest.mark.parametrize("key, value, reason", BAD_FILES, ids=[f"{k}-{r}" for k, _, r in BAD_FILES])
def test_bad_certificate_file_stops_startup_with_its_config_line(tmp_path, pki, key, value, reason):
    settings = {"certfile": pki["server"], "keyfile": pki["server_key"], "cafile": pki["ca"],
                "crlfile": pki["crl"]}
    settings[key] = value(tmp_path, pki)
    lines = [f"listener {free_port()} 127.0.0.1", "allow_anonymous true",
             *(f"{k} {v}" for k, v in settings.items()), "require_certificate true"]
    code, output = run_gateway_expecting_failure(tmp_path, "\n".join(lines) + "\n")
    line = 3 + list(settings).index(key)
    assert code == 1
    assert f"bad.conf:{line}: {key}: {reason}" in output


def test_sighup_reloads_certificates_for_new_connections(tmp_path, pki, tmp_path_factory, gateway):
    other = make_pki(tmp_path_factory.mktemp("pki2"))        # a second CA and server cert
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki["server"], cert)
    shutil.copy(pki["server_key"], key)
    gw = gateway(f"listener {free_port()} 127.0.0.1", "allow_anonymous true",
                 f"certfile {cert}", f"keyfile {key}", listener=False)
    old = Client(gw.port, "old", tls=tls(pki))
    assert old.connect() == 0
    shutil.copy(other["server"], cert)
    shutil.copy(other["server_key"], key)
    gw.reload("configuration reloaded")
    assert old.subscribe("x") == [1]                        # established connection kept
    assert Client(gw.port, "n1", tls=tls(pki)).connect() == "closed"
    fresh = Client(gw.port, "n2", tls=tls(other))
    assert fresh.connect() == 0
    fresh.close()
    # A broken key fails the reload; the certificates in use stay.
    key.write_text("not a key\n")
    gw.reload("reload failed")
    gw.wait_for_log("keyfile: cannot use private key")
    again = Client(gw.port, "n3", tls=tls(other))
    assert again.connect() == 0
    again.close()
    old.close()


@pytest.mark.parametrize("lines, line, message", [
    (["require_certificate true"], 3, "require_certificate: needs certfile and keyfile"),
    (["certfile {server}"], 3, "certfile: certfile without keyfile"),
    (["certfile {server}", "keyfile {server_key}", "require_certificate true"], 5,
     "require_certificate: needs cafile or capath"),
])
def test_tls_settings_that_cannot_work_stop_startup(tmp_path, pki, lines, line, message):
    body = "\n".join(x.format(**pki) for x in lines)
    code, output = run_gateway_expecting_failure(
        tmp_path, f"listener {free_port()} 127.0.0.1\nallow_anonymous true\n{body}\n")
    assert code == 1 and f"bad.conf:{line}: {message}" in output
