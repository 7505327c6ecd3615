"""A real Mosquitto for the bridge tests: started by the test on loopback ports picked
at run time, stopped and started again on the same ports, its log kept in a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import HOST, free_port

WAIT = 10.0  # seconds for Mosquitto to start or stop; only to avoid hangs


class Mosquitto:
    """``mosquitto -c FILE`` with one listener per entry of ``listeners`` (extra config
    lines for that listener), anonymous clients allowed, ``settings`` before them and
    persistence in its directory (so a SIGTERM keeps its sessions and queues)."""

    def __init__(self, directory: Path, listeners: list[str] | None = None, settings: str = "") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.listeners = listeners or [""]
        self.ports = [free_port() for _ in self.listeners]
        self.settings = settings
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def config(self) -> str:
        # As root, Mosquitto would switch to the "mosquitto" user and lose tmp_path.
        lines = ["user root"] if os.geteuid() == 0 else []
        lines += ["allow_anonymous true", "persistence true", f"persistence_location {self.directory}/",
                  "max_queued_messages 0", f"log_dest file {self.log}", "log_type all",
                  self.settings]
        for port, extra in zip(self.ports, self.listeners):
            lines += [f"listener {port} {HOST}", extra]
        return "\n".join(lines) + "\n"

    def start(self) -> Mosquitto:
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT
        for port in self.ports:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"mosquitto exited ({self.proc.returncode}): {self.log_text()}")
                try:
                    socket.create_connection((HOST, port), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"mosquitto not listening on {port}") from None
                    time.sleep(0.02)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, text: str, start: int = 0, timeout: float = WAIT) -> int:
        """Wait until ``text`` is in the log at or after ``start``; the offset past it."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            found = log.find(text, start)
            if found >= 0:
                return found + len(text)
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in mosquitto's log within {timeout}s:\n{log[-3000:]}")
            time.sleep(0.02)
