"""Results files of the benchmarks (run, profile, fuzz, churn, soak): where they go
and their header.

Every file under ``bench/results/`` starts with the facts needed to compare two runs:
date, CPU model, Python version, git commit and the exact command.
"""

from __future__ import annotations

import datetime
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(path: Path = REPO) -> str:
    """The commit checked out at ``path``, ``-dirty`` if its tracked files changed."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def header(argv: list[str] | None = None, extra: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    """The lines every results file starts with, ``extra`` (key, value) pairs last."""
    argv = sys.argv if argv is None else argv
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "\n".join(
        [
            f"# date     {now}",
            f"# cpu      {cpu_model()}",
            f"# python   {platform.python_version()} ({sys.executable})",
            f"# commit   {git_commit()}",
            f"# command  {shlex.join(['python', *argv])}",
            *(f"# {key:8} {value}" for key, value in extra),
            "",
        ]
    )


def results_file(kind: str, suffix: str = ".txt") -> Path:
    """``bench/results/KIND-YYYYmmdd-HHMMSS.txt`` (the folder is created)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return RESULTS / f"{kind}-{stamp}{suffix}"


class Tee:
    """Lines to stdout and to the results file, flushed as they come (a long run
    that is stopped keeps what it had)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "w", encoding="utf-8")

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        if self._fh:
            self._fh.write(text + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()


def versus(rows: list[tuple[str, str, dict[str, float]]], reference: str, label: str) -> str:
    """One line per scenario and metric: the gateway, the ``reference`` server (rows
    named so, headed ``label``) and their ratio."""
    out = [f"{'scenario':16} {'metric':19} {'mqttgateway':>12} {label:>13} {'ratio':>6}"]
    by = {(s, n): m for s, n, m in rows}
    for scen in dict.fromkeys(s for s, _, _ in rows):
        g, c = by.get((scen, "mqttgateway"), {}), by.get((scen, reference), {})
        for metric in g or c:
            gv, cv = g.get(metric, float("nan")), c.get(metric, float("nan"))
            ratio = f"{gv / cv:.2f}" if cv and cv == cv and gv == gv else ""
            out.append(f"{scen:16} {metric:19} {gv:12,.3f} {cv:13,.3f} {ratio:>6}")
    return "\n".join(out)
