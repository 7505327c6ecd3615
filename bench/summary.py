"""Medians over repeated runs, the tables of ``bench/run.py`` and their notes.

A cell is the median of the runs that completed, then the range of them in
parentheses; ratios are medians over medians.  Marks carry over from any run:
``!`` a failed sanity check, a busy host, or a generator process at 90 % of a
core; ``*`` a generator process at 50 %.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import brokers
from scenarios import HALF, NOISY, SCENARIOS, Metric


@dataclass
class Run:
    """One scenario against one target: its metrics, or why it has none."""

    repeat: int
    scenario: str
    target: str
    seconds: float
    metrics: list[Metric] = field(default_factory=list)
    error: str = ""
    skipped: str = ""


def raw_line(run: Run, repeats: int) -> str:
    """Every figure of one run on one line, as it is printed when the run ends."""
    head = f"run {run.repeat + 1}/{repeats} {run.scenario} {run.target} ({run.seconds:.0f} s):"
    if run.skipped:
        return f"{head} skipped: {run.skipped}"
    if run.error:
        return f"{head} error: {run.error.splitlines()[0]}"
    return head + " " + "; ".join(f"{m.label} {m.text()}" for m in run.metrics)


@dataclass
class Cell:
    """The runs of one scenario on one target, label by label."""

    values: dict[str, list[float]] = field(default_factory=dict)
    proto: dict[str, Metric] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: str = ""

    def add(self, run: Run) -> None:
        if run.skipped:
            self.skipped = run.skipped
            return
        if run.error:
            self.errors.append(run.error.splitlines()[0])
            return
        self.ok += 1
        for m in run.metrics:
            self.proto.setdefault(m.label, m)
            if m.value is not None and m.value == m.value:
                self.values.setdefault(m.label, []).append(m.value)
            mark = m.mark()
            if mark and self.marks.get(m.label) != "!":
                self.marks[m.label] = mark

    def median(self, label: str) -> float | None:
        vals = self.values.get(label)
        return statistics.median(vals) if vals else None

    def text(self, label: str) -> str:
        if self.skipped:
            return "n/a"
        if not self.ok:
            return "error"
        vals = self.values.get(label)
        m = self.proto.get(label)
        if not vals or m is None:
            return "-"
        out = m.fmt.format(statistics.median(vals)) + self.marks.get(label, "")
        if len(vals) > 1:
            out += f" ({m.fmt.format(min(vals))}–{m.fmt.format(max(vals))})"
        return out


def collect(runs: list[Run]) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    for run in runs:
        cells.setdefault((run.scenario, run.target), Cell()).add(run)
    return cells


def ratio_columns(targets: list[brokers.Target]) -> list[tuple[str, str]]:
    """(numerator, denominator) target names: each gateway over each peer, then the
    first gateway over every other gateway (before/after in the same run)."""
    gateways = [t.name for t in targets if t.kind == "mqttgateway"]
    peers = [t.name for t in targets if t.kind != "mqttgateway"]
    pairs = [(g, p) for g in gateways for p in peers]
    return pairs + [(gateways[0], g) for g in gateways[1:]]


def table(family: str, runs: list[Run], targets: list[brokers.Target]) -> str:
    """One family's table: a row per scenario metric, a column per target, then ratios."""
    scens = list(dict.fromkeys(r.scenario for r in runs if SCENARIOS[r.scenario].family == family))
    cols = [t for t in targets if any(SCENARIOS[s].applies(t.kind) for s in scens)]
    if not scens or not cols:
        return ""
    cells = collect(runs)
    pairs = ratio_columns(cols)
    rows: list[list[str]] = [["scenario", "metric", *(t.name for t in cols),
                              *(f"{a}/{b}" for a, b in pairs)]]
    for scen in scens:
        here = {t.name: cells.get((scen, t.name), Cell()) for t in cols}
        labels = list(dict.fromkeys(lb for c in here.values() for lb in c.proto))
        if not labels:
            rows.append([scen, "error", *(here[t.name].text("") if SCENARIOS[scen].applies(t.kind)
                                           else "" for t in cols), *("" for _ in pairs)])
            continue
        for i, label in enumerate(labels):
            row = [scen if i == 0 else "", label]
            row += [here[t.name].text(label) if SCENARIOS[scen].applies(t.kind) else ""
                    for t in cols]
            for a, b in pairs:
                proto = here[a].proto.get(label) or here[b].proto.get(label)
                x, y = here[a].median(label), here[b].median(label)
                ok = proto is not None and proto.ratio and x is not None and y
                row.append(f"{x / y:.2f}" if ok else "")  # type: ignore[operator]
            rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c < 2 else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def notes(runs: list[Run]) -> list[str]:
    """What a reader must know about the runs behind the table: busy generators,
    a busy host, failures."""
    out: list[str] = []
    busy: dict[tuple[str, str], list[float]] = {}
    noisy: list[str] = []
    for run in runs:
        for m in run.metrics:
            if m.gen and m.value is not None and m.value >= HALF:
                busy.setdefault((run.scenario, run.target), []).append(m.value)
            if m.label.startswith("other procs") and m.value is not None and m.value >= NOISY:
                noisy.append(f"{run.scenario}/{run.target} run {run.repeat + 1} ({m.value:.0f} %)")
    measured = [r for r in runs if r.metrics]
    if not busy and measured:
        out.append(f"Every generator process stayed under {HALF:.0f} % of a core in every run.")
    for (scen, target), vals in busy.items():
        out.append(f"Generator over {HALF:.0f} % of a core: {scen} on {target}, "
                   f"{len(vals)} reading(s), up to {max(vals):.0f} %.")
    if noisy:
        out.append(f"Other processes used {NOISY:.0f} % of a core or more (numbers noisy): "
                   + ", ".join(noisy) + ".")
    for run in runs:
        if run.error:
            out.append(f"{run.scenario} on {run.target}, run {run.repeat + 1}: "
                       f"{run.error.splitlines()[0]}")
    skipped = {(r.scenario, r.target): r.skipped for r in runs if r.skipped}
    for (scen, target), why in skipped.items():
        out.append(f"{scen} on {target}: n/a, {why}")
    return out
