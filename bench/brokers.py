"""Start and stop the brokers under test and sample their CPU time and RSS.

Mosquitto and every gateway checkout get the same generated Mosquitto-syntax
config file::

    listener PORT 127.0.0.1
    allow_anonymous true
    max_inflight_messages 20

(``max_inflight_messages`` is Mosquitto's default, written out so both are told
the same thing), plus, only when a scenario needs it (``ws-rtt``)::

    listener WS_PORT 127.0.0.1
    protocol websockets

so a checkout from before the WebSockets listener still starts.  Node's aedes
(``bench/js/aedes.js``, after ``cd bench/js && npm ci``) takes its ports on the
command line and runs with its defaults.  Every broker runs with RLIMIT_NOFILE
raised to the hard limit.

A ``Target`` is one column of the results: a broker kind plus, for the gateway,
the checkout it runs from.  The gateway is started as ``python -c "from
gateway.cli import main; main()"`` with the checkout as working directory and
first on PYTHONPATH, never through the venv's ``mqttgateway`` script, so an
installed copy of the package cannot stand in for the tree under test
(``gateway_origin`` shows which file was imported).  ``floor-asyncio``,
``floor-uvloop`` and ``floor-twisted`` (``bench/floor.py``) are bare QoS 0
forwarders, asked for by name.

``Server`` (a process's CPU time, RSS, log and stop), ``spawn``, ``free_port``,
``cpu_of`` and ``host_busy`` also serve the MQTT-SN and CoAP benchmarks.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the checkout, for tests.ports
from tests.ports import unused_port  # noqa: E402

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
BROKERS = ("mqttgateway", "mosquitto", "aedes")
#: bench/floor.py: a bare QoS 0 forwarder on asyncio, uvloop or Twisted, the floor of a Python broker.
FLOORS = ("floor-asyncio", "floor-uvloop", "floor-twisted")
JS = REPO / "bench" / "js"
CONFIG = """\
listener {port} {host}
allow_anonymous true
max_inflight_messages 20
"""
WS_CONFIG = """\
listener {ws_port} {host}
protocol websockets
"""


class BrokerError(Exception):
    """A broker could not be started."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (or, with ``socket.SOCK_DGRAM``, UDP) port on HOST that was free a moment
    ago, never one this run handed out before (``tests/ports.py``)."""
    return unused_port(kind, socket.AF_INET, HOST)


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class Target:
    """One column of the results: ``kind`` is mqttgateway, mosquitto, aedes or aiocoap
    (CoAP only); a gateway runs from ``checkout``."""

    name: str
    kind: str
    checkout: Path = REPO


def gateway_env(checkout: Path) -> dict[str, str]:
    """The environment a gateway from ``checkout`` runs in: the checkout first on
    PYTHONPATH, ahead of any installed copy of the package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(checkout), env.get("PYTHONPATH", "")) if p)
    return env


def gateway_origin(checkout: Path) -> str:
    """The ``gateway/__init__.py`` a gateway started from ``checkout`` imports.

    Raises BrokerError when it is not the checkout's own (an installed copy won).
    """
    out = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"],
                         env=gateway_env(checkout), cwd=checkout, capture_output=True,
                         text=True, timeout=60)
    origin = out.stdout.strip()
    if out.returncode or not Path(origin).resolve().is_relative_to(checkout.resolve()):
        raise BrokerError(f"{checkout}: imports {origin or out.stderr.strip()[-200:]}, "
                          "not the checkout's gateway package")
    return origin


def command(name: str, conf: Path, checkout: Path = REPO, ports: tuple[int, ...] = ()
            ) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start broker ``name`` with ``conf`` (aedes: on
    ``ports``, MQTT first)."""
    if name == "mosquitto":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(exe, os.X_OK):
            raise BrokerError("mosquitto binary not found (apt-get install mosquitto)")
        return [exe, "-c", str(conf)], dict(os.environ)
    if name == "mqttgateway":
        if not (checkout / "gateway" / "cli.py").exists():
            raise BrokerError(f"{checkout}/gateway/cli.py does not exist")
        return [sys.executable, "-c", "from gateway.cli import main; main()",
                "-c", str(conf)], gateway_env(checkout)
    if name in FLOORS:
        kind = {"floor-twisted": ["--twisted"], "floor-uvloop": ["--uvloop"]}.get(name, [])
        return [sys.executable, str(REPO / "bench" / "floor.py"), *kind, "-c", str(conf)], \
            dict(os.environ)
    if name == "aedes":
        node = shutil.which("node")
        if node is None:
            raise BrokerError("node not found (apt-get install nodejs)")
        if not (JS / "node_modules" / "aedes").is_dir():
            raise BrokerError(f"aedes is not installed (cd {JS.relative_to(REPO)} && npm ci)")
        return [node, str(JS / "aedes.js"), *map(str, ports)], dict(os.environ)
    raise BrokerError(f"unknown broker {name!r}")


def knows_key(checkout: Path, key: str) -> bool:
    """Whether the gateway of ``checkout`` has config key ``key`` (an older checkout
    compared side by side refuses the keys it predates)."""
    return any(f'"{key}"' in path.read_text(encoding="utf-8")
               for pattern in ("config.py", "config/*.py")
               for path in (checkout / "gateway").glob(pattern))


def spawn(name: str, conf: Path, log: Path, checkout: Path = REPO,
          ports: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """Start broker ``name`` with ``conf``, its output in ``log`` and RLIMIT_NOFILE raised."""
    argv, env = command(name, conf, checkout, ports)
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=checkout, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_raise_nofile)


def versions() -> dict[str, str]:
    """Versions of the peers a results file should name: Mosquitto, node, aedes."""
    out: dict[str, str] = {}
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    try:
        # ``mosquitto -h`` prints its version first and exits 3.
        res = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=10)
        out["mosquitto"] = (res.stdout or res.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        out["mosquitto"] = "not found"
    node = shutil.which("node")
    if node:
        res = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
        out["node"] = res.stdout.strip()
    try:
        meta = json.loads((JS / "node_modules" / "aedes" / "package.json").read_text())
        out["aedes"] = meta["version"]
    except (OSError, ValueError, KeyError):
        out["aedes"] = "not installed (cd bench/js && npm ci)"
    return out


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

    def cpu_ns(self) -> int:
        """CPU nanoseconds so far, from the process's CPU-time clock.

        ``cpu()`` counts in clock ticks (10 ms): too coarse for a broker that uses
        a tenth of a second in a whole window.  The clock id of process PID is
        ``~PID << 3 | 2`` (Linux's CPUCLOCK_SCHED), what clock_getcpuclockid(3)
        returns, which Python does not expose.
        """
        return time.clock_gettime_ns((~self.proc.pid << 3) | 2)

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


def start(target: Target | str, workdir: Path, ws: bool = False) -> Broker:
    """Start ``target`` on a free port (and a WebSockets port with ``ws``); raise
    BrokerError with the log tail."""
    if isinstance(target, str):
        target = Target(target, target)
    port = free_port()
    ws_port = free_port() if ws else 0
    conf = workdir / f"{target.name}-{port}.conf"
    conf.write_text(CONFIG.format(port=port, host=HOST)
                    + (WS_CONFIG.format(ws_port=ws_port, host=HOST) if ws else ""))
    log = workdir / f"{target.name}-{port}.log"
    ports = (port, ws_port) if ws else (port,)
    proc = spawn(target.kind, conf, log, target.checkout, ports)
    broker = Broker(target.name, port, proc, log, ws_port)
    broker.wait_port(port)
    if ws:
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
