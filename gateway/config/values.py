"""Converters: the text after a key to the value it sets, or ``ConfigError(reason)``.

Each converter sees only its own line's value and knows nothing of sections, so the
key table (``gateway.config.keys``) can pair any of them with any key, and the parser
adds the file, line and key to the reason.  Integers are checked for length before
``int()``, which would otherwise raise ``ValueError`` on over 4300 digits.  This
module imports nothing else of the configuration, so any of it may use the converters.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Callable

from gateway.errors import ConfigError

COAP_QOS_CHOICES = frozenset({"qos0", "qos1", "qos2", "coap"})   # as EMQX: coap = CON 1, NON 0
COAP_NOTIFY_TYPES = frozenset({"non", "con", "qos"})
SOCKET_DOMAINS = frozenset({"ipv4", "ipv6"})
MQTTSN_FRAMINGS = frozenset({"plain", "xbee1", "xbee2"})
TLS_VERSIONS = frozenset({"tlsv1.1", "tlsv1.2", "tlsv1.3"})
ALL_LOG_TYPES = ("debug", "error", "warning", "notice", "information",
                 "subscribe", "unsubscribe", "websockets")
LOG_DESTS = frozenset({"stderr", "stdout", "syslog", "topic", "dlt"})  # plus "file PATH", "none"
MAX_PAYLOAD = 268435455                     # largest MQTT remaining length
WEBSOCKETS_HEADERS_SIZE = 4096              # Mosquitto 2.1's default; 0 in the file means it
#: Digits an integer value may have (leading zeros aside): every limit is far
#: below, and ``int()`` itself refuses strings over 4300 digits.
MAX_DIGITS = 18
DURATION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> int:
    """Seconds in a Mosquitto duration: ``<n>h``, ``d``, ``w``, ``m`` (30 days) or ``y`` (365)."""
    match = re.fullmatch(r"([0-9]+)([hdwmy])", text)
    if match is None:
        raise ConfigError(f"expected a duration such as 2d, 1w, 3m or 1y, got {text!r}")
    if len(match[1].lstrip("0")) > MAX_DIGITS:
        raise ConfigError(f"duration {text[:MAX_DIGITS]}... is too long")
    seconds = int(match[1]) * DURATION_UNITS[match[2]]
    if seconds <= 0:
        raise ConfigError("duration must be greater than zero")
    return seconds


def one_word(args: str) -> str:
    words = args.split()
    if not words:
        raise ConfigError("missing value")
    if len(words) > 1:
        raise ConfigError("too many values")
    return words[0]


def to_int(word: str, low: int, high: int | None) -> int:
    if not re.fullmatch(r"-?[0-9]+", word):
        raise ConfigError(f"expected an integer, got {word!r}")
    limits = f"{low}..{high}" if high is not None else f"at least {low}"
    if len(word.lstrip("-0")) > MAX_DIGITS:
        raise ConfigError(f"{word[:MAX_DIGITS]}... is out of range ({limits})")
    value = int(word)
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{value} is out of range ({limits})")
    return value


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    return lambda args: to_int(one_word(args), low, high)


def packet_size(args: str) -> int:
    value = to_int(one_word(args), 0, None)
    if 0 < value < 20:
        raise ConfigError(f"{value} is out of range (0 for no limit, or at least 20)")
    return value


def boolean(args: str) -> bool:
    # Mosquitto's conf__parse_bool also takes 1 and 0.
    word = one_word(args)
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise ConfigError(f"expected true or false, got {word!r}")


def choice(allowed: frozenset[str], reason: str) -> Callable[[str], str]:
    def convert(args: str) -> str:
        word = one_word(args)
        if word not in allowed:
            raise ConfigError(reason.format(word))
        return word
    return convert


def rest_of_line(args: str) -> str:
    # The rest of the line, blanks included, like Mosquitto's conf__parse_string.
    if not args:
        raise ConfigError("missing value")
    return args


def duration(args: str) -> int:
    return parse_duration(one_word(args))


def listener_args(args: str) -> tuple[int, str | None]:
    words = args.split()
    if len(words) > 1 and words[1].startswith("#"):
        words = words[:1]                  # "listener 1883 # comment", as Mosquitto allows
    if not words:
        raise ConfigError("missing value")
    if len(words) > 2:
        raise ConfigError("too many values")
    return to_int(words[0], 1, 65535), (words[1] if len(words) == 2 else None)


def rate(args: str) -> tuple[int, float]:
    # "COUNT" or "COUNT/SECONDS": new connections allowed per source address.
    count, _, seconds = one_word(args).partition("/")
    n = to_int(count, 1, None)
    if not seconds:
        return n, 1.0
    try:
        period = float(seconds.rstrip("s"))
    except ValueError:
        period = 0.0
    if not 0 < period < math.inf:  # also refuses "nan"
        raise ConfigError(f"expected COUNT or COUNT/SECONDS, got {args.strip()!r}")
    return n, period


def mqttsn_predefined(args: str) -> tuple[int, str]:
    words = args.split(None, 1)
    if len(words) < 2:
        raise ConfigError("expected a topic id and a topic name")
    topic_id = to_int(words[0], 1, 0xFFFE)
    topic = words[1].strip()
    if "+" in topic or "#" in topic:
        raise ConfigError(f"a predefined topic is a topic name, not a filter: {topic!r}")
    return topic_id, topic


def mqttsn_serial(args: str) -> tuple[str, int, str]:
    words = args.split()
    if len(words) != 3:
        raise ConfigError("expected DEVICE BAUD FRAMING")
    device, baud, framing = words
    if framing not in MQTTSN_FRAMINGS:
        raise ConfigError(f"framing must be plain, xbee1 or xbee2, got {framing!r}")
    return device, to_int(baud, 50, 4_000_000), framing


def mqttsn_client(args: str) -> tuple[str, str]:
    words = args.split()
    if not words or len(words) > 2:
        raise ConfigError("expected CLIENT_ID [USERNAME]")
    return words[0], words[-1]


def mount_point(args: str) -> str:
    value = rest_of_line(args)
    if "+" in value or "#" in value or "\x00" in value:
        raise ConfigError(f"invalid mount point {value!r}: no wildcards")
    return value


def protocol_versions(args: str) -> frozenset[int]:
    """Mosquitto 2.1's list: ``3``, ``4`` and ``5`` separated by commas or spaces."""
    words = [w for w in args.replace(",", " ").split() if w]
    if not words:
        raise ConfigError("expected a list of 3, 4 and 5")
    unknown = [w for w in words if w not in ("3", "4", "5")]
    if unknown:
        raise ConfigError(f"unknown protocol version {unknown[0]!r} (expected 3, 4 or 5)")
    return frozenset(int(w) for w in words)


def mqttsn_multicast(args: str) -> tuple[str, int]:
    words = args.split()
    if len(words) != 2:
        raise ConfigError("expected GROUP PORT")
    try:
        group = ipaddress.IPv4Address(words[0])
    except ValueError:
        group = None
    if group is None or not group.is_multicast:
        raise ConfigError(f"not an IPv4 multicast group: {words[0]!r}")
    return str(group), to_int(words[1], 1, 65535)


def headers_size(args: str) -> int:
    return to_int(one_word(args), 0, 65535) or WEBSOCKETS_HEADERS_SIZE


log_type = choice(frozenset(ALL_LOG_TYPES) | {"none", "all"}, "unknown log type {!r}")


def log_dest(args: str) -> str:
    words = args.split(None, 1)
    if words[:1] == ["file"]:
        if len(words) == 1:
            raise ConfigError("the file destination needs a path")
        return f"file {words[1]}"
    return choice(LOG_DESTS | {"none"}, "unknown log destination {!r}")(args)

