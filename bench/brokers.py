"""Start and stop the brokers under test and sample their CPU time and RSS.

Both brokers get the same generated Mosquitto-syntax config file::

    listener PORT 127.0.0.1
    allow_anonymous true
    listener WS_PORT 127.0.0.1
    protocol websockets

plus ``max_inflight_messages 20`` (Mosquitto's default, written out so both
brokers are told the same thing).  Every broker runs with RLIMIT_NOFILE
raised to the hard limit.

``Server`` (a process's CPU time, RSS, log and stop), ``spawn``, ``free_port``,
``cpu_of`` and ``host_busy`` also serve the MQTT-SN and CoAP benchmarks.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
BROKERS = ("mqttgateway", "mosquitto")
CONFIG = """\
listener {port} {host}
allow_anonymous true
max_inflight_messages 20
listener {ws_port} {host}
protocol websockets
"""


class BrokerError(Exception):
    """A broker could not be started."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (or, with ``socket.SOCK_DGRAM``, UDP) port on HOST that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def command(name: str, conf: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start broker ``name`` with ``conf``."""
    env = dict(os.environ)
    if name == "mosquitto":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(exe, os.X_OK):
            raise BrokerError("mosquitto binary not found (apt-get install mosquitto)")
        return [exe, "-c", str(conf)], env
    if name == "mqttgateway":
        # PYTHONPATH first so the working tree wins over any installed copy.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        script = Path(sys.executable).parent / "mqttgateway"
        if script.exists():
            return [str(script), "-c", str(conf)], env
        if not (REPO / "gateway" / "cli.py").exists():
            raise BrokerError("gateway/cli.py does not exist yet")
        return [sys.executable, "-c", "from gateway.cli import main; main()",
                "-c", str(conf)], env
    raise BrokerError(f"unknown broker {name!r}")


def spawn(name: str, conf: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start broker ``name`` with ``conf``, its output in ``log`` and RLIMIT_NOFILE raised."""
    argv, env = command(name, conf)
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_raise_nofile)


class Server:
    """A running server process: its CPU time and RSS, its log, stopping it."""

    grace = 5.0  # seconds from SIGTERM to SIGKILL

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.ps = psutil.Process(proc.pid)

    def cpu(self) -> float:
        """User + system CPU seconds used so far."""
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        """Resident set size in bytes."""
        return self.ps.memory_info().rss

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_port(self, port: int) -> None:
        """Return once ``port`` accepts connections; else stop the process and raise
        BrokerError with the tail of its log."""
        try:
            wait_port(self.proc, port)
        except BrokerError as exc:
            self.stop()
            tail = self.log_tail()
            raise BrokerError(f"{self.name}: {exc}" + (f"\n--- log ---\n{tail}" if tail else "")) from None


class Broker(Server):
    """A broker from ``start``, serving MQTT on ``port`` and MQTT over WebSockets on
    ``ws_port``."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes], log: Path,
                 ws_port: int = 0) -> None:
        super().__init__(name, proc, log)
        self.port = port
        self.ws_port = ws_port


def wait_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> None:
    """Poll until ``port`` accepts connections; fail early if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"exited with status {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"port {port} not accepting connections after {timeout:.0f} s")


def start(name: str, workdir: Path) -> Broker:
    """Start ``name`` on a free port; raise BrokerError with the log tail."""
    port, ws_port = free_port(), free_port()
    conf = workdir / f"{name}-{port}.conf"
    conf.write_text(CONFIG.format(port=port, ws_port=ws_port, host=HOST))
    log = workdir / f"{name}-{port}.log"
    broker = Broker(name, port, spawn(name, conf, log), log, ws_port)
    broker.wait_port(port)
    broker.wait_port(ws_port)
    return broker


def cpu_of(procs: list[Any], missing: float = 0.0) -> list[float]:
    """User + system CPU seconds of each process (``missing`` for one that is gone)."""
    out = []
    for p in procs:
        try:
            t = psutil.Process(p.pid).cpu_times()
            out.append(t.user + t.system)
        except psutil.Error:
            out.append(missing)
    return out


def host_busy() -> float:
    """CPU seconds all processes on the host have used (user + system;
    interrupt time, which includes our own loopback traffic, left out)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system
