"""Mosquitto-syntax configuration files (``man mosquitto.conf``) parsed into dataclasses.

One ``key value...`` per line; a line whose first non-blank character is ``#``
is a comment.  Every key has one entry in ``KEYS``: how its value is converted
and where it goes (the broker as a whole, or the listener section currently
open).  Keys that Mosquitto knows but the gateway does not implement are in
``NOT_SUPPORTED``, refused with the reason and what to do instead rather than
silently ignored.

Differences from Mosquitto, on purpose: every error stops the parse (Mosquitto
only warns for some), ``include_dir`` in an included file is an error (Mosquitto
ignores it), and a listener key that has no listener to apply to is an error.

The modules: ``model`` (``Config``, ``Listener``), ``values`` (converters),
``keys`` (the key table), ``parser`` (lines into sections, ``include_dir``),
``listener_checks`` and ``bridges`` (``connection`` sections).  The rest of the
gateway imports from here.
"""

from __future__ import annotations

from gateway.config.keys import KEYS
from gateway.config.model import PROTOCOLS, Config, Listener, anonymous_allowed, default_config
from gateway.config.parser import Parser, Scope, read_text
from gateway.config.values import ALL_LOG_TYPES, parse_duration
from gateway.errors import ConfigError
from gateway.unsupported import NOT_SUPPORTED, NOT_SUPPORTED_PREFIXES

__all__ = [
    "Config", "Listener", "KEYS", "NOT_SUPPORTED", "NOT_SUPPORTED_PREFIXES",
    "PROTOCOLS", "Scope", "anonymous_allowed", "default_config", "load", "parse",
    "parse_duration", "ALL_LOG_TYPES",
]


def load(path: str) -> Config:
    """Parse the file at *path*, and the files it includes."""
    try:
        text = read_text(path)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror}", path, 0) from None
    return parse(text, path)


def parse(text: str, path: str = "<string>") -> Config:
    """Parse configuration *text*; *path* names it in errors and in ``Config.path``."""
    parser = Parser(path, KEYS)
    parser.feed(text, path)
    return parser.finish()
