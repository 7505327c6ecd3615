"""Run ``mqttgateway-pub/sub/rr`` and Mosquitto's own clients side by side.

``ours(kind)`` is the installed console script when this environment has it
(``pip install .``), else ``python -m gateway.clients.KIND`` from the checkout;
``theirs(kind)`` is Debian's ``mosquitto_KIND``. ``Client`` runs one of them with
its output collected as it comes, so a test can wait until a subscriber has
printed its first line (the retained message every subscription starts with)
before publishing, rather than sleeping.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.conftest import REPO, gateway_env

WAIT = 15.0  # an upper bound for anything to happen; never a measurement
MOSQUITTO = {"pub": "mosquitto_pub", "sub": "mosquitto_sub", "rr": "mosquitto_rr"}
AUTO_ID = re.compile(rb"auto-[0-9A-Fa-f-]{36}")


def ours(kind: str) -> list[str]:
    script = Path(sys.executable).parent / f"mqttgateway-{kind}"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", f"gateway.clients.{kind}"]


def theirs(kind: str) -> list[str]:
    return [MOSQUITTO[kind]]


def as_ours(kind: str, data: bytes) -> bytes:
    """Mosquitto's text with our program's name, for comparison."""
    return data.replace(MOSQUITTO[kind].encode(), f"mqttgateway-{kind}".encode())


class Client:
    """One client subprocess; stdout and stderr are read by threads as they come.
    ``kill_all()`` ends those still running (a failed test leaves subscribers behind)."""

    started: list[Client] = []

    def __init__(self, argv: Sequence[str], stdin: bytes | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, env={**gateway_env(), **(env or {})}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = bytearray()
        self.err = bytearray()
        self._readers = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                         for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()
        Client.started.append(self)
        assert self.proc.stdin is not None
        if stdin:
            self.proc.stdin.write(stdin)
        self.proc.stdin.close()

    @staticmethod
    def _read(stream, buffer: bytearray) -> None:  # noqa: ANN001
        for chunk in iter(lambda: stream.read1(65536), b""):
            buffer += chunk

    def wait_for(self, test: Callable[[bytes], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not test(bytes(self.out)):
            # Asked once per turn: a client that exits between two asks would be
            # failed without its last output being read.
            exited = self.proc.poll() is not None
            if exited:
                for t in self._readers:  # what it wrote before exiting may still be in the pipe
                    t.join(WAIT)
                if test(bytes(self.out)):
                    return
            if exited or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"{self.argv}: no {what}; status {self.proc.poll()}, "
                                     f"stdout {bytes(self.out)!r}, stderr {bytes(self.err)!r}")
            time.sleep(0.01)

    @classmethod
    def kill_all(cls) -> None:
        for c in cls.started:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        cls.started.clear()

    def finish(self) -> tuple[int, bytes, bytes]:
        """Wait for the exit: (status, stdout, stderr)."""
        try:
            status = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.argv} still running after {WAIT}s; "
                                 f"stdout {bytes(self.out)!r}, stderr {bytes(self.err)!r}") from None
        for t in self._readers:
            t.join(WAIT)
        return status, bytes(self.out), bytes(self.err)


def run_both(kind: str, args: Sequence[str], stdin: bytes | None = None,
             env: dict[str, str] | None = None,
             ) -> tuple[tuple[int, bytes, bytes], tuple[int, bytes, bytes]]:
    """Mosquitto's client and ours with the same arguments: (theirs, ours), each
    (status, stdout, stderr), Mosquitto's texts renamed to our program."""
    mine = Client([*ours(kind), *args], stdin, env)
    status, out, err = Client([*theirs(kind), *args], stdin, env).finish()
    return (status, as_ours(kind, out), as_ours(kind, err)), mine.finish()
