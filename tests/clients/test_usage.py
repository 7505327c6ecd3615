"""Command lines the clients refuse, ``--help`` and ``--version``: the same stderr,
stdout and exit status as Mosquitto's clients (with our program names), no broker
needed. ``-h`` is the host, as for Mosquitto; ``--help`` prints the usage."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.clients.helpers import as_ours, run_both
from tests.conftest import free_port

T = ["-t", "a", "-m", "x"]
REFUSED = {
    "pub": [
        ["-Z"], ["-h"], ["-p", "70000"], ["-q", "3", *T], ["-k", "3", *T], ["-t", "a/+", "-m", "x"],
        ["-m", "a", "-f", "x"], ["-C", "3", *T], ["-V", "6", *T], ["--will-payload", "x", *T],
        ["--will-topic", "w/#", *T], ["--cert", "c", *T], ["-c", *T], ["-c", "-V", "5", *T],
        ["-x", "abc", *T], ["-i", "a", "-I", "b"], ["-L", "http://x/y"], ["-L", "mqtt://host"],
        ["--repeat", "0", *T], ["-D", "publish", "foo", "1"], ["-D", "connect", "topic-alias", "1"],
        ["-D", "publish", "content-type", "a", "-D", "publish", "content-type", "b", *T],
        ["-D", "publish", "user-property", "k"], ["-D", "publish", "payload-format-indicator", "300"],
        ["-D", "subscribe", "content-type", "x"], ["-D", "connack", "maximum-qos", "1", *T],
        ["-D", "connect", "request-problem-information", "2", *T], ["-t", "a"],
        ["-f", "/nonexistent/file", "-t", "a"], ["-s", "-t", "a"], ["-F", "%t", *T],
    ],
    "sub": [
        [], ["-t", "a/#/b"], ["-C", "0", "-t", "a"], ["-W", "0", "-t", "a"],
        ["-R", "--retained-only", "-t", "a"], ["-F", "%z", "-t", "a"], ["-F", "%10.", "-t", "a"],
        ["-F", "\\q", "-t", "a"], ["-T", "a/#/b", "-t", "a"], ["-r", "-t", "a"],
        ["--random-filter", "0", "-t", "a"], ["-x", "∞", "-V", "5", "-t", "a"],
    ],
    "rr": [
        ["-t", "a", "-m", "x"], ["-e", "a/+", *T], ["-l", "-e", "b", "-t", "a"],
        ["-t", "a", "-e", "b", "-m", "x", "-D", "publish", "response-topic", "c"],
    ],
}


def run_all(kind: str, cases: list[list[str]]) -> list[str]:
    """Each case under both programs, in parallel; the differences, described."""
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda args: run_both(kind, args, b""), cases))
    return [f"{kind} {args}:\n mosquitto {theirs}\n ours      {mine}"
            for args, pair in zip(cases, results)
            for theirs, mine in [[(s, usage(out), err) for s, out, err in pair]] if theirs != mine]


def usage(stdout: bytes) -> bytes:
    """The usage text some refusals print, which is ours and not Mosquitto's."""
    return b"<usage>" if b"\nUsage: mqttgateway-" in stdout else stdout


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_refused_command_lines_match(kind):
    differences = run_all(kind, REFUSED[kind])
    assert not differences, "\n".join(differences)


def test_connection_refused_matches():
    port = str(free_port())
    cases = {"pub": ["-p", port, *T], "sub": ["-p", port, "-t", "a"],
             "rr": ["-p", port, "-e", "r", *T]}
    differences = [d for kind, args in cases.items() for d in run_all(kind, [args, [*args, "-V", "5"]])]
    assert not differences, "\n".join(differences)


FLAG = re.compile(r"^ (-[-\w]+) :", re.M)
NOT_HERE = {"--tls-engine", "--tls-engine-kpass-sha1", "--psk", "--psk-identity", "--proxy", "-S"}


@pytest.mark.parametrize("kind", ["pub", "sub", "rr"])
def test_help_lists_mosquittos_flags_and_version(kind):
    (status, theirs, _), (mine_status, mine, mine_err) = run_both(kind, ["--help"])
    assert mine_status == status == 1 and not mine_err
    assert mine.startswith(theirs.split(b"\n")[0].replace(b"mosquitto_", b"mqttgateway-")[:30])
    missing = set(FLAG.findall(theirs.decode())) - set(FLAG.findall(mine.decode())) - NOT_HERE
    assert not missing, mine.decode()
    usage_line = [line for line in mine.decode().splitlines() if line.startswith("Usage: ")]
    assert usage_line == [f"Usage: mqttgateway-{kind} " + usage_line[0].split(" ", 2)[2]]

    (status, theirs, _), (mine_status, mine, _) = run_both(kind, ["--version"])
    assert mine_status == status == 1
    assert re.fullmatch(rb"mqttgateway-%s version \S+ running on mqttgateway \S+\.\n" % kind.encode(), mine)
    assert as_ours(kind, theirs).startswith(b"mqttgateway-%s version " % kind.encode())


def test_defaults_file_is_read_as_mosquittos(tmp_path):
    """``$XDG_CONFIG_HOME/<program>``: one option a line, then the command line."""
    for name in ("mosquitto_sub", "mqttgateway-sub"):
        (tmp_path / name).write_text("# defaults\n-q 1\n-F %t:%q\n-W 0\n")
    assert run_both("sub", ["-t", "a"], env={"XDG_CONFIG_HOME": str(tmp_path)})[0][0] == 1
    theirs, mine = run_both("sub", ["-t", "a"], env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert mine == theirs and b'Invalid timeout "0"' in mine[2]
