"""RetainedStore: store, replace, clear, and lookup by filter."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.hub.api import Message
from gateway.hub.retained import RetainedStore
from gateway.hub.topics import is_valid_topic_filter, topic_matches
from tests.hub.match_table import FILTERS, MATCHES, NAMES


def msg(topic, payload=b"x", qos=0):
    return Message(topic, payload, qos, True)


def topics(messages):
    return sorted(m.topic for m in messages)


@pytest.fixture
def store():
    s = RetainedStore()
    for t in [
        "a",
        "a/b",
        "a/c",
        "a/b/c",
        "a//b",
        "/a",
        "/",
        "b",
        "$SYS/broker/uptime",
        "$SYS",
        "$x/a",
        "a/$y",
    ]:
        s.store(msg(t, t.encode()))
    return s


def test_store_and_get():
    s = RetainedStore()
    assert len(s) == 0
    assert s.get("a") is None
    m = msg("a", b"one", qos=1)
    assert s.store(m) is True
    assert s.get("a") is m
    assert len(s) == 1
    assert s.topics() == ["a"]


def test_store_replaces():
    s = RetainedStore()
    s.store(msg("a/b", b"one"))
    second = msg("a/b", b"two", qos=2)
    assert s.store(second) is False  # not new
    assert len(s) == 1
    assert s.get("a/b") is second
    assert s.match("a/#") == [second]
    assert s.match("a/b") == [second]


def test_empty_payload_clears():
    s = RetainedStore()
    s.store(msg("a/b", b"one"))
    s.store(msg("a", b"parent"))
    assert s.store(msg("a/b", b"")) is False
    assert s.get("a/b") is None
    assert len(s) == 1
    assert topics(s.match("#")) == ["a"]
    assert s.match("a/+") == []


def test_clear_prunes_but_keeps_other_topics():
    s = RetainedStore()
    s.store(msg("a/b/c"))
    s.store(msg("a/x"))
    assert s.clear("a/b/c") is True
    assert set(s._root.children["a"].children) == {"x"}
    assert s.clear("a/x") is True
    assert s._root.children == {}
    assert len(s) == 0


def test_clearing_a_missing_topic_is_harmless():
    s = RetainedStore()
    assert s.clear("nothing") is False
    assert s.store(msg("nothing", b"")) is False
    s.store(msg("a/b/c"))
    assert s.clear("a/b") is False  # an interior level, never stored
    assert s.clear("a") is False
    assert s.store(msg("a/b", b"")) is False
    assert len(s) == 1
    assert topics(s.match("#")) == ["a/b/c"]


@pytest.mark.parametrize(
    "topic_filter, expected",
    [
        ("a", ["a"]),
        ("a/b", ["a/b"]),
        ("nothing", []),
        ("a/nothing", []),
        ("+", ["a", "b"]),
        ("a/+", ["a/$y", "a/b", "a/c"]),
        ("+/b", ["a/b"]),
        ("+/+", ["/", "/a", "a/$y", "a/b", "a/c"]),
        ("+/+/+", ["a//b", "a/b/c"]),
        ("a/+/b", ["a//b"]),
        ("a/#", ["a", "a//b", "a/$y", "a/b", "a/b/c", "a/c"]),
        ("a/b/#", ["a/b", "a/b/c"]),
        ("a/b/c/#", ["a/b/c"]),
        ("a/c/#", ["a/c"]),
        ("nothing/#", []),
        ("#", ["/", "/a", "a", "a//b", "a/$y", "a/b", "a/b/c", "a/c", "b"]),
        ("/#", ["/", "/a"]),
        ("+/#", ["/", "/a", "a", "a//b", "a/$y", "a/b", "a/b/c", "a/c", "b"]),
        ("$SYS/#", ["$SYS", "$SYS/broker/uptime"]),
        ("$SYS/+", []),
        ("$SYS/+/uptime", ["$SYS/broker/uptime"]),
        ("$x/+", ["$x/a"]),
        ("$SYS", ["$SYS"]),
        ("/", ["/"]),
        ("/+", ["/", "/a"]),
        ("+/a", ["/a"]),
    ],
)
def test_match(store, topic_filter, expected):
    assert topics(store.match(topic_filter)) == sorted(expected)


def test_match_agrees_with_topic_matches_on_the_table():
    s = RetainedStore()
    names = sorted({t for _, t, _ in MATCHES})
    for t in names:
        s.store(msg(t))
    for f in sorted({f for f, _, _ in MATCHES}):
        assert topics(s.match(f)) == [t for t in names if topic_matches(f, t)], f


def test_len_counts_topics():
    s = RetainedStore()
    for i in range(10):
        s.store(msg(f"t/{i}"))
    s.store(msg("t/3", b"again"))
    assert len(s) == 10
    s.store(msg("t/4", b""))
    s.clear("t/5")
    s.clear("t/5")
    assert len(s) == 8
    assert sorted(s.topics()) == sorted(f"t/{i}" for i in range(10) if i not in (4, 5))


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(NAMES, max_size=10), st.sets(NAMES, max_size=4), st.lists(FILTERS, min_size=1, max_size=5))
def test_store_agrees_with_topic_matches(stored, cleared, filters):
    s = RetainedStore()
    for t in stored:
        s.store(msg(t))
    for t in cleared:
        s.store(msg(t, b""))
    present = sorted(set(stored) - cleared)
    assert len(s) == len(present)
    for f in filters:
        assert is_valid_topic_filter(f)
        result = topics(s.match(f))
        assert result == [t for t in present if topic_matches(f, t)], f
        assert len(result) == len(set(result))  # each message once
