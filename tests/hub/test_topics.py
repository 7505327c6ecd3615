"""Topic name and filter validation, and the reference matcher (gateway.hub.topics)."""

import pytest

from gateway.hub.topics import (
    MAX_TOPIC_BYTES,
    MAX_TOPIC_SEPARATORS,
    TopicError,
    has_wildcard,
    is_valid_topic_filter,
    is_valid_topic_name,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)
from tests.hub.match_table import MATCHES

LONGEST_ASCII = "a" * MAX_TOPIC_BYTES
TOO_LONG_ASCII = "a" * (MAX_TOPIC_BYTES + 1)
# 32767 two-byte characters + 1 byte = 65535 bytes; the limit is on UTF-8 bytes.
LONGEST_UTF8 = "\u00e9" * 32767 + "a"
TOO_LONG_UTF8 = "\u00e9" * 32768  # 32768 characters, 65536 bytes
# Mosquitto's TOPIC_HIERARCHY_LIMIT: 200 separators, 201 levels.
DEEPEST = "a/" * 200 + "a"
TOO_DEEP = [DEEPEST + "/a", "/" * 201, "/" * MAX_TOPIC_BYTES]

VALID_FILTERS = [
    "a",
    "a/b/c",
    "#",
    "+",
    "+/+",
    "+/#",
    "a/#",
    "a/+",
    "a/+/b",
    "a/+/#",
    "/#",
    "/",
    "//",
    "a//b",
    "/a",
    "a/",
    "/+",
    "+/",
    "$SYS/#",
    "$SYS/broker/+",
    "a b/c d",
    "caf\u00e9/\u6e29\u5ea6",
    "\U0001f600/+",
    LONGEST_ASCII,
    LONGEST_UTF8,
    "+/" * 100 + "#",
    "+/" * 200 + "#",
    "/" * 200,
    DEEPEST,
]

INVALID_FILTERS = [
    "",
    "a/b#",
    "a#",
    "#a",
    "a+/b",
    "a/b+",
    "+a",
    "++",
    "##",
    "a/++",
    "#/",
    "#/a",
    "a/#/b",
    "a/#/#",
    "+#",
    "\x00",
    "a\x00b",
    "a/\x00/#",
    "\ud800",  # lone surrogate: not encodable as UTF-8
    TOO_LONG_ASCII,
    TOO_LONG_UTF8,
    TOO_LONG_ASCII[:-2] + "/#",
    "+/" * 201 + "#",
    *TOO_DEEP,
]

VALID_NAMES = [
    "a",
    "a/b/c",
    "/",
    "//",
    "a//b",
    "/a",
    "a/",
    " ",
    "a b/c d",
    "$SYS/broker/uptime",
    "$",
    "a$/b",
    "caf\u00e9/\u6e29\u5ea6",
    "\U0001f600",
    LONGEST_ASCII,
    LONGEST_UTF8,
    DEEPEST,
]

INVALID_NAMES = [
    "",
    "+",
    "#",
    "a/+",
    "a/#",
    "+/a",
    "#/a",
    "a/b#",
    "a+/b",
    "a/#/b",
    "\x00",
    "a\x00",
    "a/\x00/b",
    "\ud800",
    TOO_LONG_ASCII,
    TOO_LONG_UTF8,
    *TOO_DEEP,
]


def _short(value):
    return value if len(value) < 20 else f"{value[:8]}...({len(value)} chars)"


@pytest.mark.parametrize("topic_filter", VALID_FILTERS, ids=_short)
def test_valid_filters(topic_filter):
    validate_topic_filter(topic_filter)
    assert is_valid_topic_filter(topic_filter)


@pytest.mark.parametrize("topic_filter", INVALID_FILTERS, ids=_short)
def test_invalid_filters(topic_filter):
    with pytest.raises(TopicError):
        validate_topic_filter(topic_filter)
    assert not is_valid_topic_filter(topic_filter)


@pytest.mark.parametrize("topic", VALID_NAMES, ids=_short)
def test_valid_names(topic):
    validate_topic_name(topic)
    assert is_valid_topic_name(topic)
    # every valid name is also a valid (wildcard-free) filter
    assert is_valid_topic_filter(topic)


@pytest.mark.parametrize("topic", INVALID_NAMES, ids=_short)
def test_invalid_names(topic):
    with pytest.raises(TopicError):
        validate_topic_name(topic)
    assert not is_valid_topic_name(topic)


def test_topic_error_is_a_value_error():
    with pytest.raises(ValueError):
        validate_topic_name("")


def test_level_limit_is_mosquittos():
    assert MAX_TOPIC_SEPARATORS == 200
    assert DEEPEST.count("/") == 200 and len(DEEPEST.split("/")) == 201


def test_length_limit_counts_utf8_bytes_not_characters():
    assert len(TOO_LONG_UTF8) < MAX_TOPIC_BYTES
    assert len(TOO_LONG_UTF8.encode("utf-8")) == MAX_TOPIC_BYTES + 1
    assert len(LONGEST_UTF8.encode("utf-8")) == MAX_TOPIC_BYTES
    assert not is_valid_topic_name(TOO_LONG_UTF8)
    assert is_valid_topic_name(LONGEST_UTF8)


@pytest.mark.parametrize(
    "topic_filter, expected",
    [("a/b", False), ("a/+", True), ("#", True), ("a/#", True), ("/", False), ("$SYS/x", False)],
)
def test_has_wildcard(topic_filter, expected):
    assert has_wildcard(topic_filter) is expected


@pytest.mark.parametrize("topic_filter, topic, expected", MATCHES)
def test_topic_matches(topic_filter, topic, expected):
    # the table only holds valid filters and names
    assert is_valid_topic_filter(topic_filter)
    assert is_valid_topic_name(topic)
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic", VALID_NAMES, ids=_short)
def test_a_name_matches_itself_as_a_filter(topic):
    assert topic_matches(topic, topic)


@pytest.mark.parametrize("topic", VALID_NAMES, ids=_short)
def test_hash_matches_every_name_not_starting_with_dollar(topic):
    assert topic_matches("#", topic) is (not topic.startswith("$"))
