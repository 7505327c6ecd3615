"""Log observers built from ``log_dest``/``log_type``: stderr by default, as Mosquitto."""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)

from gateway.config import Config


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


def _stream(dest: str) -> IO[str] | None:
    if dest == "stderr":
        return sys.stderr
    if dest == "stdout":
        return sys.stdout
    if dest.startswith("file "):
        return open(dest[5:].strip(), "a", encoding="utf-8", buffering=1)
    return None


def make_observer(config: Config, verbose: bool) -> ILogObserver:
    """One observer writing to every configured destination at the configured level."""
    observers = [
        textFileLogObserver(stream) for stream in map(_stream, config.log_dest) if stream is not None
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
