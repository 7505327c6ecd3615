"""Profile the gateway under one bench/run.py scenario with py-spy.

Usage (from the repository root, with py-spy in the venv: ``.venv/bin/pip install py-spy``)::

    .venv/bin/python bench/pyspy.py fanin
    .venv/bin/python bench/pyspy.py lowrate --duration 20 --sample-rate 250
    .venv/bin/python bench/pyspy.py sn-qos1 --gateway /tmp/gw-old   # another checkout

Any option of bench/run.py that shapes the load (``--duration``, ``--warmup``,
``--payload``, ``--rate``, ``--connections`` ...) is accepted.  The scenario runs
once against a gateway started as bench/run.py starts it; py-spy attaches to the
gateway process as soon as it listens and samples it (``--function``: one frame
per function, not per line; idle threads left out) until the gateway exits, so
the profile covers the clients' set-up, the warm-up and the measured window.
Time in a system call counts for the Python function that made it, and py-spy
counts a thread blocked in ``Condition.wait`` (the log writer's) as busy;
``--gil`` keeps only samples that hold the GIL: Python code running, without
the system calls.
py-spy needs ptrace rights over the gateway (root, or kernel.yama.ptrace_scope 0).

Written to ``bench/results/``::

    profile-SCENARIO-DATE.txt              header, the run's figures, the top functions
    profile-SCENARIO-DATE.collapsed        py-spy's raw output (flamegraph.pl, speedscope)
    profile-SCENARIO-DATE.speedscope.json  open at https://www.speedscope.app

The text file lists the ``--top`` (25) functions by own time (samples where the
function itself was running) and by cumulative time (samples where it was
anywhere on the stack, counted once per sample).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

import brokers
import report
import run
import scenarios
import summary


def py_spy() -> str:
    """The py-spy next to this Python, else the one on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found (pip install py-spy)")
    return found


def gateway_child() -> int | None:
    """The gateway child process once it listens on TCP (its start-up imports left out)."""
    for child in psutil.Process().children(recursive=True):
        try:
            if any("gateway.cli" in part for part in child.cmdline()) and any(
                    c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp")):
                return child.pid
        except psutil.Error:
            continue
    return None


class Spy(threading.Thread):
    """Waits for the gateway child process, then runs py-spy on it until it exits."""

    def __init__(self, output: Path, rate: int, gil: bool) -> None:
        super().__init__(daemon=True)
        self.output = output
        self.rate = rate
        self.gil = gil
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = b""

    def run(self) -> None:
        while not self.stopping.is_set():
            pid = gateway_child()
            if pid is not None:
                break
            time.sleep(0.005)
        else:
            return
        self.proc = subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--function",
             "--rate", str(self.rate), "--output", str(self.output),
             *(["--gil"] if self.gil else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = self.proc.communicate()[0]


def top(collapsed: Path, n: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples in all, and the ``n`` functions with most own and most cumulative samples."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        k = int(count)
        total += k
        own[frames[-1]] += k
        for frame in set(frames):
            cumulative[frame] += k
    return total, own.most_common(n), cumulative.most_common(n)


def speedscope(collapsed: Path, output: Path, name: str) -> None:
    """The collapsed stacks as a speedscope "sampled" profile."""
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples.append([index.setdefault(f, len(index)) for f in stack.split(";")])
        weights.append(int(count))
    doc = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": f} for f in index]},
        "profiles": [{"type": "sampled", "name": name, "unit": "none", "startValue": 0,
                      "endValue": sum(weights), "samples": samples, "weights": weights}],
        "name": name, "exporter": "bench/pyspy.py",
    }
    output.write_text(json.dumps(doc))


def ranking(title: str, rows: list[tuple[str, int]], total: int) -> list[str]:
    out = [f"{title} (of {total:,} samples)", f"{'samples':>8} {'%':>6}  function (file:first line)"]
    out += [f"{k:8,} {k / total * 100:6.1f}  {frame}" for frame, k in rows]
    return out


def scenario_parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a tool that runs one bench/run.py scenario against one
    gateway checkout (this one and bench/syscalls.py); ``doc``: its module docstring."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0],
                                 epilog="Other options are bench/run.py's.")
    ap.add_argument("scenario", choices=sorted(scenarios.SCENARIOS))
    ap.add_argument("--gateway", type=Path, default=brokers.REPO,
                    help="checkout whose gateway runs (default: this tree)")
    return ap


def parse_scenario(ap: argparse.ArgumentParser, argv: list[str] | None) -> tuple[
        argparse.Namespace, argparse.Namespace, Any, brokers.Target]:
    """The tool's own options, bench/run.py's, the scenario and the gateway target."""
    own, rest = ap.parse_known_args(argv)
    args = run.with_module_args(run.parser().parse_args(rest))
    scen = scenarios.SCENARIOS[own.scenario]
    target = brokers.Target("mqttgateway", "mqttgateway", own.gateway.resolve())
    if not scen.applies(target.kind):
        ap.error(f"{own.scenario} does not run on the gateway")
    return own, args, scen, target


def gateway_header(checkout: Path) -> tuple[str, str]:
    """The results header line naming the gateway checkout that ran."""
    return ("gateway", f"commit {report.git_commit(checkout)}, imports "
                       f"{brokers.gateway_origin(checkout)}")


def run_once(scen: Any, target: brokers.Target, args: argparse.Namespace) -> summary.Run:
    """Run the scenario once; its figures, or the error that stopped it."""
    t0 = time.monotonic()
    result = summary.Run(0, scen.name, target.name, 0.0)
    with tempfile.TemporaryDirectory(prefix="mqttprofile-") as tmp:
        try:
            result.metrics = scenarios.run_one(scen, target, Path(tmp), args)
        except (scenarios.ScenarioError, scenarios.Skip) as exc:
            result.error = str(exc)
    result.seconds = time.monotonic() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    ap = scenario_parser(__doc__)
    ap.add_argument("--sample-rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25, help="functions listed per ranking")
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    ap.add_argument("--out", type=Path, help="results text file (the others are named after it)")
    own, args, scen, target = parse_scenario(ap, argv)
    text = own.out or report.results_file(f"profile-{own.scenario}")
    collapsed = text.with_suffix(".collapsed")
    version = subprocess.run([py_spy(), "--version"], capture_output=True, text=True).stdout
    say = report.Tee(text)
    say(report.header(sys.argv if argv is None else [sys.argv[0], *argv], [
        gateway_header(target.checkout),
        ("py-spy", f"{version.strip()}, {own.sample_rate} samples/s, --function"
                   + (", --gil" if own.gil else "")),
    ]).rstrip("\n"))
    spy = Spy(collapsed, own.sample_rate, own.gil)
    spy.start()
    result = run_once(scen, target, args)
    spy.stopping.set()
    spy.join(30)
    say()
    say(summary.raw_line(result, 1))
    if not collapsed.exists():
        say(f"py-spy wrote nothing: {spy.log.decode(errors='replace').strip()[-500:]}")
        return 1
    speedscope(collapsed, text.with_suffix(".speedscope.json"), f"{own.scenario} {text.stem}")
    total, by_own, by_cum = top(collapsed, own.top)
    if not total:
        say("no samples")
        return 1
    say()
    for line in ranking("Own time", by_own, total) + [""] + ranking("Cumulative time", by_cum, total):
        say(line)
    say()
    say(f"raw stacks: {collapsed.relative_to(brokers.REPO) if collapsed.is_relative_to(brokers.REPO) else collapsed}")
    say.close()
    return 1 if result.error else 0


if __name__ == "__main__":
    sys.exit(main())
