"""Log observers built from ``log_dest``/``log_type``: stderr by default, as Mosquitto.

Logging must never stall the reactor: each destination is written by a thread of
its own from a bounded queue (``Writer``), so a stderr pipe that nobody reads costs
dropped lines, counted, instead of a blocked process. What clients choose (client
ids, usernames, topics) goes through ``gateway.logtext.clip`` before it reaches a
line, and events a flood of anonymous connections can cause go through a
``gateway.logtext.Summary``.
"""

from __future__ import annotations

import atexit
import os
import sys
import syslog
import threading
import time
import weakref
from typing import IO, Callable

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    textFileLogObserver,
)

from gateway.config import Config
from gateway.errors import ConfigError

log = Logger(namespace="mqttgateway")

#: Bytes of formatted lines a destination may have waiting; more are dropped and counted.
QUEUE_BYTES = 1 << 20
#: Seconds the process waits at exit for its last lines to be written.
EXIT_FLUSH = 2.0


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


class SyslogWriter(Writer):
    """syslog(3) as Mosquitto uses it (ident ``mqttgateway``, facility daemon), called
    from the writer thread: a stalled syslog daemon must not stall the reactor."""

    def __init__(self, send: Callable[[int, str], None] | None = None) -> None:
        super().__init__(-1)
        self.send = send or self._syslog
        self._opened = False

    def _syslog(self, priority: int, text: str) -> None:
        if not self._opened:
            syslog.openlog("mqttgateway", syslog.LOG_PID, syslog.LOG_DAEMON)
            self._opened = True
        syslog.syslog(priority, text)

    def _write_all(self, data: bytes) -> None:
        for record in data.split(b"\x1e"):
            if record:
                priority, _, text = record.partition(b" ")
                self.send(int(priority), text.decode("utf-8", "replace"))


SYSLOG_PRIORITY = {LogLevel.critical: syslog.LOG_CRIT, LogLevel.error: syslog.LOG_ERR,
                   LogLevel.warn: syslog.LOG_WARNING, LogLevel.info: syslog.LOG_INFO,
                   LogLevel.debug: syslog.LOG_DEBUG}
#: Mosquitto's ``$SYS/broker/log/`` topics by level; debug lines are not published.
LOG_TOPICS = {LogLevel.critical: "E", LogLevel.error: "E", LogLevel.warn: "W", LogLevel.info: "I"}


def syslog_observer(writer: Writer) -> ILogObserver:
    def observe(event: dict) -> None:
        priority = SYSLOG_PRIORITY.get(event.get("log_level", LogLevel.info), syslog.LOG_INFO)
        text = eventAsText(event, includeTimestamp=False).rstrip("\n")
        writer.write(f"{priority} {text}\x1e")
    return observe  # type: ignore[return-value]


def topic_observer(publish: Callable[[str, bytes], None]) -> ILogObserver:
    """Each line at information level or above as a message on ``$SYS/broker/log/X``,
    as Mosquitto's ``log_dest topic``. Published on a later reactor turn: an event may
    come from another thread, or from inside a delivery."""
    from twisted.internet import reactor

    def observe(event: dict) -> None:
        letter = LOG_TOPICS.get(event.get("log_level"))  # type: ignore[arg-type]
        if letter is not None:
            text = eventAsText(event, includeTimestamp=False, includeSystem=False).rstrip("\n")
            line = f"{int(time.time())}: {text}"
            reactor.callFromThread(publish, f"$SYS/broker/log/{letter}", line.encode())
    return observe  # type: ignore[return-value]


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


def _stream(dest: str, config: Config) -> IO[str] | Writer | None:
    if dest == "stderr":
        return _fd_writer(sys.stderr)
    if dest == "stdout":
        return _fd_writer(sys.stdout)
    if dest.startswith("file "):
        path = dest[5:].strip()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            where, line = config.lines.get("log_dest", ("", 0))
            reason = f"cannot open {path}: {e.strerror}"
            raise ConfigError(reason, where, line, "log_dest") from None
        os.set_inheritable(fd, False)
        return Writer(fd)
    return None


def make_observer(
    config: Config, verbose: bool, publish: Callable[[str, bytes], None] | None = None
) -> ILogObserver:
    """One observer writing to every configured destination at the configured level;
    ``ConfigError`` when a log file cannot be opened. ``publish(topic, payload)``
    serves ``log_dest topic``."""
    streams = [_stream(dest, config) for dest in config.log_dest]
    observers = [textFileLogObserver(stream) for stream in streams if stream is not None]  # type: ignore[arg-type]
    if "syslog" in config.log_dest:
        observers.append(syslog_observer(SyslogWriter()))
    if "topic" in config.log_dest and publish is not None:
        observers.append(topic_observer(publish))
    if "dlt" in config.log_dest:
        log.warn("log_dest dlt: there is no DLT (automotive Diagnostic Log and Trace) "
                 "output; the destination is ignored")

    def fan_out(event: dict) -> None:
        for observer in observers:
            observer(event)

    predicate = LogLevelFilterPredicate(defaultLogLevel=log_level(config, verbose))
    return FilteringLogObserver(fan_out, [predicate])


def wants_own_observer(config: Config) -> bool:
    """Under twistd, keep ``--logfile``/``--syslog`` when given; otherwise use our destinations."""
    args = sys.argv[1:]
    return not any(a in ("-l", "--syslog") or a.startswith("--logfile") for a in args)


def report_startup_failure(message: str, config: Config) -> None:
    """Log why startup stopped, and print it on stderr too unless the log goes there.

    Once twistd has begun logging, stderr is redirected into the log: with ``log_dest
    file`` (or syslog, or twistd's ``--logfile``) a failed start would leave the
    terminal silent, where Mosquitto prints the reason.
    """
    log.critical("{message}", message=message)
    if wants_own_observer(config) and "stderr" in config.log_dest:
        return
    terminal = sys.__stderr__
    if terminal is not None:
        terminal.write(f"{message}\n")
        terminal.flush()
