"""The bridges as a service: metrics, TLS files checked at startup, a local login."""

from __future__ import annotations

import pytest

from gateway.bridge.service import BridgeService, tls_options
from gateway.errors import ConfigError
from gateway.hub.auth import Policies, Policy, Security
from gateway.security.passwords import PasswordFile, make_hash
from tests.bridge.helpers import FakeDialer, bridge_config
from tests.hub.helpers import make_hub
from tests.security.helpers import run_gateway_expecting_failure
from tests.security.pki import make_pki


def service(*lines: str, hub=None):
    hub = hub or make_hub()
    svc = BridgeService(hub, [bridge_config(*lines)], reactor=hub.clock)
    dialer = FakeDialer()
    for link in svc.links:
        link.dialer = dialer
    return svc, dialer, hub


def test_metrics():
    svc, dialer, hub = service("topic a/# out 1")
    svc.startService()
    probes = hub.stats.probes
    assert probes["bridge_up"].samples() == [(("cloud",), 0)]
    dialer.accept()
    assert probes["bridge_up"].samples() == [(("cloud",), 1)]
    assert probes["bridge_connections"].samples() == [(("cloud",), 1)]
    assert probes["bridge_queued"].samples() == [(("cloud",), 0)]


def test_a_local_username_must_log_in():
    hub = make_hub()
    passwords = PasswordFile.parse(f"bridge:{make_hash(b'right')}\n".encode())
    Security(Policies(default=Policy(allow_anonymous=False, passwords=passwords)), hub.clock).install(hub)
    refused, dialer, _ = service("local_username bridge", "local_password wrong", hub=hub)
    refused.startService()
    assert dialer.attempts == []
    allowed, dialer, _ = service("local_username bridge", "local_password right",
                                 "local_clientid other", hub=hub)
    allowed.startService()
    assert len(dialer.attempts) == 1


def test_tls_files_are_checked_at_their_line(tmp_path):
    pki = make_pki(tmp_path)
    good = bridge_config(f"bridge_cafile {pki['ca']}", "address localhost:8883 127.0.0.1:8883")
    assert len(tls_options(good)) == 2
    assert tls_options(bridge_config()) is None
    (tmp_path / "empty.pem").write_text("")
    cases = [
        (f"bridge_cafile {tmp_path / 'missing.pem'}", "bridge_cafile", "cannot read"),
        (f"bridge_cafile {tmp_path / 'empty.pem'}", "bridge_cafile", "cannot load the certificates: no PEM"),
        (f"bridge_capath {tmp_path / 'nowhere'}", "bridge_capath", "cannot read"),
    ]
    for line, key, reason in cases:
        with pytest.raises(ConfigError) as e:
            tls_options(bridge_config(line))
        assert (e.value.key, e.value.line) == (key, 6)
        assert reason in e.value.reason


def test_a_bad_bridge_cafile_stops_startup(tmp_path):
    status, output = run_gateway_expecting_failure(tmp_path, "\n".join([
        "listener 1883 127.0.0.1", "connection cloud", "address 127.0.0.1:8883", "topic #",
        f"bridge_cafile {tmp_path / 'nope.pem'}", ""]))
    assert status == 1
    assert f"bad.conf:5: bridge_cafile: bridge 'cloud': cannot read '{tmp_path / 'nope.pem'}'" in output


def test_sighup_leaves_bridges_as_they_are(gateway):
    from tests.conftest import free_port

    port = free_port()                         # nothing listens: the bridge keeps retrying
    gw = gateway("connection cloud", f"address 127.0.0.1:{port}", "topic a/# out 1",
                 "restart_timeout 1")
    gw.wait_for_log(f"bridge cloud: cannot connect to 127.0.0.1:{port}")
    gw.config.write_text(gw.config.read_text().replace("topic a/# out 1", "topic b/# out 1"))
    mark = gw.reload("configuration reloaded")
    gw.wait_for_log("bridge changes take effect after a restart", mark)
