"""Log observers built from ``log_dest``/``log_type``: stderr by default, as Mosquitto."""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)

from gateway.config import Config
from gateway.errors import ConfigError

log = Logger(namespace="mqttgateway")


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


def _stream(dest: str, config: Config) -> IO[str] | None:
    if dest == "stderr":
        return sys.stderr
    if dest == "stdout":
        return sys.stdout
    if dest.startswith("file "):
        path = dest[5:].strip()
        try:
            return open(path, "a", encoding="utf-8", buffering=1)
        except OSError as e:
            where, line = config.lines.get("log_dest", ("", 0))
            reason = f"cannot open {path}: {e.strerror}"
            raise ConfigError(reason, where, line, "log_dest") from None
    return None


def make_observer(config: Config, verbose: bool) -> ILogObserver:
    """One observer writing to every configured destination at the configured level;
    ``ConfigError`` when a log file cannot be opened."""
    streams = [_stream(dest, config) for dest in config.log_dest]
    observers = [textFileLogObserver(stream) for stream in streams if stream is not None]

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
