"""The filter/topic match table shared by the topic, trie and retained-store tests,
and the Hypothesis strategies the trie and retained-store properties draw from.

Cases follow Mosquitto's ``test/unit/util_topic_test.c`` and MQTT 3.1.1 §4.7:
``(topic_filter, topic_name, matches)``.
"""

from hypothesis import strategies as st

MATCHES = [
    # literal
    ("foo/bar", "foo/bar", True),
    ("foo/bar", "foo", False),
    ("foo", "foo/bar", False),
    ("foo/bar", "foo/baz", False),
    ("foo/bar", "Foo/bar", False),
    # '+' fills exactly one level
    ("foo/+", "foo/bar", True),
    ("foo/+", "foo/bar/baz", False),
    ("foo/+", "foo", False),
    ("foo/+/baz", "foo/bar/baz", True),
    ("foo/+/baz", "foo/bar/bar", False),
    ("+/+/+", "foo/bar/baz", True),
    ("+/+", "foo/bar/baz", False),
    ("+", "foo", True),
    ("+", "foo/bar", False),
    # '+' matches an empty level
    ("foo/+", "foo/", True),
    ("+/bar", "/bar", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("/+", "/", True),
    ("a/+/b", "a//b", True),
    # '#' matches the parent level and everything below
    ("#", "foo/bar/baz", True),
    ("#", "/foo/bar", True),
    ("#", "/", True),
    ("/#", "/foo/bar", True),
    ("/#", "foo/bar", False),
    ("foo/#", "foo", True),
    ("foo/#", "foo/", True),
    ("foo/#", "foo/bar/baz", True),
    ("foo/#", "foobar", False),
    ("foo/+/#", "foo/bar/baz", True),
    ("foo/+/#", "foo/bar", True),
    ("foo/+/#", "foo", False),
    ("foo/+/#", "fo2/bar/baz", False),
    ("+/#", "foo", True),
    ("A/B/+/#", "A/B/B/C", True),
    ("test/6/#", "test/3", False),
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    # empty levels are ordinary levels
    ("a//b", "a//b", True),
    ("a//b", "a/b", False),
    ("/", "/", True),
    ("/a", "/a", True),
    ("/a", "a", False),
    ("a/", "a/", True),
    ("a/", "a", False),
    # $ topics: not matched by a leading wildcard, matched literally
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("+/#", "$SYS/x", False),
    ("+", "$SYS", False),
    ("#", "$SYS", False),
    ("$SYS/#", "$SYS/x", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$SYS/+", "$SYS/x", True),
    ("$SYS/x", "$SYS/x", True),
    ("$BOB/bar", "$SYS/bar", False),
    ("foo/#", "foo/$bar", True),
    ("foo/+/baz", "foo/$bar/baz", True),
    ("+/$x", "a/$x", True),
    # '$' only counts at the very start of the topic
    ("#", "a$/x", True),
    ("+/x", "a$/x", True),
]

# Topic names and filters over a few levels, for the properties checked against topic_matches.
NAME_LEVEL = st.sampled_from(["a", "b", "", "$x"])
FILTER_LEVEL = st.sampled_from(["a", "b", "", "$x", "+"])
NAMES = st.lists(NAME_LEVEL, min_size=1, max_size=4).map("/".join).filter(bool)
# '#' may only end a filter: draw the other levels, then maybe append '#'
FILTERS = st.builds(
    lambda levels, hash_: "/".join(levels + ["#"] if hash_ else levels),
    st.lists(FILTER_LEVEL, max_size=4),
    st.booleans(),
).filter(bool)
