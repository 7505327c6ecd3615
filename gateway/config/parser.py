"""The line reader: each ``key value...`` line, through its entry in the key table, into
the section it belongs to (the broker, the open listener or bridge, or the listener
that ``port`` and ``bind_address`` configure), then the checks that need the whole file.

The table is handed in (``Parser(path, KEYS)``) rather than imported: its entries
name this class's methods, so the table is built after it (``gateway.config.keys``).
``include_dir`` is read here too, since an included file is fed through the same
sections.
"""

from __future__ import annotations

import enum
import os
from dataclasses import fields
from typing import Callable, Mapping, NamedTuple

from gateway.config.bridges import Bridge, finish_bridges
from gateway.config.listener_checks import check_listener
from gateway.config.model import DEFAULT_PORT, Config, Listener, default_config
from gateway.config.values import ALL_LOG_TYPES
from gateway.errors import ConfigError
from gateway.security.plugins import PluginSpec
from gateway.unsupported import refusal


class Scope(enum.Enum):
    """Which section a key sets; ``Parser.target`` finds that section for a line."""

    GLOBAL = "global"        # a field of Config
    LISTENER = "listener"    # a field of the current listener
    SECURITY = "security"    # Config, or the current listener if per_listener_settings
    BRIDGE = "bridge"        # a field of the current connection section


class Line(NamedTuple):
    """Where a value came from, kept for every error about it (``file:line: key: reason``)."""

    path: str
    number: int
    key: str

    def error(self, reason: str) -> ConfigError:
        return ConfigError(reason, self.path, self.number, self.key)


_LISTENER_FIELDS = frozenset(f.name for f in fields(Listener))
# Listener keys that only some protocols have.
_ONLY_FOR = {"mqttsn_multicast": ("mqttsn",), "websockets_origin": ("websockets",),
             "enable_proxy_protocol": ("mqtt", "websockets"), "oscore_file": ("coap",)}


def _mosquitto_order(name: str) -> list[tuple[str, str]]:
    # Mosquitto's include_dir order: by letter ignoring case, then upper case first.
    return [(c.upper() if c.isascii() else c, c) for c in name]


def read_text(path: str) -> str:
    """The file as UTF-8; bytes that are not report the line they are on."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", path, line) from None


class Parser:
    """One file (and the files it includes) into one ``Config``: ``feed``, then ``finish``."""

    def __init__(self, path: str, keys: Mapping[str, Key]) -> None:
        self.keys = keys
        self.config = Config(listeners=[], path=path)
        self.default = Listener(DEFAULT_PORT)       # set by port / bind_address
        self.default_line: Line | None = None       # first port / bind_address line
        self.default_last: Line | None = None       # last one
        self.default_needed: Line | None = None     # first listener key given to it
        self.current: Listener | None = None        # last `listener` section
        self.bridge: Bridge | None = None           # last `connection` section
        self.created: list[tuple[Listener, Line]] = []
        self.security_line: Line | None = None
        self.set_at: dict[tuple[int, str], Line] = {}
        self.log_type: list[str] | None = None
        self.log_dest: list[str] | None = None
        self.depth = 0                               # include_dir nesting

    def feed(self, text: str, path: str) -> None:
        for number, raw in enumerate(text.split("\n"), 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            key, *rest = stripped.split(None, 1)
            line = Line(path, number, key)
            if "\x00" in stripped:
                # No path may hold one (open() raises ValueError), and Mosquitto's
                # C strings would end there.
                raise line.error("NUL character in the line")
            entry = self.keys.get(key)
            if entry is None and key.startswith("plugin_opt_") and len(key) > 11:
                entry = self.keys["plugin_opt_"]
            if entry is None:
                raise line.error(refusal(key))
            try:
                entry.apply(self, line, entry.convert(rest[0] if rest else ""), entry.scope)
            except ConfigError as exc:
                if exc.path:
                    raise
                raise line.error(exc.reason) from None

    def finish(self) -> Config:
        config = self.config
        if self.default_needed is not None and self.default_line is None:
            raise self.default_needed.error(
                "needs a listener: put it after a listener line (or use port/bind_address)")
        for listener, _ in self.created:
            check_listener(listener)
        first: dict[tuple[int, str | None], Line] = {}
        for listener, line in self.created:
            if listener is self.default:
                line = self.default_last           # the line that set its final address
            where = first.setdefault((listener.port, listener.bind_address), line)
            if where is not line:
                on = f"{listener.bind_address}:" if listener.bind_address else "port "
                raise line.error(f"duplicate listener on {on}{listener.port} "
                                 f"(first defined at {where.path}:{where.number})")
        for listener, _ in self.created:
            for key, protocols in _ONLY_FOR.items():
                if key in listener.lines and listener.protocol not in protocols:
                    path, number = listener.lines[key]
                    raise ConfigError(f"only for a protocol {' or '.join(protocols)} listener",
                                      path, number, key)
        config.listeners = [listener for listener, _ in self.created]
        if not config.listeners:
            config.listeners = default_config().listeners
        finish_bridges(config.bridges)
        if self.log_type is not None:
            config.log_type = self.log_type
        if self.log_dest is not None:
            config.log_dest = self.log_dest
        return config

    # -- where a value goes

    def target(self, line: Line, scope: Scope) -> Config | Listener | Bridge:
        target = self._target(line, scope)
        target.lines.setdefault(line.key, (line.path, line.number))
        return target

    def _target(self, line: Line, scope: Scope) -> Config | Listener | Bridge:
        if scope is Scope.BRIDGE:
            if self.bridge is None:
                raise line.error("needs a bridge: put it after a connection line")
            return self.bridge
        if scope is Scope.SECURITY:
            self.security_line = self.security_line or line
            if not self.config.per_listener_settings:
                return self.config
            if line.key not in _LISTENER_FIELDS:
                raise line.error("not supported per listener (per_listener_settings is true): "
                                 "drop the line, or set it once with per_listener_settings false")
        elif scope is Scope.GLOBAL:
            return self.config
        if self.current is not None:
            return self.current
        self.default_needed = self.default_needed or line
        return self.default

    def store(self, line: Line, value: object, scope: Scope) -> None:
        setattr(self.target(line, scope), line.key, value)

    @staticmethod
    def store_as(name: str) -> Callable[[Parser, Line, object, Scope], None]:
        """For a key that is another key's alias (Mosquitto's ``maximum_qos``)."""
        def store(parser: Parser, line: Line, value: object, scope: Scope) -> None:
            target = parser.target(line, scope)
            target.lines.setdefault(name, (line.path, line.number))
            setattr(target, name, value)
        return store

    def store_once(self, line: Line, value: object, scope: Scope) -> None:
        # Mosquitto refuses a second value for its string settings.
        target = self.target(line, scope)
        self.first_time(target, line)
        setattr(target, line.key, value)

    def first_time(self, target: Config | Listener, line: Line) -> None:
        first = self.set_at.setdefault((id(target), line.key), line)
        if first is not line:
            raise line.error(f"duplicate value (first set at {first.path}:{first.number})")

    # -- keys that do more than store a value

    def open_listener(self, line: Line, value: tuple[int, str | None], scope: Scope) -> None:
        port, bind_address = value
        self.current = Listener(port, bind_address, source=(line.path, line.number))
        self.created.append((self.current, line))
        self.config.explicit_listeners = True

    def configure_default(self, line: Line, value: object, scope: Scope) -> None:
        if self.default_line is None:
            self.default_line = line
            self.default.source = (line.path, line.number)
            self.created.append((self.default, line))
        self.default_last = line
        self.config.explicit_listeners = True
        if line.key == "bind_address":
            self.first_time(self.default, line)
        setattr(self.default, line.key, value)

    def set_per_listener_settings(self, line: Line, value: bool, scope: Scope) -> None:
        if value and self.security_line is not None:
            raise line.error("must come before any security setting (first at "
                             f"{self.security_line.path}:{self.security_line.number})")
        self.config.per_listener_settings = value

    def add_log_type(self, line: Line, value: str, scope: Scope) -> None:
        types = self.log_type if self.log_type is not None else []
        if value == "none":
            types = []
        elif value == "all":
            types = list(ALL_LOG_TYPES)
        elif value not in types:
            types.append(value)
        self.log_type = types

    def add_log_dest(self, line: Line, value: str, scope: Scope) -> None:
        dests = self.log_dest if self.log_dest is not None else []
        if value == "none":
            dests = []
        elif value.startswith("file ") and any(d.startswith("file ") for d in dests):
            raise line.error("only one file destination is allowed")
        elif value not in dests:
            dests.append(value)
        if value.startswith("file "):
            self.config.lines["log_dest"] = (line.path, line.number)   # for an unwritable file
        self.log_dest = dests

    def add_plugin(self, line: Line, path: str, scope: Scope) -> None:
        self.target(line, scope).plugins.append(PluginSpec(path, {}, (line.path, line.number)))

    def plugin_option(self, line: Line, value: str, scope: Scope) -> None:
        if line.key == "plugin_opt_":
            raise line.error("missing option name")
        plugins = self.target(line, scope).plugins
        if not plugins:
            raise line.error("needs a plugin line before it")
        plugins[-1].options[line.key[len("plugin_opt_"):]] = value

    def listener_or_global(self, line: Line, value: object, scope: Scope) -> None:
        # Inside a listener section: that listener only; before any: every listener.
        target = self.current if self.current is not None else self.config
        target.lines[line.key] = (line.path, line.number)
        setattr(target, line.key, value)

    def include(self, line: Line, directory: str, scope: Scope) -> None:
        if self.depth > 0:
            raise line.error("only allowed in the main configuration file")
        try:
            names = os.listdir(directory)
        except OSError as exc:
            raise line.error(f"cannot read directory {directory!r}: {exc.strerror}") from None
        main = self.config.path
        for name in sorted((n for n in names if len(n) > 5 and n.endswith(".conf")),
                           key=_mosquitto_order):
            path = os.path.join(directory, name)
            try:
                if main and os.path.exists(main) and os.path.samefile(path, main):
                    raise line.error("the directory holds the main configuration file")
                text = read_text(path)
            except OSError as exc:
                raise line.error(f"cannot read {path!r}: {exc.strerror}") from None
            self.depth += 1
            try:
                self.feed(text, path)
            finally:
                self.depth -= 1


class Key(NamedTuple):
    """A key's entry in the table: its converter, its section, how the value lands."""

    convert: Callable[[str], object]
    scope: Scope
    apply: Callable[[Parser, Line, object, Scope], None] = Parser.store
