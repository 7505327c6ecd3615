"""``mqttgateway-sub`` and ``mosquitto_sub`` subscribed side by side, to the gateway
and to Debian's Mosquitto, print the same bytes and exit the same way.

Each pair subscribes to a fresh topic tree that holds one retained message: a
subscriber that has printed anything is subscribed, so the test publishes only
then. The messages cover QoS 0/1/2, a binary payload, an empty one, a non-ASCII
topic, MQTT 5 properties and a JSON payload; the flag sets cover the plain,
``-v``, ``-N``, ``-F`` (every field, widths, escapes, JSON and ``--pretty``),
``-d``, ``-T``, ``-R``, ``--retained-only`` and ``--remove-retained`` outputs.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess

import pytest

from tests.clients.helpers import AUTO_ID, WAIT, Client, ours, theirs
from tests.security.test_passwd_command import start_mosquitto

COUNTER = itertools.count()
TST = re.compile(rb'"tst":(\t?)"[^"]*"')
BINARY = b"\x00\x01bin\xfe\xff\n\x7f"
JSON = b'{"j": [1, 2.5, "x", {"y": null}, [], {}], "n": -0.0, "big": 1e21, "s": "a\\u00e9\\n"}'


@pytest.fixture(scope="module", params=["gateway", "mosquitto"])
def broker(request, tmp_path_factory) -> int:
    """The port of a broker with anonymous access: the gateway, then Mosquitto."""
    if request.param == "gateway":
        return request.getfixturevalue("shared_gateway").port
    process, port = start_mosquitto(tmp_path_factory.mktemp("mosquitto"), "allow_anonymous true\n")
    request.addfinalizer(lambda: (process.terminate(), process.wait(WAIT)))
    return port


def base() -> str:
    return f"cli/{next(COUNTER)}"


def pub(port: int, *args: str, stdin: bytes | None = None) -> None:
    """Publish with Mosquitto's own client, which the comparison does not test."""
    done = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args],
                          input=stdin, capture_output=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr


def start_pair(port: int, args: list[str], ready: bytes = b"", wait: bool = True,
               ) -> tuple[Client, Client]:
    """Both subscribers, once each has printed ``ready`` (or anything at all).
    Mosquitto's stdout is made line-buffered: its ``-d`` lines wait in a full
    buffer until a message is printed, and ``ready`` may be one of them."""
    argv = ["-h", "127.0.0.1", "-p", str(port), *args]
    pair = Client(["stdbuf", "-oL", *theirs("sub"), *argv]), Client([*ours("sub"), *argv])
    if wait:
        subscribed(pair, ready)
    return pair


def subscribed(pair: tuple[Client, Client], ready: bytes = b"") -> None:
    for c in pair:
        c.wait_for(lambda out: ready in out if ready else bool(out), "subscription")


def publish_set(port: int, b: str) -> None:
    """Five live messages after the retained ``b/0``."""
    pub(port, "-t", f"{b}/a", "-m", "hello")
    pub(port, "-t", f"{b}/b", "-s", "-q", "1", stdin=BINARY)
    pub(port, "-t", f"{b}/c", "-n", "-q", "2")
    pub(port, "-t", f"{b}/ü/d", "-m", "unicode päyload", "-q", "1", "-V", "5",
        "-D", "publish", "content-type", "text/plain", "-D", "publish", "user-property", "k", "v",
        "-D", "publish", "user-property", "k2", "v2", "-D", "publish", "response-topic", f"{b}/resp",
        "-D", "publish", "correlation-data", "cd")
    pub(port, "-t", f"{b}/e", "-m", JSON.decode(), "-V", "5", "-D", "publish", "payload-format-indicator", "1")


def same(pair: tuple[Client, Client], normalise=lambda b: b) -> None:  # noqa: ANN001
    (s1, out1, err1), (s2, out2, err2) = (c.finish() for c in pair)
    assert (s2, normalise(out2), err2) == (s1, normalise(out1), err1), pair[1].argv[-12:]


FLAG_SETS = {
    "plain": [],
    "verbose": ["-v"],
    "no-eol": ["-N"],
    "verbose-no-eol": ["-v", "-N"],
    "qos-fields": ["-q", "2", "-F", "%t|%p|%q|%r|%l|%m|%x|%X"],
    "v5-fields": ["-V", "5", "-q", "1", "-F", "%t %C %R %D %P %F %S %A %E."],
    "widths": ["-V", "5", "-F", r"%10t|%-10t|%.3t|%5.2t|%08l|%-8l|%8p|%-8p|%6x|%-6X|%%|\e\a\v\0\t\\|@@"],
    "json": ["-V", "5", "-q", "1", "-F", "%j"],
    "json-parsed": ["-V", "5", "-F", "%J"],
    "json-pretty": ["-V", "5", "-F", "%j\n%J", "--pretty"],
    "debug": ["-d", "-q", "1"],  # at QoS 2, PUBREL and the next PUBLISH race, for both
    "debug-v5": ["-d", "-q", "1", "-V", "5", "-v"],
}


def test_outputs_match_mosquitto_sub(broker):
    """Every flag set at once on one topic tree; the failures name their flag sets."""
    b = base()
    pub(broker, "-t", f"{b}/0", "-m", "ready", "-r", "-q", "1")
    ready = {name: b"Subscribed (mid: 1)" if "-d" in flags else b"" for name, flags in FLAG_SETS.items()}
    pairs = {name: start_pair(broker, ["-t", f"{b}/#", "-C", "6", *flags], wait=False)
             for name, flags in FLAG_SETS.items()}
    for name, pair in pairs.items():
        subscribed(pair, ready[name])
    publish_set(broker, b)
    failures = []
    for name, pair in pairs.items():
        try:
            same(pair, lambda out: AUTO_ID.sub(b"auto-ID", TST.sub(rb'"tst":\1"T"', out)))
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n\n".join(failures)


def test_filters_retained_and_counts(broker):
    b = base()
    pub(broker, "-t", f"{b}/0", "-m", "ready", "-r", "-q", "1")
    pub(broker, "-t", f"{b}/kept", "-m", "stale", "-r", "-q", "1")
    pairs = [
        start_pair(broker, ["-t", f"{b}/#", "-v", "-C", "5", "-T", f"{b}/b", "-T", f"{b}/+/d"]),
        start_pair(broker, ["-t", f"{b}/#", "-v", "-R", "-C", "3", "-d"], b"Subscribed (mid: 1)"),
        start_pair(broker, ["-t", f"{b}/#", "-v", "--retained-only"]),
        start_pair(broker, ["-t", f"{b}/0", "-t", f"{b}/kept", "-F", "%t=%p", "-C", "2"]),
    ]
    publish_set(broker, b)
    for pair in pairs:
        same(pair)


def test_exit_after_subscribe_and_unsubscribe(broker):
    b = base()
    for args in (["-t", f"{b}/#", "-E", "-d", "-q", "1"],
                 ["-t", f"{b}/#", "-E", "-d", "-U", f"{b}/x", "-V", "5"],
                 ["-t", f"{b}/#", "-t", "$SYS/nothing", "-E", "-d", "-q", "2"]):
        argv = ["-h", "127.0.0.1", "-p", str(broker), *args]
        pair = Client([*theirs("sub"), *argv]), Client([*ours("sub"), *argv])
        same(pair, lambda out: AUTO_ID.sub(b"auto-ID", out))


def test_timeout_exits_27(broker):
    argv = ["-h", "127.0.0.1", "-p", str(broker), "-t", f"{base()}/never", "-W", "1"]
    pairs = [(Client([*theirs("sub"), *args]), Client([*ours("sub"), *args]))
             for args in (argv, [*argv, "-V", "5"])]
    for pair in pairs:
        same(pair)


def test_sigint_disconnects_with_the_will(broker):
    """SIGINT after the CONNACK: a DISCONNECT with reason 0x04 at MQTT 5, so the broker
    sends the will, and status 0; the same from both programs."""
    b = base()
    pub(broker, "-t", f"{b}/0", "-m", "ready", "-r", "-q", "1")
    wills = Client(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker), "-t", f"{b}/will",
                    "-t", f"{b}/0", "-C", "3", "-v"])
    wills.wait_for(bool, "subscription")
    pair = start_pair(broker, ["-t", f"{b}/0", "-V", "5", "-v", "--will-topic", f"{b}/will",
                               "--will-payload", "gone"])
    for c in pair:
        c.proc.send_signal(signal.SIGINT)
    same(pair)
    assert wills.finish() == (0, f"{b}/0 ready\n{b}/will gone\n{b}/will gone\n".encode(), b"")
