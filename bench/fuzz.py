"""Long fuzzing run of every decoder and parser: round trips, then millions of inputs.

Usage (from the repository root)::

    python bench/fuzz.py [--inputs 1000000] [--targets mqtt5,mqttsn] [--seed 1]
                         [--corpus 1000] [--slow 0.5] [--hang 10]

Per target, the strategies of ``tests/strategies.py`` (hypothesis, with a fixed seed)
draw a corpus of valid messages; each is checked to round-trip (``decode(encode(x))
== x``, fed whole, byte by byte and cut at random points). Then ``--inputs`` inputs,
mutations of the corpus by a ``random.Random(seed)`` (bytes overwritten, flipped,
inserted, deleted, duplicated, spliced, dictionary tokens, truncation; some inputs
are plain random bytes), go to the decoder. An input may be decoded or refused with
the codec's own error (``MQTTError``, ``MQTTSNError``, ``ConfigError`` with the
file and line; the XBee decoder never raises); anything else, a decode slower than
``--slow`` seconds, or one that hangs past ``--hang`` seconds is a finding, and its
input is saved under ``bench/results/fuzz-findings/``. The same seed replays the
same inputs.

Targets: mqtt3, mqtt4, mqtt5 (``gateway.mqtt.codec.Decoder`` at that protocol
level, input fed in up to three chunks), mqttsn (``gateway.mqttsn.codec.decode``,
and the inner message of an encapsulation), xbee1, xbee2 (``FrameDecoder`` in API
mode 1 or 2), config (``gateway.config.parse``), passwords (``PasswordFile.parse``),
acl (``AclFile.parse``). The report goes to stdout and to
``bench/results/fuzz-DATE.txt``.
"""

from __future__ import annotations

import _thread
import argparse
import random
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import report  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gateway.config import KEYS, parse  # noqa: E402
from gateway.errors import ConfigError  # noqa: E402
from gateway.security.acl import AclFile  # noqa: E402
from gateway.security.passwords import PasswordFile  # noqa: E402
from gateway.mqtt.codec import Decoder, MQTTError, encode  # noqa: E402
from gateway.mqtt.packets import Connect  # noqa: E402
from gateway.mqttsn import codec as sn  # noqa: E402
from gateway.mqttsn.xbee import FrameDecoder, wrap  # noqa: E402
from tests import strategies as S  # noqa: E402

FINDINGS = report.RESULTS / "fuzz-findings"
INTERESTING = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x7E, 0x7D, 0x11, 0x13, 0xFE, 0x10, 0x20, 0x30, 0x82]
MQTT_TOKENS = [b"\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x01", b"\x00\x00", b"\xff\xff", b"\x00\x04MQTT\x05",
               b"\x00\x06MQIsdp\x03", b"\x26\x00\x00\x00\x00", b"\x0b\x00", b"\x23\x00\x00", b"\xc0\x00"]
SN_TOKENS = [b"\x01\x00\x00", b"\x01\xff\xff", b"\xfe", b"\x03\xfe\x00", b"\x02\x16", b"\xc3", b"\xff\xfe"]
XBEE_TOKENS = [b"\x7e", b"\x7d", b"\x7d\x5e", b"\x7e\x00\x01", b"\x7e\x02\x00", b"\x90", b"\x8b"]
CONFIG_TOKENS = [w.encode() for w in (*KEYS, *S.CONFIG_WORDS, "\n", "\r\n", " ", "\t", "#", "listener 1883\n")]
PASSWORD_TOKENS = [b":", b"$6$", b"$7$", b"$7$101$", b"$", b"\n", b"==", b"#", b"\xc3\x28"]
ACL_TOKENS = [b"topic ", b"pattern ", b"user ", b"read ", b"write ", b"readwrite ", b"deny ", b"#", b"+", b"/",
              b"%c", b"%u", b"\n", b" "]


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, 2)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@dataclass
class Target:
    """One decoder: how to draw valid inputs, check their round trip, and decode noise."""

    name: str
    strategy: st.SearchStrategy
    to_bytes: Callable[[Any], bytes]
    round_trip: Callable[[Any, bytes, random.Random], None] | None
    run: Callable[[bytes, random.Random], None]
    expected: tuple[type[BaseException], ...]
    tokens: list[bytes]
    check_error: Callable[[BaseException, bytes], str | None] = lambda e, data: None


# --- the targets -----------------------------------------------------------------------


def _mqtt(level: int) -> Target:
    def decoder() -> Decoder:
        d = Decoder(1 << 20)
        d.protocol_level = level
        return d

    def feed(d: Decoder, parts: list[bytes]) -> list:
        out: list = []
        for part in parts:
            got = d.feed(part)
            while got and type(got[-1]) is Connect and d.buffered:
                out += got
                got = d.feed(b"")  # the decoder pauses after a CONNECT, as for the transport
            out += got
        return out

    def round_trip(packet: Any, wire: bytes, rng: random.Random) -> None:
        for parts in ([wire], S.byte_by_byte(wire), chunks(wire, rng)):
            got = feed(decoder(), parts)
            assert got == [packet], f"decoded {got!r}"

    def run(data: bytes, rng: random.Random) -> None:
        feed(decoder(), chunks(data, rng))

    def check(e: BaseException, data: bytes) -> str | None:
        return None if e.reason >= 0x80 else f"MQTTError with reason {e.reason:#x}"  # type: ignore[attr-defined]

    return Target(f"mqtt{level}", S.mqtt_packet(level), lambda p: encode(p, level), round_trip, run,
                  (MQTTError,), MQTT_TOKENS, check)


def _mqttsn() -> Target:
    def round_trip(msg: Any, wire: bytes, rng: random.Random) -> None:
        got = sn.decode(wire)
        assert got == msg, f"decoded {got!r}"
        assert sn.frame_length(wire + b"\x02\x16")[0] == len(wire), "frame_length"  # type: ignore[index]

    def run(data: bytes, rng: random.Random) -> None:
        msg = sn.decode(data)
        if isinstance(msg, sn.Encapsulated):
            sn.decode(msg.message)

    return Target("mqttsn", S.mqttsn_message(), sn.encode, round_trip, run, (sn.MQTTSNError,), SN_TOKENS)


def _xbee(mode: int) -> Target:
    def round_trip(frame: Any, wire: bytes, rng: random.Random) -> None:
        for parts in ([wire], S.byte_by_byte(wire), chunks(wire, rng)):
            d = FrameDecoder(mode)
            got = [f for part in parts for f in d.feed(part)]
            assert got == [frame], f"decoded {got!r}"

    def run(data: bytes, rng: random.Random) -> None:
        d = FrameDecoder(mode)
        for part in chunks(data, rng):
            d.feed(part)

    return Target(f"xbee{mode}", S.xbee_frame(), lambda f: wrap(S.xbee_frame_data(f), mode), round_trip, run,
                  (), XBEE_TOKENS)


def _located(path: str) -> Callable[[BaseException, bytes], str | None]:
    def check(e: BaseException, data: bytes) -> str | None:
        assert isinstance(e, ConfigError)
        if e.path != path:
            return None if e.path and Path(e.path).exists() else f"error names {e.path!r}"  # an included file
        lines = data.count(b"\n") + 1
        if not 1 <= e.line <= lines:
            return f"error at line {e.line} of {lines}"
        return None

    return check


def _config() -> Target:
    def run(data: bytes, rng: random.Random) -> None:
        parse(data.decode("utf-8", "replace"), "fuzz.conf")

    return Target("config", S.CONFIG_TEXT, str.encode, None, run, (ConfigError,), CONFIG_TOKENS,
                  _located("fuzz.conf"))


def _passwords() -> Target:
    return Target("passwords", S.PASSWORD_FILE, bytes, None,
                  lambda data, rng: PasswordFile.parse(data, "fuzz.passwd") and None, (ConfigError,),
                  PASSWORD_TOKENS, _located("fuzz.passwd"))


def _acl() -> Target:
    return Target("acl", S.ACL_FILE, bytes, None, lambda data, rng: AclFile.parse(data, "fuzz.acl") and None,
                  (ConfigError,), ACL_TOKENS, _located("fuzz.acl"))


TARGETS: dict[str, Callable[[], Target]] = {
    "mqtt3": lambda: _mqtt(3), "mqtt4": lambda: _mqtt(4), "mqtt5": lambda: _mqtt(5), "mqttsn": _mqttsn,
    "xbee1": lambda: _xbee(1), "xbee2": lambda: _xbee(2), "config": _config, "passwords": _passwords,
    "acl": _acl,
}


# --- corpus and mutation -------------------------------------------------------------------


def draw_corpus(strategy: st.SearchStrategy, n: int, seed_value: int) -> list[Any]:
    """``n`` examples of ``strategy``, the same ones for the same seed."""
    out: list[Any] = []

    @seed(seed_value)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x: Any) -> None:
        out.append(x)

    collect()
    return out


def mutate(data: bytes, rng: random.Random, corpus: list[bytes], tokens: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 3:
            i = rng.randint(0, n)
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 4 and n:
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, 8)]
        elif op == 5 and n:
            i = rng.randrange(n)
            buf[i:i] = buf[i : i + rng.randint(1, 16)]
        elif op == 6:
            other = rng.choice(corpus)
            buf[rng.randint(0, n):] = other[rng.randint(0, len(other)):]
        elif tokens:
            i = rng.randint(0, n)
            buf[i:i] = rng.choice(tokens)
    if rng.random() < 0.15:
        del buf[rng.randint(0, len(buf)):]
    return bytes(buf)


def next_input(rng: random.Random, corpus: list[bytes], tokens: list[bytes]) -> bytes:
    r = rng.random()
    if r < 0.05:
        return rng.randbytes(rng.randint(0, 300))
    if r < 0.12:
        return mutate(rng.choice(corpus) + rng.choice(corpus), rng, corpus, tokens)
    return mutate(rng.choice(corpus), rng, corpus, tokens)


# --- running ------------------------------------------------------------------------------


class Watchdog(threading.Thread):
    """Interrupts the main thread when one input runs past ``bound`` seconds."""

    def __init__(self, bound: float) -> None:
        super().__init__(daemon=True)
        self.bound = bound
        self.started = 0.0  # perf_counter at the start of the current input, 0 between
        self.fired = False

    def run(self) -> None:
        while True:
            time.sleep(min(1.0, self.bound / 4))
            t = self.started
            if t and not self.fired and time.perf_counter() - t > self.bound:
                self.fired = True
                _thread.interrupt_main()


@dataclass
class Outcome:
    inputs: int = 0
    seconds: float = 0.0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    reasons: set = field(default_factory=set)
    round_trips: int = 0
    findings: list[str] = field(default_factory=list)  # the first few of each signature
    signatures: Counter = field(default_factory=Counter)  # kind and place -> count
    slowest: float = 0.0

    @property
    def found(self) -> int:
        return sum(self.signatures.values())


def save_finding(target: str, kind: str, data: bytes, detail: str, out: Outcome, where: str = "") -> None:
    """Count the finding; keep the first three inputs of each kind and place."""
    signature = f"{kind} {where or detail}"
    out.signatures[signature] += 1
    if out.signatures[signature] > 3:
        return
    FINDINGS.mkdir(parents=True, exist_ok=True)
    path = FINDINGS / f"{target}-{len(out.findings) + 1}.bin"
    path.write_bytes(data)
    out.findings.append(f"{kind}: {detail} (input {path.relative_to(report.REPO)}, {len(data)} bytes)")


def fuzz(target: Target, args: argparse.Namespace, watchdog: Watchdog, say: Callable[[str], None]) -> Outcome:
    out = Outcome()
    examples = draw_corpus(target.strategy, args.corpus, args.seed)
    rng = random.Random(f"{args.seed}/{target.name}")
    corpus: list[bytes] = []
    for ex in examples:
        wire = target.to_bytes(ex)
        corpus.append(wire)
        if target.round_trip is not None:
            try:
                target.round_trip(ex, wire, rng)
                out.round_trips += 1
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                save_finding(target.name, "round trip", wire, f"{ex!r}: {e}"[:300], out, type(ex).__name__)
    corpus = [c for c in corpus if c] or [b"\x00"]
    run, expected, check = target.run, target.expected, target.check_error
    clock = time.perf_counter
    t_start = clock()
    next_report = t_start + args.progress
    for i in range(args.inputs):
        data = next_input(rng, corpus, target.tokens)
        t0 = watchdog.started = clock()
        try:
            run(data, rng)
            out.accepted += 1
        except expected as e:
            out.rejected[type(e).__name__] += 1
            if len(out.reasons) < 10_000:
                out.reasons.add(re.sub(r"\d+|'.*'|\".*\"", "N", str(e).split(": ", 2)[-1])[:60])
            problem = check(e, data)
            if problem:
                save_finding(target.name, "bad error", data, problem, out, type(e).__name__)
        except KeyboardInterrupt:
            if not watchdog.fired:
                raise
            watchdog.fired = False
            save_finding(target.name, "hang", data, f"interrupted after {args.hang} s", out, "hang")
        except Exception as e:  # noqa: BLE001 - the point of the exercise
            tb = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{Path(tb.filename).name}:{tb.lineno}"
            save_finding(target.name, "exception", data, f"{type(e).__name__} at {where}: {e}"[:300], out,
                         f"{type(e).__name__} at {where}")
        t1 = clock()
        watchdog.started = 0.0
        if t1 - t0 > out.slowest:
            out.slowest = t1 - t0
            if out.slowest > args.slow:
                save_finding(target.name, "slow", data, f"{out.slowest:.3f} s", out, "slow")
        if t1 > next_report:
            next_report = t1 + args.progress
            say(f"#   {target.name}: {i + 1:,} inputs, {(i + 1) / (t1 - t_start):,.0f}/s, "
                f"{out.found} findings")
    out.inputs = args.inputs
    out.seconds = clock() - t_start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="mutated inputs per target")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=int, default=1000, help="valid examples drawn per target")
    parser.add_argument("--slow", type=float, default=0.5, help="seconds: a slower decode is a finding")
    parser.add_argument("--hang", type=float, default=10.0, help="seconds: a decode still running is stopped")
    parser.add_argument("--progress", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/fuzz-DATE.txt)")
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")

    say = report.Tee(args.out or report.results_file("fuzz"))
    say(report.header(sys.argv if argv is None else [sys.argv[0], *argv]))
    watchdog = Watchdog(args.hang)
    watchdog.start()
    rows = []
    for name in names:
        target = TARGETS[name]()
        say(f"# {name}: drawing {args.corpus} examples, then {args.inputs:,} inputs")
        out = fuzz(target, args, watchdog, say)
        rows.append((name, out))
        rejected = ", ".join(f"{k} {v:,}" for k, v in out.rejected.most_common()) or "none"
        say(f"{name}: {out.inputs:,} inputs in {out.seconds:.1f} s ({out.inputs / out.seconds:,.0f}/s); "
            f"decoded {out.accepted:,}; refused: {rejected}; {len(out.reasons)} distinct reasons; "
            f"round trips {out.round_trips:,}; slowest input {out.slowest * 1000:.2f} ms; "
            f"findings {out.found} ({len(out.signatures)} distinct)")
        for sig, count in out.signatures.most_common():
            say(f"  finding x{count}: {sig}")
        for f in out.findings[:20]:
            say(f"  input {f}")
    say("")
    say(f"{'target':<10} {'inputs':>10} {'inputs/s':>9} {'decoded':>9} {'refused':>9} {'types':>5} "
        f"{'reasons':>7} {'round trips':>11} {'slowest ms':>10} {'findings':>8}")
    for name, out in rows:
        say(f"{name:<10} {out.inputs:>10,} {out.inputs / out.seconds:>9,.0f} {out.accepted:>9,} "
            f"{sum(out.rejected.values()):>9,} {len(out.rejected):>5} {len(out.reasons):>7} "
            f"{out.round_trips:>11,} {out.slowest * 1000:>10.2f} {out.found:>8}")
    total = sum(o.found for _, o in rows)
    say(f"\n{total} findings")
    say.close()
    print(f"results in {say.path}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
