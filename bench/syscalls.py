"""Where the gateway's CPU goes under one bench/run.py scenario: user against system
time, and the system calls it makes per message.

Usage (from the repository root; strace installed, root or ptrace rights)::

    .venv/bin/python bench/syscalls.py lowrate
    .venv/bin/python bench/syscalls.py lowrate --window 4 --gateway /tmp/gw-old

The scenario runs once against a gateway started as bench/run.py starts it. After
the warm-up plus a second, the gateway's user and system CPU times (``/proc/PID/stat``)
are read over ``--window`` seconds; then ``strace -c -f`` is attached for another
window (strace slows every system call, so the CPU split is taken without it). Both
windows must fit in the scenario's ``--duration``. Messages per second come from
the scenario's own result, so the per-message figures assume a steady rate (paced
scenarios such as ``lowrate``). Written to ``bench/results/syscalls-SCENARIO-DATE.txt``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyspy
import report
import summary

TICK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


class Probe(threading.Thread):
    """Waits for the gateway, then measures its CPU split and traces its calls."""

    def __init__(self, start_after: float, window: float) -> None:
        super().__init__(daemon=True)
        self.start_after = start_after
        self.window = window
        self.split: tuple[float, float, float] | None = None  # user s, system s, wall s
        self.trace = ""

    def run(self) -> None:
        pid = None
        deadline = time.monotonic() + 60
        while pid is None and time.monotonic() < deadline:
            pid = pyspy.gateway_child()
            time.sleep(0.005)
        if pid is None:
            return
        time.sleep(self.start_after)
        t0, (u0, s0) = time.monotonic(), cpu_times(pid)
        time.sleep(self.window)
        t1, (u1, s1) = time.monotonic(), cpu_times(pid)
        self.split = (u1 - u0, s1 - s0, t1 - t0)
        proc = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(self.window)
        proc.send_signal(signal.SIGINT)  # strace detaches and prints its table
        self.trace = proc.communicate(timeout=30)[0]


def main(argv: list[str] | None = None) -> int:
    ap = pyspy.scenario_parser(__doc__)
    ap.add_argument("--window", type=float, default=4.0, help="seconds per measurement")
    ap.add_argument("--out", type=Path, help="results file")
    own, args, scen, target = pyspy.parse_scenario(ap, argv)
    if 1 + 2 * own.window > args.duration:
        ap.error(f"two windows of {own.window} s do not fit in --duration {args.duration}")
    say = report.Tee(own.out or report.results_file(f"syscalls-{own.scenario}"))
    say(report.header(sys.argv if argv is None else [sys.argv[0], *argv],
                      [pyspy.gateway_header(target.checkout)]).rstrip("\n"))
    probe = Probe(args.warmup + 1, own.window)
    probe.start()
    result = pyspy.run_once(scen, target, args)
    probe.join(60)
    say()
    say(summary.raw_line(result, 1))
    rate = next((m.value for m in result.metrics if m.label == "msgs/s"), None) \
        if result.metrics else None
    if probe.split is None or not rate:
        say("no measurement (the gateway did not start, or the scenario has no msgs/s)")
        return 1
    user, system, wall = probe.split
    n = rate * wall
    say()
    say(f"CPU over {wall:.1f} s at {rate:,.0f} msgs/s: user {user / n * 1e6:.1f} µs/msg, "
        f"system {system / n * 1e6:.1f} µs/msg ({user / (user + system) * 100:.0f} % user)")
    say(f"clock ticks of {1 / TICK * 1000:.0f} ms: user {user * TICK:.0f}, system {system * TICK:.0f}")
    say()
    say(f"strace -c -f over {own.window:.1f} s (about {rate * own.window:,.0f} messages "
        "at the scenario's rate; strace slows each call):")
    say(probe.trace.rstrip())
    say.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
