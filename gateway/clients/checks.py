"""Mosquitto's checks of command-line values, and the C functions it reads them with.

``atoi``/``atof``/``strtol`` accept what C accepts (a number may be followed by
anything, or be missing: 0), ``valid_utf8`` is ``mosquitto_validate_utf8``, the
topic checks are ``mosquitto_pub_topic_check``/``mosquitto_sub_topic_check`` and
``check_format`` is ``mosquitto_sub -F``'s.
"""

from __future__ import annotations

import os
import re

_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?\d+)")
_FLOAT = re.compile(r"[ \t\n\v\f\r]*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)")


def atoi(text: str) -> int:
    """C's ``atoi``/``atol``: the leading integer, 0 when there is none."""
    m = _INT.match(text)
    return int(m.group(1)) if m else 0


def atof(text: str) -> float:
    m = _FLOAT.match(text)
    return float(m.group(1)) if m else 0.0


def strtol(text: str) -> int | None:
    """``strtol(text, &end, 0)`` that must use the whole text; None otherwise."""
    m = re.fullmatch(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)", text)
    if not m:
        return None
    digits = m.group(2)
    base = 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") else 10
    value = int(digits, base)
    return -value if m.group(1) == "-" else value


def arg_bytes(text: str) -> bytes:
    """An argument as the bytes the program was given."""
    return os.fsencode(text)


def valid_utf8(text: str) -> bool:
    """``mosquitto_validate_utf8``: well-formed, and no controls or non-characters."""
    try:
        s = arg_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return False
    for ch in s:
        c = ord(ch)
        if c <= 0x1F or 0x7F <= c <= 0x9F or 0xFDD0 <= c <= 0xFDEF or c & 0xFFFE == 0xFFFE:
            return False
    return len(s.encode()) <= 65536


def as_text(text: str) -> str:
    """An argument checked by ``valid_utf8`` as a proper ``str``."""
    return arg_bytes(text).decode("utf-8")


def pub_topic_ok(topic: str) -> bool:
    return "+" not in topic and "#" not in topic and len(topic) <= 65535


def sub_topic_ok(topic: str) -> bool:
    """``mosquitto_sub_topic_check``: ``+`` a whole level, ``#`` a whole last level."""
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "+" in level and level != "+":
            return False
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
    return len(topic) <= 65535


def check_format(fmt: str) -> str | None:
    """``-F`` checked as ``check_format()``: the error text, or None when it is fine."""
    i, n = 0, len(fmt)
    incomplete = "Error: Incomplete format specifier.\n"
    while i < n:
        c = fmt[i]
        if c == "%":
            if i == n - 1:
                return incomplete
            if fmt[i + 1] in "0-":
                i += 1
                if i == n - 1:
                    return incomplete
            while fmt[i + 1].isdigit():
                i += 1
                if i == n - 1:
                    return incomplete
            if fmt[i + 1] == ".":
                i += 1
                if i == n - 1:
                    return incomplete
                while fmt[i + 1].isdigit():
                    i += 1
                    if i == n - 1:
                        return incomplete
            if fmt[i + 1] not in "%ACDEFIlmPpqRSrtjJUxX":
                return f"Error: Invalid format specifier '{fmt[i + 1]}'.\n"
            i += 1
        elif c == "@":
            if i == n - 1:
                return incomplete
            i += 1
        elif c == "\\":
            if i == n - 1:
                return "Error: Incomplete escape specifier.\n"
            if fmt[i + 1] not in "\\0aenrtv":
                return f"Error: Invalid escape specifier '{fmt[i + 1]}'.\n"
            i += 1
        i += 1
    return None
