"""Start and stop the brokers under test and sample their CPU time and RSS.

Both brokers get the same generated Mosquitto-syntax config file::

    listener PORT 127.0.0.1
    allow_anonymous true

plus ``max_inflight_messages 20`` (Mosquitto's default, written out so both
brokers are told the same thing).  Every broker runs with RLIMIT_NOFILE
raised to the hard limit.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
BROKERS = ("mqttgateway", "mosquitto")
CONFIG = """\
listener {port} {host}
allow_anonymous true
max_inflight_messages 20
"""


class BrokerError(Exception):
    """A broker could not be started."""


def free_port() -> int:
    """A TCP port on HOST that was free a moment ago."""
    with socket.socket() as s:
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


@dataclass
class Broker:
    """A running broker process."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

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
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
    port = free_port()
    conf = workdir / f"{name}-{port}.conf"
    conf.write_text(CONFIG.format(port=port, host=HOST))
    argv, env = command(name, conf)
    log = workdir / f"{name}-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_raise_nofile)
    broker = Broker(name, port, proc, log)
    try:
        wait_port(proc, port)
    except BrokerError as exc:
        broker.stop()
        tail = broker.log_tail()
        raise BrokerError(f"{name}: {exc}" + (f"\n--- log ---\n{tail}" if tail else "")) from None
    return broker
