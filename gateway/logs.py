"""Log observers built from ``log_dest``/``log_type``: stderr by default, as Mosquitto.

Logging must never stall the reactor: each destination is written by a thread of
its own from a bounded queue (``Writer``), so a stderr pipe that nobody reads costs
dropped lines, counted, instead of a blocked process. What clients choose (client
ids, usernames, topics) goes through ``clip`` before it reaches a line, and events
a flood of anonymous connections can cause go through a ``Summary``.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections import Counter
from typing import IO, Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)

from gateway.config import Config

#: Characters of a client-chosen string kept in a log line.
CLIP = 200
#: Bytes of formatted lines a destination may have waiting; more are dropped and counted.
QUEUE_BYTES = 1 << 20
#: Seconds the process waits at exit for its last lines to be written.
EXIT_FLUSH = 2.0


def clip(value: object, limit: int = CLIP) -> str:
    """``value`` as it may appear in a log line: cut to ``limit`` characters, and
    non-printable characters (newline, ESC, BEL, ...) and backslashes escaped as
    ``repr()`` writes them, so a client cannot forge, split or colour lines."""
    text = value if isinstance(value, str) else str(value)
    more = len(text) - limit
    if more > 0:
        text = text[:limit]
    if not text.isprintable() or "\\" in text:
        text = "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text)
    return f"{text}...({more} more)" if more > 0 else text


# --- destinations ---------------------------------------------------------------------

_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


class Writer:
    """A text file-like object whose ``write`` queues and a thread writes to ``fd``.

    The reactor only appends to a list; if the destination stops taking bytes, the
    thread blocks, the queue fills up to ``limit`` bytes, and further lines are
    dropped and counted. The count is written once the destination moves again.
    The thread starts with the first line, so a fork (``-d``) before it is harmless.
    """

    def __init__(self, fd: int, limit: int = QUEUE_BYTES) -> None:
        self.fd = fd
        self.limit = limit
        self.dropped = 0
        self._lines: list[bytes] = []
        self._queued = 0          # bytes listed or being written
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        _writers.add(self)

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        with self._cond:
            if self._queued + len(data) > self.limit:
                self.dropped += 1
                return
            self._lines.append(data)
            self._queued += len(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self) -> None:
        """Nothing to do here: lines leave through the thread."""

    def drain(self, timeout: float) -> bool:
        """Wait until every queued line is written, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._lines or self._busy or self.dropped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._lines and not self.dropped:
                    cond.wait()
                lines, self._lines = self._lines, []
                dropped, self.dropped = self.dropped, 0
                self._busy = True
            size = sum(map(len, lines))
            if dropped:
                lines.insert(0, b"- [gateway.logs] %d log lines dropped: the log destination "
                                b"did not keep up\n" % dropped)
            self._write_all(b"".join(lines))
            with cond:
                self._queued -= size
                self._busy = False
                cond.notify_all()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except InterruptedError:
                continue
            except OSError:
                return  # a closed pipe or a full disk: these lines are lost

    def _after_fork(self) -> None:
        # Only the forking thread survives a fork: start afresh, keeping the lines.
        self._cond = threading.Condition()
        self._thread = None
        self._busy = False
        self._queued = sum(map(len, self._lines))


def drain_all(timeout: float = EXIT_FLUSH) -> None:
    """Give every destination up to ``timeout`` seconds in all to write its queue."""
    deadline = time.monotonic() + timeout
    for writer in list(_writers):
        writer.drain(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        writer._after_fork()


atexit.register(drain_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


def log_level(config: Config, verbose: bool) -> LogLevel:
    types = set(config.log_type)
    if verbose or types & {"all", "debug"}:
        return LogLevel.debug
    if types & {"information", "notice", "subscribe", "unsubscribe", "websockets"}:
        return LogLevel.info
    if "warning" in types:
        return LogLevel.warn
    if "error" in types:
        return LogLevel.error
    return LogLevel.critical


def _fd_writer(stream: IO[str]) -> IO[str] | Writer:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return stream  # not a real file (a test's capture): written in place
    stream.flush()
    return Writer(fd)


def _stream(dest: str) -> IO[str] | Writer | None:
    if dest == "stderr":
        return _fd_writer(sys.stderr)
    if dest == "stdout":
        return _fd_writer(sys.stdout)
    if dest.startswith("file "):
        fd = os.open(dest[5:].strip(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.set_inheritable(fd, False)
        return Writer(fd)
    return None


def make_observer(config: Config, verbose: bool) -> ILogObserver:
    """One observer writing to every configured destination at the configured level."""
    observers = [
        textFileLogObserver(stream)  # type: ignore[arg-type]
        for stream in map(_stream, config.log_dest) if stream is not None
    ]

    def fan_out(event: dict) -> None:
        for observer in observers:
            observer(event)

    predicate = LogLevelFilterPredicate(defaultLogLevel=log_level(config, verbose))
    return FilteringLogObserver(fan_out, [predicate])


def wants_own_observer(config: Config) -> bool:
    """Under twistd, keep ``--logfile``/``--syslog`` when given; otherwise use our destinations."""
    args = sys.argv[1:]
    return not any(a in ("-l", "--syslog") or a.startswith("--logfile") for a in args)


# --- summaries --------------------------------------------------------------------------

HOSTS_TRACKED = 10_000


class Summary:
    """Events logged one by one up to ``burst`` per ``interval`` seconds; beyond, counted
    by kind and source host and logged as one line when the interval ends.

    For what anonymous peers cause at will (garbage, CONNECT timeouts): a flood of
    them costs a bounded number of lines, however many connections it makes.
    """

    def __init__(
        self, log: Logger, clock: IReactorTime, what: str, burst: int = 10, interval: float = 10.0
    ) -> None:
        self.log = log
        self.clock = clock
        self.what = what
        self.burst = burst
        self.interval = interval
        self.logged = 0
        self.window_end = 0.0
        self.kinds: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self._timer: IDelayedCall | None = None

    def event(self, kind: str, host: str, level: LogLevel, fmt: str, **fields: Any) -> None:
        """Log ``fmt`` now, or count it under ``kind`` for the summary."""
        now = self.clock.seconds()
        if now >= self.window_end:
            self.flush()
            self.window_end = now + self.interval
            self.logged = 0
        if self.logged < self.burst:
            self.logged += 1
            self.log.emit(level, fmt, **fields)
            return
        self.kinds[kind] += 1
        if host in self.hosts or len(self.hosts) < HOSTS_TRACKED:
            self.hosts[host] += 1
        if self._timer is None:
            self._timer = self.clock.callLater(self.window_end - now, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last summary, if anything."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self.kinds:
            return
        total = sum(self.kinds.values())
        kinds = ", ".join(f"{kind}: {n}" for kind, n in self.kinds.most_common())
        host, most = self.hosts.most_common(1)[0] if self.hosts else ("?", 0)
        self.log.warn(
            "{total} more {what} in the last {interval:.0f} s ({kinds}); from {hosts} "
            "addresses, {most} from {host}",
            total=total, what=self.what, interval=self.interval, kinds=kinds,
            hosts=len(self.hosts), most=most, host=host,
        )
        self.kinds.clear()
        self.hosts.clear()


_summaries: weakref.WeakKeyDictionary[Any, dict[str, Summary]] = weakref.WeakKeyDictionary()


def summary_for(clock: IReactorTime, what: str, log: Logger) -> Summary:
    """The summary of ``what`` shared by everything that runs on ``clock``."""
    table = _summaries.setdefault(clock, {})
    summary = table.get(what)
    if summary is None:
        summary = table[what] = Summary(log, clock, what)
    return summary
