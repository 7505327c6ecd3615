"""What the three programs share before and after their own loop: the command
line and its errors, the client id, the first connection, signals and stdout."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, BinaryIO

from gateway.clients.checks import as_text, valid_utf8
from gateway.clients.options import (
    PROGRAMS, PUB, HelpRequested, Options, UsageError, VersionRequested, parse,
)
from gateway.clients.session import ConnectFailed, Session
from gateway.clients.texts import ERR_NO_CONN, ERR_SUCCESS, ERR_TIMEOUT, strerror
from gateway.clients.usage import usage_text, version_text


class Exit(Exception):
    """Leave the program with ``status`` (what Mosquitto's ``main`` returns)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def streams() -> tuple[BinaryIO, BinaryIO]:
    return sys.stdout.buffer, sys.stderr.buffer


def write(stream: BinaryIO, text: str) -> None:
    stream.write(text.encode("utf-8", "surrogateescape"))
    stream.flush()


def load_options(kind: str, argv: list[str]) -> Options:
    """``client_config_load`` and ``main``'s answers to it; Exit on anything but options."""
    out, err = streams()
    try:
        return parse(kind, argv)
    except HelpRequested:
        write(out, usage_text(kind))
    except VersionRequested:
        write(out, version_text(kind))
    except UsageError as e:
        write(err, e.text)
        if e.hint:
            write(err, f"\nUse '{PROGRAMS[kind]} --help' to see usage.\n")
    raise Exit(1)


def open_session(cfg: Options) -> Session:
    """``client_id_generate``, ``mosquitto_new``, ``client_opts_set`` and
    ``client_connect``: a connected session that has sent CONNECT, or Exit(1)."""
    out, err = streams()
    if cfg.id_prefix is not None:
        cfg.id = f"{cfg.id_prefix}{os.getpid()}"
    if cfg.id is not None:
        if cfg.id == "" or not valid_utf8(cfg.id):
            write(err, "" if cfg.quiet else "Error: Invalid id.\n" if cfg.kind == PUB
                  else "Error: Invalid id and/or clean_session.\n")
            raise Exit(1)
        cfg.id = as_text(cfg.id)
    if cfg.username is None and cfg.password is not None and cfg.protocol_version < 5:
        write(err, "" if cfg.quiet else "Error: Problem setting username and/or password.\n")
        raise Exit(1)
    if cfg.username is not None:
        if not valid_utf8(cfg.username):
            write(err, "" if cfg.quiet else "Error: Problem setting username and/or password.\n")
            raise Exit(1)
        cfg.username = as_text(cfg.username)
    session = Session(cfg, out, err)
    try:
        session.connect()
    except ConnectFailed as e:
        session.err(e.text)
        raise Exit(1) from None
    return session


def close_session(cfg: Options, session: Session, rc: int, client: Any) -> int:
    """The end of mosquitto_sub's and mosquitto_rr's ``main``: close, forgive a lost
    connection once ``-C`` was reached, report a timeout or the error; the exit status.
    ``client`` is the program's loop (its ``timed_out`` and ``connack_result``)."""
    session.close()
    if cfg.msg_count > 0 and rc == ERR_NO_CONN:
        rc = ERR_SUCCESS
    if client.timed_out:
        session.err("Timed out\n")
        return ERR_TIMEOUT
    if rc:
        session.err(f"Error: {strerror(rc, session.os_errno)}\n")
    return client.connack_result or rc


def die_of_sigpipe() -> None:
    """stdout's reader went away: end as a C program does, killed by SIGPIPE."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


def run(body, kind: str, argv: list[str] | None) -> int:  # noqa: ANN001
    """Call ``body(cfg)`` with the parsed options; its return value is the status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_options(kind, args)
        return body(cfg)
    except Exit as e:
        return e.status
    except BrokenPipeError:
        die_of_sigpipe()
        return 141
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            pass
