"""The shipped example files load, and mean what their comments say."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.config import load
from gateway.security.acl import AclFile
from gateway.hub.api import ClientInfo
from gateway.security.passwords import PasswordFile
from tests.conftest import REPO


def test_passwd_example():
    pw = PasswordFile.load(str(REPO / "etc" / "passwd.example"))
    assert pw.check("alice", b"alice-pw") and pw.check("ingest", b"ingest-pw")


def test_acl_example():
    acl = AclFile.load(str(REPO / "etc" / "acl.example"))
    alice = ClientInfo("phone", username="alice")
    assert acl.check(alice, "read", "dashboard/temp")
    assert not acl.check(alice, "read", "dashboard/alarm/codes")
    assert acl.check(ClientInfo("d1"), "write", "devices/d1/state")
    assert acl.check(ClientInfo("d1"), "read", "public/x")
    assert not acl.check(ClientInfo("d1"), "read", "devices/d2/command")


EXAMPLE_CONFIGS = sorted((REPO / "etc").glob("*.conf"))


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=[p.name for p in EXAMPLE_CONFIGS])
def test_example_config_listens_on_loopback_only(path):
    """Trying an example opens nothing to the network: every listener is bound to a
    loopback address, and no multicast group (its socket listens on every interface)."""
    config = load(str(path))
    assert config.listeners
    for listener in config.listeners:
        assert listener.bind_address is not None, f"{listener.source}: every interface"
        assert ipaddress.ip_address(listener.bind_address).is_loopback, listener.source
        assert listener.mqttsn_multicast is None, listener.source
    assert config.mqttsn_serial == []


def test_every_example_config_is_checked():
    assert {p.name for p in EXAMPLE_CONFIGS} >= {"mqttgateway.conf", "mqttsn.conf", "coap.conf"}


def test_psk_example_and_the_dtls_example_that_uses_it():
    from gateway.psk import PskFile

    keys = PskFile.load(str(REPO / "etc" / "psk.example"))
    assert keys.key("sensor-1") == b"secretPSK" and len(keys) == 2
    config = load(str(REPO / "etc" / "dtls.conf"))
    assert config.psk_file == "etc/psk.example"
    assert [(x.protocol, x.psk_hint) for x in config.listeners] == [
        ("mqtt", None), ("coap", "mqttgateway"), ("mqttsn", "mqttgateway")]
