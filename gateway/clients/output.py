"""Received messages printed as ``mosquitto_sub`` prints them (``sub_client_output.c``).

Plain payloads, ``-v`` (``topic payload``, ``topic (null)`` when empty), ``-N``,
and ``-F`` with every ``%`` field, width, precision and padding, ``@`` time
fields and ``\\`` escapes, including Mosquitto's quirks (a width halves a ``%x``
payload), so output can be compared byte for byte. ``%j``/``%J`` write JSON as
the cJSON library that Debian's Mosquitto links does: key order, number
formatting, escapes, and ``--pretty``'s tabs.
"""

from __future__ import annotations

import json
import random
import time
from typing import BinaryIO

from gateway.clients.options import Options
from gateway.mqtt.packets import Publish
from gateway.mqtt.reasons import PropertyId

_ESCAPES = {"\\": b"\\", "0": b"\0", "a": b"\a", "e": b"\033", "n": b"\n", "r": b"\r",
            "t": b"\t", "v": b"\v"}
_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                 "\t": "\\t"}


class _Object(list):
    """A JSON object as cJSON keeps it: (key, value) pairs in order, duplicates too."""


class _Now:
    """One reading of the clock: what ``get_time()`` gives a field."""

    def __init__(self) -> None:
        ns = time.time_ns()
        self.seconds, self.ns = divmod(ns, 1_000_000_000)
        self.tm = time.localtime(self.seconds)

    def strftime(self, fmt: str) -> str:
        return time.strftime(fmt, self.tm)

    def iso_json(self) -> str:
        """``2020-05-06T21:48:00.123456Z+0100``: Mosquitto's "tst" (local time, and a Z)."""
        return f"{self.strftime('%Y-%m-%dT%H:%M:%S')}.{self.ns // 1000:06d}Z{self.strftime('%z')}"


# --- cJSON look-alike ---------------------------------------------------------------


def _json_number(d: float) -> str:
    if d != d or d in (float("inf"), float("-inf")):
        return "null"
    text = f"{d:1.15g}"
    if abs(float(text) - d) > max(abs(float(text)), abs(d)) * 2.220446049250313e-16:
        text = f"{d:1.17g}"
    return text


def _json_string(s: str) -> str:
    return '"' + "".join(
        _JSON_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 32 else ch) for ch in s) + '"'


def json_dump(value: object, pretty: bool, depth: int = 0) -> str:
    """``cJSON_PrintUnformatted`` or, with ``pretty``, ``cJSON_Print``."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _json_number(float(value))
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, _Object):
        if not pretty:
            return "{" + ",".join(f"{_json_string(k)}:{json_dump(v, False)}" for k, v in value) + "}"
        inner = "\t" * (depth + 1)
        items = "".join(f"{inner}{_json_string(k)}:\t{json_dump(v, True, depth + 1)}"
                        f"{',' if i < len(value) - 1 else ''}\n" for i, (k, v) in enumerate(value))
        return "{\n" + items + "\t" * depth + "}"
    assert isinstance(value, list)
    sep = ", " if pretty else ","
    return "[" + sep.join(json_dump(v, pretty, depth + 1) for v in value) + "]"


def _reject(name: str) -> None:
    raise ValueError(name)


def json_parse(payload: bytes) -> object:
    """``cJSON_ParseWithOpts(..., require_null_terminated)``; ValueError when it fails."""
    text = payload.decode("utf-8", "surrogateescape")
    return json.loads(text, strict=False, object_pairs_hook=_Object, parse_int=float,
                      parse_constant=_reject)


def _cstring(data: bytes) -> str:
    """A C string made from bytes: up to the first NUL."""
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def json_message(msg: Publish, now: _Now, escaped: bool, pretty: bool) -> bytes | None:
    """``json_print``: the message as one JSON object; None when ``%J`` finds the
    payload is not JSON."""
    root = _Object([("tst", now.iso_json()), ("topic", msg.topic), ("qos", msg.qos),
                    ("retain", int(msg.retain)), ("payloadlen", len(msg.payload))])
    if msg.qos:
        root.append(("mid", msg.packet_id))
    if msg.properties:
        props = _Object()
        users: _Object | None = None
        last_u16 = 0
        for ident, value in msg.properties.items():
            name = ident.name.lower().replace("_", "-") if isinstance(ident, PropertyId) else ""
            if ident == PropertyId.USER_PROPERTY:
                if users is None:
                    users = _Object()
                    props.append(("user-properties", users))
                users.extend((k, v) for k, v in value)
            elif ident == PropertyId.SUBSCRIPTION_IDENTIFIER:
                props.extend((name, v) for v in value)
            elif ident == PropertyId.CORRELATION_DATA:
                last_u16 = len(value)
                props.append((name, _cstring(value)))
            elif ident == PropertyId.TOPIC_ALIAS:
                props.append((name, last_u16))  # Mosquitto reads the wrong property here
            elif ident in (PropertyId.PAYLOAD_FORMAT_INDICATOR, PropertyId.MESSAGE_EXPIRY_INTERVAL,
                           PropertyId.CONTENT_TYPE, PropertyId.RESPONSE_TOPIC):
                props.append((name, value))
        root.append(("properties", props))
    if not msg.payload:
        root.append(("payload", None))
    elif escaped:
        root.append(("payload", _cstring(msg.payload)))
    else:
        try:
            root.append(("payload", json_parse(msg.payload)))
        except (ValueError, RecursionError):
            return None
    try:
        return json_dump(root, pretty).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None if not escaped else b""


# --- -F -------------------------------------------------------------------------------


def _int(value: int, align: str, pad: str, width: int) -> bytes:
    if not width:
        return str(value).encode()
    if align == "-":
        return str(value).ljust(width).encode()
    if pad == "0":
        return (f"-{str(-value).zfill(width - 1)}" if value < 0 else str(value).zfill(width)).encode()
    return str(value).rjust(width).encode()


def _str(value: bytes, align: str, width: int, precision: int) -> bytes:
    if precision >= 0:
        value = value[:precision]
    if width > len(value):
        fill = b" " * (width - len(value))
        return value + fill if align == "-" else fill + value
    return value


def _payload(payload: bytes, hexmode: int, align: str, pad: str, width: int) -> bytes:
    """``write_payload``, quirks included."""
    n = len(payload)
    if width > 0:
        n = min(n, width)
        if hexmode:
            n //= 2
            padlen = width - n * 2
        else:
            padlen = width - n
    else:
        padlen = width - n
    body = payload[:n]
    if hexmode:
        body = body.hex().encode() if hexmode == 1 else body.hex().upper().encode()
    out = bytearray()
    if align != "-" and padlen > 0:
        out += pad.encode() * padlen
    out += body
    if align == "-":
        out += b" " * abs(padlen)
    return bytes(out)


class Printer:
    """``print_message`` for one program's options, writing to ``out``."""

    def __init__(self, cfg: Options, out: BinaryIO, err: BinaryIO) -> None:
        self.cfg = cfg
        self.out = out
        self.err = err

    def error(self, text: str) -> None:
        if not self.cfg.quiet:
            self.err.write(text.encode("utf-8", "surrogateescape"))
            self.err.flush()

    def print(self, msg: Publish) -> None:
        cfg = self.cfg
        if cfg.random_filter < 10000 and random.randrange(10000) >= cfg.random_filter:
            return
        topic = msg.topic.encode("utf-8", "surrogateescape")
        eol = b"\n" if cfg.eol else b""
        if cfg.format is not None:
            data = self.formatted(msg) + eol
        elif cfg.verbose:
            if msg.payload:
                data = topic + b" " + msg.payload + eol
            else:
                data = topic + b" (null)\n" if cfg.eol else b""
        else:
            data = msg.payload + eol if msg.payload else b""
        self.out.write(data)
        self.out.flush()

    def formatted(self, msg: Publish) -> bytes:
        """``formatted_print`` without the end of line."""
        fmt = self.cfg.format or ""
        n = len(fmt)
        out = bytearray()
        now: _Now | None = None
        i = 0
        while i < n:
            c = fmt[i]
            if c == "%":
                align, pad, width, precision = "", " ", 0, -1
                if i < n - 1:
                    i += 1
                    if fmt[i] == "-":
                        align = "-"
                        if i < n - 1:
                            i += 1
                    if fmt[i] == "0":
                        pad = "0"
                        if i < n - 1:
                            i += 1
                    while i < n - 1 and fmt[i].isdigit():
                        width = width * 10 + int(fmt[i])
                        i += 1
                    if fmt[i] == ".":
                        if i < n - 1:
                            i += 1
                            precision = 0
                            while i < n - 1 and fmt[i].isdigit():
                                precision = precision * 10 + int(fmt[i])
                                i += 1
                    if i < n:
                        out += self.field(msg, fmt[i], align, pad, width, precision)
            elif c == "@":
                if i < n - 1:
                    i += 1
                    if fmt[i] == "@":
                        out += b"@"
                    else:
                        now = now or _Now()
                        if fmt[i] == "N":
                            out += f"{now.ns:09d}".encode()
                        else:
                            out += now.strftime("%" + fmt[i]).encode("utf-8", "surrogateescape")
            elif c == "\\":
                if i < n - 1:
                    i += 1
                    out += _ESCAPES.get(fmt[i], b"")
            else:
                out += c.encode("utf-8", "surrogateescape")
            i += 1
        return bytes(out)

    def field(self, msg: Publish, kind: str, align: str, pad: str, width: int, precision: int) -> bytes:
        """``formatted_print_percent``: one ``%`` field."""
        props = msg.properties
        blank = pad.encode() * width

        def number(ident: PropertyId) -> bytes:
            value = props.get(ident)
            if isinstance(value, list):
                value = value[0] if value else None
            return blank if value is None else _int(value, align, pad, width)

        def text(ident: PropertyId, missing: bytes) -> bytes:
            value = props.get(ident)
            return missing if value is None else _str(value.encode(), align, width, precision)

        if kind == "%":
            return b"%"
        if kind == "A":
            return number(PropertyId.TOPIC_ALIAS)
        if kind == "C":
            return text(PropertyId.CONTENT_TYPE, b" " * width)
        if kind == "D":
            return props.get(PropertyId.CORRELATION_DATA, b"")
        if kind == "E":
            return number(PropertyId.MESSAGE_EXPIRY_INTERVAL)
        if kind == "F":
            return number(PropertyId.PAYLOAD_FORMAT_INDICATOR)
        if kind == "I":
            return _str(_Now().strftime("%Y-%m-%dT%H:%M:%S%z").encode(), align, width, precision)
        if kind in "jJ":
            data = json_message(msg, _Now(), kind == "j", self.cfg.pretty)
            if data is None:
                self.error(f"Error: Message payload is not valid JSON on topic {msg.topic}.\n")
                return b""
            return data
        if kind == "l":
            return _int(len(msg.payload), align, pad, width)
        if kind == "m":
            return _int(msg.packet_id or 0, align, pad, width)
        if kind == "P":
            pairs = props.get(PropertyId.USER_PROPERTY, [])
            return b" ".join(f"{k}:{v}".encode() for k, v in pairs)
        if kind == "p":
            return _payload(msg.payload, 0, align, pad, width)
        if kind == "q":
            return str(msg.qos).encode()
        if kind == "R":
            return text(PropertyId.RESPONSE_TOPIC, b"")
        if kind == "r":
            return b"1" if msg.retain else b"0"
        if kind == "S":
            return number(PropertyId.SUBSCRIPTION_IDENTIFIER)
        if kind == "t":
            return _str(msg.topic.encode(), align, width, precision)
        if kind == "U":
            now = _Now()
            return f"{now.seconds}.{now.ns:09d}".encode()
        if kind in "xX":
            return _payload(msg.payload, 1 if kind == "x" else 2, align, pad, width)
        return b""
