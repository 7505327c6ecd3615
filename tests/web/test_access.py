"""Who gets in: HTTP Basic against the password file, the ACL's read right on the path,
anonymous access only when the listener says so, the shared login throttle, HTTPS."""

from __future__ import annotations

import ssl

import pytest

from gateway.security.passwords import make_hash
from tests.conftest import free_port
from tests.security.helpers import Client
from tests.security.pki import make_pki
from tests.web.helpers import get, scrape, value, wait_until

ACL = """\
user admin
topic read /#

user prometheus
topic read /metrics
topic read sensors/#
"""
ELSEWHERE = "127.0.0.2"   # scrapes from here stay out of 127.0.0.1's failure count


@pytest.fixture
def secured(gateway, tmp_path):
    """A gateway with a password file, an ACL and an HTTP API listener."""
    (tmp_path / "passwd").write_text(
        "".join(f"{user}:{make_hash(pw.encode())}\n" for user, pw in
                (("admin", "s3cret"), ("prometheus", "scrape"), ("nobody", "pw"))))
    (tmp_path / "acl").write_text(ACL)
    http = free_port()
    gw = gateway(f"password_file {tmp_path / 'passwd'}", f"acl_file {tmp_path / 'acl'}",
                 f"listener {http}", "protocol http_api")
    gw.http_port = http
    return gw


def test_credentials_are_asked_for_and_checked(secured) -> None:
    http = secured.http_port
    for path in ("/", "/metrics", "/api/v1/systree", "/api/status", "/status.js"):
        refused = get(http, path)
        assert refused.status == 401, path
        assert refused.headers["WWW-Authenticate"].startswith('Basic realm="mqttgateway"')
    assert get(http, "/metrics", ("admin", "wrong")).status == 401
    assert get(http, "/metrics", ("ghost", "s3cret")).status == 401
    for path in ("/", "/metrics", "/api/v1/systree", "/api/v1/listeners", "/api/status", "/status.js"):
        assert get(http, path, ("admin", "s3cret")).status == 200, path
    # the ACL: read access to the path as a topic
    assert get(http, "/metrics", ("prometheus", "scrape")).status == 200
    for path in ("/", "/api/status", "/api/v1/systree"):
        assert get(http, path, ("prometheus", "scrape")).status == 403, path
    assert get(http, "/metrics", ("nobody", "pw")).status == 403
    # only GET and HEAD
    assert get(http, "/metrics", ("admin", "s3cret"), method="HEAD").status == 200
    assert get(http, "/metrics", ("admin", "s3cret"), method="POST").status == 405
    samples = scrape(http, ("admin", "s3cret"), source=ELSEWHERE)
    # the two wrong logins count; the requests without credentials do not
    assert value(samples, "mqttgateway_auth_failures_total", protocol="http") == 2
    secured.wait_for_log("authentication failed for http-api (username ghost) from 127.0.0.1:")


def test_http_failures_count_toward_the_mqtt_login_throttle(secured) -> None:
    http = secured.http_port
    for _ in range(3):
        assert get(http, "/metrics", ("admin", "guess")).status == 401
    before = scrape(http, ("admin", "s3cret"), source=ELSEWHERE)
    assert value(before, "mqttgateway_rate_limited_total", protocol="any", limit="login_throttle") == 0
    # an MQTT login from the same address now waits its turn, like a fourth guess would
    mqtt = Client(secured.port, "after-guesses", "admin", "s3cret")
    assert mqtt.connect() == 0
    mqtt.close()
    after = scrape(http, ("admin", "s3cret"), source=ELSEWHERE)
    assert value(after, "mqttgateway_rate_limited_total", protocol="any", limit="login_throttle") == 1
    assert value(after, "mqttgateway_auth_failures_total", protocol="http") == 3
    assert value(after, "mqttgateway_auth_failures_total", protocol="mqtt") == 0


def test_anonymous_access_only_when_the_listener_says_so(gateway) -> None:
    closed, opened = free_port(), free_port()
    # allow_anonymous true holds for MQTT, not for an HTTP API listener by default
    gw = gateway(f"listener {closed}", "protocol http_api",
                 f"listener {opened}", "protocol http_api", "listener_allow_anonymous true")
    assert get(closed, "/metrics").status == 401
    assert get(opened, "/metrics").status == 200
    assert get(opened, "/").status == 200
    listeners = {x["port"]: x for x in get(opened, "/api/v1/listeners").json()["listeners"]}
    assert (listeners[closed]["allow_anonymous"], listeners[opened]["allow_anonymous"]) == (False, True)
    assert listeners[gw.port]["allow_anonymous"] is True
    # no password file: a username cannot log in to the closed one either
    assert get(closed, "/metrics", ("admin", "x")).status == 401


def test_https_with_the_listeners_keys(gateway, tmp_path) -> None:
    pki = make_pki(tmp_path)
    http = free_port()
    gateway(f"listener {http} 127.0.0.1", "protocol http_api", "listener_allow_anonymous true",
            f"certfile {pki['server']}", f"keyfile {pki['server_key']}")
    context = ssl.create_default_context(cafile=pki["ca"])
    context.check_hostname = False
    assert get(http, "/api/v1/version", context=context).status == 200
    listeners = get(http, "/api/v1/listeners", context=context).json()["listeners"]
    assert [x["tls"] for x in listeners if x["port"] == http] == [True]
    with pytest.raises(Exception):
        get(http, "/api/v1/version")   # plain HTTP to a TLS port gets no answer


def test_an_http_api_listener_binds_loopback_without_an_address(gateway) -> None:
    http = free_port()
    gw = gateway(f"listener {http}", "protocol http_api")
    gw.wait_for_log(f"listening for http_api on 127.0.0.1:{http}\n")
    assert "without TLS" not in gw.stderr


def test_identity_keys_are_refused_on_an_http_api_listener(tmp_path) -> None:
    from tests.security.helpers import run_gateway_expecting_failure

    status, out = run_gateway_expecting_failure(
        tmp_path, f"listener {free_port()}\nprotocol http_api\nuse_identity_as_username true\n")
    assert status == 1
    assert "bad.conf:3: use_identity_as_username: not for a protocol http_api listener" in out


def test_metrics_wait_for_credentials_without_blocking_mqtt(secured) -> None:
    # a scrape refused mid-way leaves the MQTT side serving
    assert get(secured.http_port, "/metrics", ("admin", "nope")).status == 401
    mqtt = Client(secured.port, "still-served", "admin", "s3cret")
    assert mqtt.connect() == 0
    mqtt.close()
    wait_until(lambda: "still-served" not in get(secured.http_port, "/api/status", ("admin", "s3cret"),
                                                  source=ELSEWHERE).body.decode(), "client gone")
