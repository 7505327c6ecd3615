"""``mqttgateway-pub`` and ``-rr`` against ``mosquitto_pub`` and ``mosquitto_rr`` on the
gateway: each flag set runs under both programs on the same topic; their exit
status, stdout (``-d`` included) and stderr must match, and a subscriber must
receive the same messages from both. One gateway serves an anonymous listener,
one with a password file and ACL, and one with TLS.
"""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from gateway.security.passwords import make_hash
from tests.clients.helpers import AUTO_ID, WAIT, Client, ours, run_both, theirs
from tests.conftest import free_port, launch, serving
from tests.security.pki import make_pki

LINES = b"first\nsecond\n\nno newline at the end"
BINARY = bytes(range(256))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gw(tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("clients")
    (directory / "passwd").write_text(f"alice:{make_hash(b'secret')}\n")
    (directory / "acl").write_text("user alice\ntopic readwrite alice/#\n")
    conf = f"""\
per_listener_settings true
listener {free_port()} 127.0.0.1
allow_anonymous true

listener {free_port()} 127.0.0.1
password_file {directory / 'passwd'}
acl_file {directory / 'acl'}

listener {free_port()} 127.0.0.1
allow_anonymous true
certfile {pki['server']}
keyfile {pki['server_key']}
"""
    for gateway in serving(launch(directory, conf.splitlines(), listener=False)):
        gateway.plain, gateway.secured, gateway.tls = gateway.ports
        gateway.directory = directory
        yield gateway


def same(kind: str, args: list[str], stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run both programs (Mosquitto's first); assert they behave alike; ours."""
    (s1, out1, err1), (s2, out2, err2) = run_both(kind, args, stdin)
    assert (s2, AUTO_ID.sub(b"ID", out2), err2) == (s1, AUTO_ID.sub(b"ID", out1), err1), args
    return s2, out2, err2


def flag_sets(port: int, directory) -> dict[str, tuple[list[str], bytes | None, int]]:  # noqa: ANN001
    """name -> (arguments but the topic, stdin, messages each program publishes)."""
    binary = directory / "binary"
    binary.write_bytes(BINARY)
    props = ["-D", "publish", "user-property", "k", "v", "-D", "publish", "content-type", "text/plain",
             "-D", "publish", "correlation-data", "cd", "-D", "publish", "response-topic", "re/ply",
             "-D", "publish", "payload-format-indicator", "1", "-D", "connect", "user-property", "c", "1"]
    return {
        "qos1": (["-m", "hello", "-q", "1", "-d"], None, 1),
        "qos2-retained": (["-m", "kept", "-q", "2", "-r", "-d"], None, 1),
        "null": (["-n", "-d"], None, 1),
        "file": (["-f", str(binary), "-q", "1"], None, 1),
        "stdin": (["-s", "-q", "2"], BINARY, 1),
        "lines": (["-l", "-q", "1"], LINES, 4),  # -d lines interleave by timing, in both
        "repeat": (["-m", "again", "--repeat", "3", "--repeat-delay", "0.05", "-q", "1", "-d"], None, 3),
        "v5-properties": (["-V", "5", "-q", "1", "-m", "props", "-d", *props], None, 1),
        "v31": (["-V", "mqttv31", "-m", "31", "-i", "pub-v31", "-d"], None, 1),
        "topic-alias": (["-V", "5", "-D", "publish", "topic-alias", "1", "-m", "alias", "--repeat", "2",
                         "-d"], None, 2),
        "prefix-and-will": (["-I", "pfx-", "-m", "will", "--will-topic", "w/t", "--will-payload", "w",
                             "--will-qos", "1", "--will-retain", "-k", "5"], None, 1),
    }


def test_publishes_match_mosquitto_pub(gw):
    sets = flag_sets(gw.plain, gw.directory)
    total = 1 + 2 * (sum(n for _, _, n in sets.values()) + 1)  # ready, then both runs and the URL
    watch = Client(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(gw.plain), "-V", "5", "-q", "2",
                    "-t", "pub/#", "-C", str(total), "-F", "%t|%q|%l|%x|%P|%C|%R|%D|%F"])
    subprocess.run(["mosquitto_pub", "-p", str(gw.plain), "-t", "pub/ready", "-m", "x", "-r"], timeout=WAIT)
    watch.wait_for(bool, "subscription")
    for name, (args, stdin, _) in sets.items():
        same("pub", ["-h", "127.0.0.1", "-p", str(gw.plain), "-t", f"pub/{name}", *args], stdin)
    url = f"mqtt://127.0.0.1:{gw.plain}/pub/url"
    same("pub", ["-L", url, "-m", "by url"])
    status, out, _ = watch.finish()
    assert status == 0
    lines = out.split(b"\n")[1:-1]
    received = {}
    for line in lines:
        received.setdefault(line.split(b"|")[0], []).append(line)
    for topic, got in received.items():  # the two runs may interleave when the machine is busy
        assert all(n % 2 == 0 for n in Counter(got).values()), topic
    assert sorted(received[b"pub/lines"]) == sorted(2 * [b"pub/lines|1|%d|%s|||||" % (len(x), x.hex().encode())
                                                         for x in LINES.split(b"\n")])
    assert received[b"pub/v5-properties"][0] == b"pub/v5-properties|1|5|70726f7073|k:v|text/plain|re/ply|cd|1"


def test_refusals_and_credentials_match(gw):
    sources = (f"127.0.0.{n}" for n in range(10, 30))  # the login throttle counts per address

    def port() -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(gw.secured), "-A", next(sources)]

    assert same("pub", [*port(), "-t", "alice/x", "-m", "x"])[0] == 5
    assert same("pub", [*port(), "-t", "alice/x", "-m", "x", "-V", "5", "-u", "alice", "-P", "bad"])[0] == 135
    assert same("sub", [*port(), "-t", "alice/x", "-V", "5"])[0] == 135
    assert same("sub", [*port(), "-t", "alice/x", "-d"])[0] == 5
    assert same("pub", [*port(), "-t", "alice/x", "-m", "x", "-P", "secret"])[0] == 1
    assert same("pub", ["-L", f"mqtt://alice:secret@127.0.0.1:{gw.secured}/alice/x", "-m", "x"])[0] == 0
    # Denied by the ACL: a QoS 1 publish at MQTT 5 is acknowledged with a refusal.
    login = ["-u", "alice", "-P", "secret"]
    assert same("pub", [*port(), *login, "-t", "bob/x", "-m", "x", "-q", "1", "-V", "5"])[0] == 0
    assert same("sub", [*port(), *login, "-t", "bob/#", "-E", "-d"])[0] == 0


def test_tls_matches(gw, pki):
    tls = ["-p", str(gw.tls), "--cafile", pki["ca"], "-t", "tls/x", "-m", "secret", "-q", "1"]
    assert same("pub", ["-h", "localhost", *tls, "-d"])[0] == 0
    assert same("pub", ["-h", "127.1", *tls, "--insecure"])[0] == 0
    assert same("pub", ["-L", f"mqtts://localhost:{gw.tls}/tls/x", "--cafile", pki["ca"], "-m", "url"])[0] == 0
    assert same("rr", ["-h", "localhost", *tls, "-e", "tls/x", "-d"])[0] == 0
    assert same("pub", ["-h", "localhost", *tls, "--cert", pki["client"], "--key", "/nonexistent"])[0] == 1
    # A certificate that does not verify fails the handshake. libmosquitto reports it from
    # its loop (status 8) or, when the server's answer is already in, from its connect
    # (status 1): a race in Mosquitto's clients; ours always report it from the loop.
    for host, ca in (("127.1", pki["ca"]), ("localhost", pki["other_ca"])):
        args = ["-h", host, "-p", str(gw.tls), "--cafile", ca, "-t", "tls/x"]
        for kind, more in (("pub", ["-m", "x"]), ("sub", [])):
            (status, _, _), mine = run_both(kind, [*args, *more])
            assert status in (1, 8) and mine == (8, b"", b"Error: A TLS error occurred.\n"), args


def test_request_response_matches(gw):
    port = ["-h", "127.0.0.1", "-p", str(gw.plain)]
    # The response topic is the request topic: the request is its own response.
    for args in (["-t", "rr/a", "-e", "rr/a", "-m", "ping", "-d", "-F", "%t %p %R"],
                 ["-t", "rr/b", "-e", "rr/b", "-m", "ping", "-V", "311", "-v", "-q", "2", "-d"],
                 ["-t", "rr/c", "-e", "rr/none", "-m", "ping", "-W", "1"]):
        same("rr", [*port, *args])


def test_console_scripts_or_module(gw):
    """The commands run from the environment's scripts when installed, else as modules;
    either way they answer --version without touching the network."""
    for kind in ("pub", "sub", "rr"):
        status, out, _ = Client([*ours(kind), "--version"]).finish()
        assert status == 1 and out.startswith(f"mqttgateway-{kind} version ".encode())
        assert theirs(kind) == [f"mosquitto_{kind}"]
