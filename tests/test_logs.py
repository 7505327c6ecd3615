"""gateway.logs: escaping client strings, writers that never block, summaries."""

from __future__ import annotations

import os
import syslog
import threading

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import Logger, LogLevel, formatEvent

from gateway.config import parse
from gateway.logs import SyslogWriter, Writer, drain_all, make_observer, syslog_observer
from gateway.logtext import CLIP, Summary, clip

HANG = 30.0  # seconds; only turns a hang into a failure


@pytest.mark.parametrize(("value", "shown"), [
    ("sensor-1", "sensor-1"),
    ("caf\u00e9/\u6e29\u5ea6 a b", "caf\u00e9/\u6e29\u5ea6 a b"),
    ("a\nb", "a\\nb"),
    ("\x1b[31mred\x07", "\\x1b[31mred\\x07"),
    ("tab\there\r", "tab\\there\\r"),
    ("back\\slash", "back\\\\slash"),
    ("line\u2028sep", "line\\u2028sep"),
    (None, "None"),
    (42, "42"),
])
def test_clip_escapes_what_could_forge_a_line(value, shown):
    assert clip(value) == shown


def test_clip_cuts_long_strings_and_says_how_much():
    assert clip("x" * 65535) == "x" * CLIP + f"...({65535 - CLIP} more)"
    assert clip("x" * CLIP) == "x" * CLIP
    assert clip("\n" * 1000, 10) == "\\n" * 10 + "...(990 more)"


def run_with_deadline(target) -> None:
    """Run ``target`` in a thread; fail (instead of hanging) if it blocks."""
    done = threading.Event()

    def body() -> None:
        target()
        done.set()

    threading.Thread(target=body, daemon=True).start()
    assert done.wait(HANG), "writing blocked"


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_writer_never_blocks_on_a_pipe_nobody_reads():
    r, w = os.pipe()
    writer = Writer(w, limit=64 * 1024)
    line = "x" * 99 + "\n"
    run_with_deadline(lambda: [writer.write(line) for _ in range(10_000)])  # 1 MB
    assert writer.dropped > 0
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_all(r)))
    reader.start()
    assert writer.drain(HANG)
    writer.write("last\n")
    assert writer.drain(HANG)
    os.close(w)
    reader.join(HANG)
    os.close(r)
    lines = received[0].decode().splitlines()
    notices = [x for x in lines if x.startswith("- [gateway.logs] ")]
    assert notices and all(x.endswith(" log lines dropped: the log destination did not keep up")
                           for x in notices)
    dropped = sum(int(x.split()[2]) for x in notices)
    assert lines.count(line.strip()) + dropped == 10_000
    assert lines[-1] == "last"


def test_writer_writes_everything_when_the_reader_keeps_up(tmp_path):
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    writer = Writer(fd)
    for i in range(1000):
        writer.write(f"line {i} \u00e9\n")
    assert writer.drain(HANG)
    os.close(fd)
    assert path.read_text(encoding="utf-8").splitlines() == [f"line {i} \u00e9" for i in range(1000)]
    assert writer.dropped == 0


def test_file_destination_goes_through_a_writer(tmp_path):
    path = tmp_path / "gw.log"
    observer = make_observer(parse(f"log_dest file {path}\n"), verbose=False)
    log = Logger(namespace="test", observer=observer)
    log.info("hello {who}", who=clip("a\nb"))
    drain_all(HANG)
    assert path.read_text().endswith("[test#info] hello a\\nb\n")


def test_syslog_lines_keep_their_level():
    # The syslog(3) call itself is replaced: this machine has no syslog daemon.
    sent = []
    writer = SyslogWriter(send=lambda priority, text: sent.append((priority, text)))
    log = Logger(namespace="test", observer=syslog_observer(writer))
    log.info("connected {who}", who="a")
    log.warn("two\nlines")
    log.error("bad")
    assert writer.drain(HANG)
    assert sent == [(syslog.LOG_INFO, "[test#info] connected a"),
                    (syslog.LOG_WARNING, "[test#warn] two\nlines"),
                    (syslog.LOG_ERR, "[test#error] bad")]


def test_summary_logs_a_burst_then_one_line_per_interval():
    clock = Clock()
    events = EventLoggingObserver()
    log = Logger(namespace="test", observer=events)
    summary = Summary(log, clock, "things", burst=3, interval=10.0)
    for i in range(100):
        summary.event("odd" if i % 2 else "even", f"10.0.0.{i % 4}", LogLevel.info, "thing {i}", i=i)
    assert [formatEvent(e) for e in events] == ["thing 0", "thing 1", "thing 2"]
    clock.advance(10)
    assert formatEvent(events[3]) == (
        "97 more things in the last 10 s (odd: 49, even: 48); from 4 addresses, 25 from 10.0.0.3"
    )
    clock.advance(100)
    assert len(events) == 4
    summary.event("odd", "10.0.0.9", LogLevel.info, "thing {i}", i=100)
    assert formatEvent(events[4]) == "thing 100"
    assert not clock.getDelayedCalls()
