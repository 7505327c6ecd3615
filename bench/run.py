"""Benchmark mqttgateway against Mosquitto (and Node's aedes) with identical load.

Usage (from the repository root)::

    python bench/run.py [--repeat 3] [--duration S] [--warmup S] [--only fanin,qos1|all]
                        [--brokers mqttgateway,mosquitto,aedes,aiocoap]
                        [--gateway NAME=PATH ...] [--gateway-checkout PATH ...]
                        [--out FILE | --no-save]

Every run starts a fresh broker on a free 127.0.0.1 port (the same generated
config for Mosquitto and the gateway), runs the load from forked generator
processes, measures a fixed window after a warm-up, and stops the broker.  With
``--repeat N`` the runs are interleaved: each repeat runs every scenario on
every broker, the brokers' order rotating from one repeat to the next, so a
host that gets busier for a while weighs on all of them.  The tables show the
median of the repeats and their range; ratios are of medians.  Scenarios are
described in ``bench/scenarios.py``; the default set is the one the
performance targets are stated on (``--only all`` adds paho-rtt, paho-pub,
paho-mixed, ws-rtt, sn-idle, coap-non and coap-notify).

Columns: ``mqttgateway`` is this tree.  ``--gateway before=/tmp/gw-old`` adds a
column for the gateway of another checkout (e.g. ``git worktree add --detach
/tmp/gw-old 0e99598``), so before/after figures come from the same run;
``--gateway-checkout PATH`` does the same, named after its commit.
``mosquitto`` is Debian's; ``aedes`` is bench/js/aedes.js and needs
``cd bench/js && npm ci`` first (skipped, with the reason, otherwise);
``aiocoap`` is a bare aiocoap server, the reference of the CoAP scenarios.
``floor-asyncio``, ``floor-uvloop`` and ``floor-twisted`` (only when named in
``--brokers``) are ``bench/floor.py``, a bare QoS 0 forwarder on asyncio's loop,
uvloop's and Twisted's: what a Python broker pays per wake-up before doing a
broker's work, in ``lowrate``.

The output, header first (UTC date, CPU, cores, load average, Python, Twisted,
Mosquitto, node and aedes versions, the commit and imported package of every
gateway, the exact command and settings), then one line per run with all its
figures, then the tables, is written to ``bench/results/run-DATE-TIME.txt``
as it is printed.  With defaults (aedes installed) a run takes about 13 minutes.

CPU figures are % of one core.  ``*`` marks a generator process at 50 % of a
core or more, ``!`` one at 90 % (the generator, not the broker, may be the
limit), a host busy with other work, or a failed sanity check; the notes under
the tables name them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import brokers
import coap_load
import mqttload
import mqttsn_load
import report
import scenarios
import summary
from scenarios import NOISY, SCENARIOS, ScenarioError, Skip

PEERS = ("mosquitto", "aedes", "aiocoap")


def targets_of(args: argparse.Namespace, ap: argparse.ArgumentParser) -> list[brokers.Target]:
    """The columns: this tree's gateway, other checkouts, then the peers asked for."""
    names = [b.strip() for b in args.brokers.split(",") if b.strip()]
    bad = [n for n in names if n not in ("mqttgateway", *PEERS, *brokers.FLOORS)]
    if bad:
        ap.error(f"unknown broker: {', '.join(bad)}")
    out = [brokers.Target("mqttgateway", "mqttgateway")] if "mqttgateway" in names else []
    for spec in args.gateway:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--gateway wants NAME=PATH, not {spec!r}")
        out.append(brokers.Target(name, "mqttgateway", Path(path).resolve()))
    for path in args.gateway_checkout:
        checkout = Path(path).resolve()
        commit = report.git_commit(checkout)
        out.append(brokers.Target(f"gw-{commit[:7]}" if commit != "unknown" else checkout.name,
                                  "mqttgateway", checkout))
    out += [brokers.Target(n, n) for n in (*PEERS, *brokers.FLOORS) if n in names]
    if len({t.name for t in out}) != len(out):
        ap.error("two columns have the same name")
    return out


def available(target: brokers.Target) -> str:
    """Why ``target`` cannot run here, or "" (checked once, before the runs)."""
    try:
        if target.kind == "mqttgateway":
            brokers.gateway_origin(target.checkout)
        elif target.kind == "aiocoap":
            if importlib.util.find_spec("aiocoap") is None:
                return "aiocoap is not installed"
        else:
            brokers.command(target.kind, Path("/dev/null"))
    except (brokers.BrokerError, OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return ""


def versions(targets: list[brokers.Target]) -> list[tuple[str, str]]:
    """Header lines naming everything that ran, down to each gateway's files."""
    import aiocoap.meta
    import twisted

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    out = [("cores", f"{scenarios.CORES} ({platform.machine()}), load average {load} at start"),
           ("twisted", twisted.__version__), ("aiocoap", aiocoap.meta.version)]
    try:
        import uvloop

        loop = f"{uvloop.__version__} (a gateway whose checkout uses it, unless "
        loop += f"MQTTGATEWAY_EVENT_LOOP=asyncio: {os.environ.get('MQTTGATEWAY_EVENT_LOOP', 'unset')})"
    except ImportError:
        loop = "not installed (every gateway on asyncio's loop)"
    out.append(("uvloop", loop))
    peers = brokers.versions()
    kinds = {t.kind for t in targets}
    if "mosquitto" in kinds:
        out.append(("mosquitto", peers["mosquitto"]))
    if "aedes" in kinds:
        out.append(("aedes", f"{peers['aedes']} on node {peers.get('node', '?')}"))
    for t in targets:
        if t.kind == "mqttgateway":
            out.append(("gateway", f"{t.name}: commit {report.git_commit(t.checkout)}, "
                                   f"imports {brokers.gateway_origin(t.checkout)}"))
    return out


def with_module_args(args: argparse.Namespace) -> argparse.Namespace:
    """Add the options of the MQTT-SN and CoAP scenarios (their modules' defaults,
    this run's window and payload)."""
    window = ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    args.sn = mqttsn_load.parser().parse_args(window)
    args.coap = coap_load.parser().parse_args([*window, "--payload", str(args.payload)])
    return args


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs per cell")
    ap.add_argument("--duration", type=float, default=5.0, help="measured window, s")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up before window, s")
    ap.add_argument("--only", default=",".join(scenarios.DEFAULT),
                    help="comma-separated scenarios, or 'all'")
    ap.add_argument("--brokers", default=",".join(("mqttgateway", *PEERS)),
                    help="columns (unavailable peers are skipped with the reason)")
    ap.add_argument("--gateway", action="append", default=[], metavar="NAME=PATH",
                    help="also run the gateway of the checkout at PATH, column NAME")
    ap.add_argument("--gateway-checkout", action="append", default=[], metavar="PATH",
                    help="as --gateway, named gw-COMMIT")
    ap.add_argument("--out", type=Path, help="results file (default bench/results/run-*.txt)")
    ap.add_argument("--no-save", action="store_true", help="print only")
    ap.add_argument("--connections", type=int, default=5000, help="idle: sessions")
    ap.add_argument("--idle-window", type=int, default=12,
                    help="idle: handshakes in flight per generator process (4 x 12 "
                    "stays under Twisted's default listen backlog of 50)")
    ap.add_argument("--payload", type=int, default=64, help="payload bytes")
    ap.add_argument("--batch", type=int, default=1000, help="QoS 0 packets per sendall")
    ap.add_argument("--window", type=int, default=20, help="qos1: messages in flight")
    ap.add_argument("--rate", type=float, default=1000.0, help="lowrate: messages/s")
    ap.add_argument("--no-quickack", action="store_true",
                    help="qos1: leave the client's delayed ACKs on")
    ap.add_argument("--rtt-count", type=int, default=1000,
                    help="paho-rtt: round trips per QoS level (at most --duration s each)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    names = list(SCENARIOS) if args.only == "all" else [
        s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in names if s not in SCENARIOS]
    if bad or args.repeat < 1:
        ap.error(f"unknown scenario: {', '.join(bad)}" if bad else "--repeat must be >= 1")
    chosen = [SCENARIOS[s] for s in names]
    targets = targets_of(args, ap)
    with_module_args(args)
    out = None if args.no_save else (args.out or report.results_file("run"))
    say = report.Tee(out)
    unavailable = {t.name: why for t in targets if (why := available(t))}
    targets = [t for t in targets if t.name not in unavailable]
    try:
        say(report.header(sys.argv if argv is None else [sys.argv[0], *argv],
                          versions(targets)).rstrip("\n"))
    except brokers.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = {k: v for k, v in vars(args).items()
                if k not in ("sn", "coap", "out", "no_save", "gateway", "gateway_checkout")}
    say("# settings " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    for name, why in unavailable.items():
        say(f"# skipped  {name}: {why.splitlines()[0]}")
    limit = mqttload.raise_nofile()
    if "idle" in names and limit < args.connections + 100:
        say(f"# warning  RLIMIT_NOFILE hard limit {limit} < connections")
    before = brokers.host_busy()
    time.sleep(1.0)
    busy = (brokers.host_busy() - before) * 100
    say(f"# host     other processes busy {busy:.0f} % of a core in the second before the run"
        + (" (numbers will be noisy)" if busy >= NOISY else ""))
    say()
    runs = measure(chosen, targets, args, say)
    say(f"\n# load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for family in ("mqtt", "mqttsn", "coap"):
        text = summary.table(family, runs, targets)
        if text:
            say()
            say(text)
    say()
    for line in summary.notes(runs):
        say(line)
    say(f"Cells: median of {args.repeat} run(s) (range). * = a generator process at "
        f"{scenarios.HALF:.0f} % of a core or more; ! = at {scenarios.SATURATED:.0f} % "
        f"(the generator may be the limit), other processes at {NOISY:.0f} % of a core "
        "(busy host), or a failed sanity check.")
    say.close()
    if out:
        print(f"\nwritten to {out}", file=sys.stderr)
    return 1 if any(r.error for r in runs) else 0


def measure(chosen: list[scenarios.Scenario], targets: list[brokers.Target],
            args: argparse.Namespace, say: report.Tee) -> list[summary.Run]:
    """Every repeat of every scenario on every target that applies, the order of
    the targets rotating from one repeat to the next."""
    runs: list[summary.Run] = []
    with tempfile.TemporaryDirectory(prefix="mqttbench-") as tmp:
        for r in range(args.repeat):
            for scen in chosen:
                here = [t for t in targets if scen.applies(t.kind)]
                k = r % len(here) if here else 0
                for target in here[k:] + here[:k]:
                    t0 = time.monotonic()
                    run = summary.Run(r, scen.name, target.name, 0.0)
                    try:
                        run.metrics = scenarios.run_one(scen, target, Path(tmp), args)
                    except Skip as exc:
                        run.skipped = str(exc)
                    except ScenarioError as exc:
                        run.error = str(exc) or "failed"
                    run.seconds = time.monotonic() - t0
                    runs.append(run)
                    say(summary.raw_line(run, args.repeat))
    return runs


if __name__ == "__main__":
    sys.exit(main())
