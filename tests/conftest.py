"""Fixtures shared by the test suites; the gateway ones start real subprocesses.

``gateway`` (a factory) and ``shared_gateway`` (one per test module) run
``python -m gateway.cli -c FILE`` or ``twistd -n mqttgateway -c FILE`` from this
checkout with ``PYTHONPATH`` pointing at it, so nothing needs installing. Every
gateway gets a port picked at run time, listens on 127.0.0.1 only, and logs
(stderr) to a file that a test can read while the process runs. ``paho`` hands
out paho-mqtt clients for any of them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import pytest

from tests.e2e.clients import PahoClient
from tests.ports import unused_port

REPO = Path(__file__).resolve().parent.parent
TWISTD = Path(sys.executable).parent / "twistd"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds until the port accepts; only to avoid hangs
STOP_TIMEOUT = 20.0  # seconds for a signalled gateway to exit; only to avoid hangs
LISTENER = re.compile(r"^listener (\d+)\b", re.M)
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    return unused_port(socket.SOCK_STREAM)


def free_udp_port(family: int = socket.AF_INET, host: str = HOST) -> int:
    """A UDP port on ``host`` that nothing was bound to a moment ago."""
    return unused_port(socket.SOCK_DGRAM, family, host)


def gateway_env() -> dict[str, str]:
    """The test run's environment with ``PYTHONPATH`` set to the checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def cli_command(*args: str) -> list[str]:
    """``mqttgateway ARGS`` without installing it."""
    return [sys.executable, "-m", "gateway.cli", *args]


def twistd_command(*args: str, twistd_options: Sequence[str] = ()) -> list[str]:
    """``twistd [OPTIONS] -n mqttgateway ARGS``; the plugin is found via ``PYTHONPATH``."""
    return [str(TWISTD), "--pidfile=", *twistd_options, "-n", "mqttgateway", *args]


def config_text(port: int, lines: Sequence[str] = ()) -> str:
    """A config with one loopback listener on ``port``, anonymous clients, then ``lines``."""
    return "\n".join([f"listener {port} {HOST}", "allow_anonymous true", *lines]) + "\n"


def run_briefly(argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command expected to exit on its own (usage errors, bad configs, --help)."""
    try:
        return subprocess.run(
            list(argv),
            cwd=REPO,
            env=gateway_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{argv} still running after {timeout}s; stderr:\n{e.stderr}")


class Gateway:
    """One gateway subprocess: its ports, its ``Popen``, its log.

    ``probe`` says how ``wait_ready`` tells that it serves: by connecting to ``port``,
    or (False, for a config that names its own listeners) from the log.
    """

    def __init__(
        self,
        argv: Sequence[str],
        ports: Sequence[int],
        workdir: Path,
        config: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
        probe: bool = True,
    ) -> None:
        self.argv = list(argv)
        self.ports = list(ports)
        self.config = config
        self.probe = probe
        self.preexec_fn = preexec_fn
        self.log_path = workdir / "stderr.log"
        self.stdout_path = workdir / "stdout.log"
        self.exit_observed = False
        self.spawn()

    def spawn(self) -> None:
        with open(self.log_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=gateway_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                preexec_fn=self.preexec_fn,
            )

    def __repr__(self) -> str:
        return f"<Gateway pid={self.proc.pid} ports={self.ports} argv={self.argv!r}>"

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.ports[0]

    @property
    def stderr(self) -> str:
        """Everything the gateway logged so far. A thread of the gateway writes its
        log (``gateway.logs``): a line an event just caused may not be here yet, so
        look for one with ``wait_for_log``."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """For assertion messages: the command, its status and its log."""
        status = self.proc.poll()
        state = "running" if status is None else f"exit status {status}"
        return f"{self.argv} ({state}); stderr:\n{self.stderr}"

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for_log(self, text: str, start: int = 0, timeout: float = START_TIMEOUT) -> int:
        """Wait until ``text`` is logged at or after offset ``start``; return the offset past it.

        Take ``start = len(gw.stderr)`` before causing an event to wait for its own line.
        """
        deadline = time.monotonic() + timeout
        while True:
            log = self.stderr
            found = log.find(text, start)
            if found >= 0:
                return found + len(text)
            if not self.running():
                pytest.fail(f"gateway exited before logging {text!r}: {self.describe()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not logged within {timeout}s: {self.describe()}")
            time.sleep(0.02)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll-connect until the port accepts, then close the probe and wait until the
        gateway has seen it go (so it cannot count against ``max_connections``).
        Without ``probe``: ``wait_listening``."""
        if not self.probe:
            self.wait_listening(timeout)
            return
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                pytest.fail(f"gateway exited before accepting connections: {self.describe()}")
            try:
                probe = socket.create_connection((HOST, self.port), timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"port {self.port} not accepting after {timeout}s: {self.describe()}")
                time.sleep(0.05)
                continue
            with probe:
                probe.shutdown(socket.SHUT_WR)
                probe.settimeout(5.0)
                try:
                    probe.recv(1)  # b"" once the gateway has closed its end
                except OSError:
                    pass
            return

    def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the log says each listener listens. No probe connection, so none
        counts against ``max_connections`` or ``max_connection_rate`` of any listener;
        the ports are bound then, and a client is answered once the reactor runs.
        A port someone else took between ``free_port()`` and the bind is replaced in
        the config by a fresh one and the gateway started again: read ``self.ports``."""
        for attempt in range(5):
            deadline = time.monotonic() + timeout
            try:
                for port in self.ports:
                    # To the line's end: "cannot listen on HOST:PORT: [Errno 98] ..." does not match.
                    self.wait_for_log(f" on {HOST}:{port}\n",
                                      timeout=max(0.0, deadline - time.monotonic()))
                return
            except pytest.fail.Exception:
                if (self.running() or self.config is None or attempt == 4
                        or "Address already in use" not in self.stderr):
                    raise
            fresh = [free_port() for _ in self.ports]
            text = self.config.read_text(encoding="utf-8")
            for old, new in zip(self.ports, fresh):
                text = re.sub(rf"^listener {old}\b", f"listener {new}", text, flags=re.M)
            self.config.write_text(text, encoding="utf-8")
            self.ports = fresh
            self.spawn()

    def reload(self, outcome: str) -> int:
        """Send SIGHUP and wait until ``outcome`` is logged after it; return the log
        offset at the signal (``gw.stderr[mark:]`` is what the reload logged)."""
        mark = len(self.stderr)
        self.proc.send_signal(signal.SIGHUP)
        self.wait_for_log(outcome, mark)
        return mark

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to end by itself; kill it (and fail) after ``timeout``."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_observed = True
            pytest.fail(f"gateway still running {timeout}s later, killed: {self.describe()}")
        self.exit_observed = True
        return status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and return the exit status (negative: killed by that signal)."""
        if self.running():
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()


def launch(
    workdir: Path,
    lines: Sequence[str] = (),
    *,
    twistd: bool = False,
    args: Sequence[str] = (),
    twistd_options: Sequence[str] = (),
    use_config: bool = True,
    listener: bool = True,
    preexec_fn: Callable[[], None] | None = None,
) -> Gateway:
    """Start a gateway in ``workdir``; ``use_config=False`` runs ``-p PORT`` without a file.

    The config is one anonymous listener on a free port, then ``lines``; with
    ``listener=False`` it is ``lines`` alone, which name every listener (``gw.ports``,
    in order): the gateway is then ready when the log says each one listens, as a
    probe connection could count against their limits.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = None
    if not listener:
        text = "\n".join(lines) + "\n"
        ports = [int(p) for p in LISTENER.findall(text)]
        assert use_config and ports, "listener=False needs config lines with listeners"
    else:
        ports = [free_port()]
        text = config_text(ports[0], lines)
    if use_config:
        config = workdir / "mqttgateway.conf"
        config.write_text(text, encoding="utf-8")
        args = ["-c", str(config), *args]
    else:
        assert not lines, "config lines need use_config=True"
        args = ["-p", str(ports[0]), *args]
    argv = twistd_command(*args, twistd_options=twistd_options) if twistd else cli_command(*args)
    return Gateway(argv, ports, workdir, config, preexec_fn, probe=listener)


def finish(gw: Gateway) -> str | None:
    """Teardown: stop a running gateway with SIGTERM; return a complaint or None."""
    if gw.exit_observed:
        return None  # the test stopped it and checked the status itself
    if not gw.running():
        gw.exit_observed = True
        return f"gateway exited during the test: {gw.describe()}"
    try:
        gw.proc.send_signal(signal.SIGTERM)
        status = gw.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        gw.kill()
        return f"gateway ignored SIGTERM for {STOP_TIMEOUT}s and was killed: {gw.describe()}"
    finally:
        gw.exit_observed = True
    if status != 0:
        return f"gateway exit status {status} after SIGTERM, expected 0: {gw.describe()}"
    if "mqttgateway stopped" not in gw.stderr:
        return f"no 'mqttgateway stopped' in the log after SIGTERM: {gw.describe()}"
    if "Traceback" in gw.stderr:
        return f"a traceback in the gateway's log: {gw.describe()}"
    return None


def serving(gw: Gateway) -> Iterator[Gateway]:
    """The body of a fixture that owns ``gw``: ``yield from serving(launch(...))`` yields
    it once ready and at teardown requires a clean exit (see ``finish``)."""
    try:
        gw.wait_ready()
        yield gw
    finally:
        complaint = finish(gw)
    assert complaint is None, complaint


def closing(
    make: Callable[..., T],
    close: Callable[[T], object] | None = None,
    ready: Callable[[T], object] | None = None,
) -> Iterator[Callable[..., T]]:
    """The body of a factory fixture: ``yield from closing(PahoClient)`` hands out
    ``PahoClient(...)``, each passed to ``ready`` first when given, and at teardown
    closes every one it made (``close(x)``, or ``x.close()``)."""
    made: list[T] = []

    def factory(*args: Any, **kwargs: Any) -> T:
        thing = make(*args, **kwargs)
        made.append(thing)
        if ready is not None:
            ready(thing)
        return thing

    yield factory
    for thing in made:
        if close is None:
            thing.close()  # type: ignore[attr-defined]
        else:
            close(thing)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Factory: ``gateway(*config_lines, twistd=False, args=(), use_config=True,
    listener=True, wait=True)`` starts a gateway (see ``launch``) and, with ``wait``,
    returns once it is ready. Teardown sends SIGTERM to those still running and
    requires a clean exit: status 0, "mqttgateway stopped" and no traceback in the log."""
    started: list[Gateway] = []

    def start(*lines: str, wait: bool = True, **kwargs: object) -> Gateway:
        gw = launch(tmp_path / f"gateway-{len(started)}", lines, **kwargs)  # type: ignore[arg-type]
        started.append(gw)
        if wait:
            gw.wait_ready()
        return gw

    yield start
    complaints = [c for c in map(finish, started) if c]
    assert not complaints, "\n\n".join(complaints)


@pytest.fixture(scope="module")
def shared_gateway_config() -> list[str]:
    """Config lines for the module's shared gateway; a test module overrides this."""
    return []


@pytest.fixture(scope="module")
def shared_gateway(
    tmp_path_factory: pytest.TempPathFactory, shared_gateway_config: list[str]
) -> Iterator[Gateway]:
    """One ``mqttgateway -c FILE`` for a whole module of quick client tests."""
    yield from serving(launch(tmp_path_factory.mktemp("shared-gateway"), shared_gateway_config))


@pytest.fixture
def paho() -> Iterator[Callable[..., PahoClient]]:
    """``paho(port, client_id, **PahoClient options)``: a paho-mqtt client, not yet connected."""
    yield from closing(PahoClient)
