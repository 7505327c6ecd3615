"""SubscriptionTrie: matching, add/remove/prune, QoS merging, and cost at 100,000 subscriptions."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.hub.api import Subscription
from gateway.hub.topics import is_valid_topic_filter, topic_matches
from gateway.hub.trie import SubscriptionTrie as Trie
from tests.hub.match_table import FILTERS, MATCHES, NAMES


class SubscriptionTrie(Trie):
    """The trie with plain QoS numbers for subscriptions, as most tests here want."""

    def add(self, topic_filter, subscriber, qos, group=None):
        sub = qos if isinstance(qos, Subscription) else Subscription(qos)
        return super().add(topic_filter, subscriber, sub, group)

    def match(self, topic):
        subs, _ = super().match(topic)
        return {k: v.qos for k, v in subs.items()}

    def subscriptions(self):
        return ((f, s, sub.qos) for f, s, sub in super().subscriptions())

# --- the shared match table -------------------------------------------------------


@pytest.mark.parametrize("topic_filter, topic, expected", MATCHES)
def test_match_table_one_filter(topic_filter, topic, expected):
    trie = SubscriptionTrie()
    trie.add(topic_filter, "s", 1)
    assert ("s" in trie.match(topic)) is expected


def test_match_table_all_filters_at_once():
    """Every table filter in one trie; each topic gets exactly the filters that match it."""
    trie = SubscriptionTrie()
    filters = sorted({f for f, _, _ in MATCHES})
    for f in filters:
        trie.add(f, f, 0)  # the subscriber is named after its filter
    for topic in sorted({t for _, t, _ in MATCHES}):
        expected = {f for f in filters if topic_matches(f, topic)}
        assert set(trie.match(topic)) == expected, topic
    for f, topic, expected in MATCHES:
        assert (f in trie.match(topic)) is expected, (f, topic)


def test_no_match_returns_an_empty_mapping():
    trie = SubscriptionTrie()
    assert trie.match("a") == {}
    trie.add("b/#", "s", 0)
    assert trie.match("a/b") == {}
    assert trie.match("$SYS/b") == {}


# --- reference property -----------------------------------------------------------

# (subscriber, filter) -> QoS: one subscriber may hold several filters
SUBSCRIPTIONS = st.dictionaries(st.tuples(st.integers(0, 3), FILTERS), st.integers(0, 2), max_size=12)


def brute_force(subscriptions, topic):
    """What match() must return: each matching subscriber once, with its highest QoS."""
    out = {}
    for (sub, f), qos in subscriptions.items():
        if topic_matches(f, topic) and qos >= out.get(sub, -1):
            out[sub] = qos
    return out


@settings(max_examples=120, deadline=None, database=None)
@given(SUBSCRIPTIONS, st.lists(NAMES, min_size=1, max_size=6), st.data())
def test_trie_agrees_with_topic_matches(subscriptions, topics, data):
    trie = SubscriptionTrie()
    for (sub, f), qos in subscriptions.items():
        assert is_valid_topic_filter(f)
        assert trie.add(f, sub, qos)
    assert trie.count == len(subscriptions)
    for topic in topics:
        assert trie.match(topic) == brute_force(subscriptions, topic), topic

    # remove some; the rest must still match exactly, and removed ones not at all
    keys = sorted(subscriptions)
    removed = data.draw(st.sets(st.sampled_from(keys)) if keys else st.just(set()))
    for sub, f in removed:
        assert trie.remove(f, sub)
        assert not trie.remove(f, sub)
    remaining = {k: v for k, v in subscriptions.items() if k not in removed}
    assert trie.count == len(remaining)
    for topic in topics:
        assert trie.match(topic) == brute_force(remaining, topic), topic
    assert sorted((f, s, o) for f, s, o in trie.subscriptions()) == sorted(
        (f, s, q) for (s, f), q in remaining.items()
    )
    if not remaining:
        assert not trie._root.children


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 3), FILTERS, st.integers(0, 2)),
    st.tuples(st.just("remove"), st.integers(0, 3), FILTERS),
    st.tuples(st.just("match"), NAMES),
), max_size=40)


@settings(max_examples=150, deadline=None, database=None)
@given(OPERATIONS)
def test_kept_matches_follow_every_change_to_the_trie(operations):
    trie = SubscriptionTrie()
    subscriptions: dict = {}
    for op, *args in operations:
        if op == "add":
            sub, f, qos = args
            trie.add(f, sub, qos)
            subscriptions[(sub, f)] = qos
        elif op == "remove":
            sub, f = args
            assert trie.remove(f, sub) == ((sub, f) in subscriptions)
            subscriptions.pop((sub, f), None)
        else:
            topic, = args
            expected = brute_force(subscriptions, topic)
            assert trie.match(topic) == expected, topic
            items, _ = Trie.deliveries(trie, topic)
            assert {k: v.qos for k, v in items} == expected, topic


def test_deliveries_are_a_snapshot_that_later_changes_leave_alone():
    trie = SubscriptionTrie()
    trie.add("a/+", "s1", 1)
    trie.add("a/+", "s2", 1)
    items, groups = Trie.deliveries(trie, "a/b")
    trie.remove("a/+", "s1")
    trie.add("a/b", "s3", 0)
    assert [k for k, _ in items] == ["s1", "s2"] and not groups
    assert sorted(k for k, _ in Trie.deliveries(trie, "a/b")[0]) == ["s2", "s3"]


def test_kept_matches_are_bounded():
    from gateway.hub import trie as module
    trie = SubscriptionTrie()
    trie.add("#", "all", 0)
    assert trie.match("x" * (module.MATCH_KEPT_TOPIC + 1)) == {"all": 0}
    assert trie._matched == {}
    for i in range(module.MATCH_KEPT + 10):
        assert trie.match(f"t/{i}") == {"all": 0}
    assert 0 < len(trie._matched) <= module.MATCH_KEPT


# --- add / remove / prune ---------------------------------------------------------


def test_add_counts_new_subscriptions_and_replaces_existing():
    trie = SubscriptionTrie()
    assert trie.add("a/b", "s1", 0) is True
    assert trie.add("a/b", "s2", 1) is True
    assert trie.add("a/+", "s1", 2) is True
    assert trie.count == 3
    assert trie.add("a/b", "s1", 2) is False  # same subscriber and filter: replaced
    assert trie.count == 3
    assert trie.match("a/b") == {"s1": 2, "s2": 1}


def test_remove():
    trie = SubscriptionTrie()
    trie.add("a/b", "s1", 1)
    trie.add("a/b", "s2", 1)
    assert trie.remove("a/b", "s1") is True
    assert trie.count == 1
    assert trie.match("a/b") == {"s2": 1}
    assert trie.remove("a/b", "s1") is False  # already gone
    assert trie.remove("a/c", "s2") is False  # no such filter
    assert trie.remove("a/b/c", "s2") is False  # deeper than anything stored
    assert trie.remove("a", "s2") is False  # an interior node, not a filter
    assert trie.count == 1


def test_remove_a_subscription_with_options_zero():
    trie = SubscriptionTrie()
    trie.add("a", "s", 0)
    assert trie.remove("a", "s") is True
    assert trie.count == 0
    assert trie.match("a") == {}


def test_remove_prunes_empty_branches_only():
    trie = SubscriptionTrie()
    trie.add("a/b/c", "s", 0)
    trie.add("a/x", "s", 0)
    trie.add("a", "t", 0)
    assert trie.remove("a/b/c", "s")
    a = trie._root.children["a"]
    assert set(a.children) == {"x"}  # a/b and a/b/c pruned, a/x kept
    assert trie.remove("a/x", "s")
    assert a.children == {}
    assert trie._root.children == {"a": a}  # 'a' still holds a subscriber
    assert trie.remove("a", "t")
    assert not trie._root.children
    assert trie.count == 0


def test_remove_keeps_a_node_that_still_has_subscribers():
    trie = SubscriptionTrie()
    trie.add("a/b", "s", 0)
    trie.add("a/b", "t", 0)
    trie.add("a/b/c", "s", 0)
    trie.remove("a/b/c", "s")
    trie.remove("a/b", "s")
    assert trie.match("a/b") == {"t": 0}
    assert [f for f, _, _ in trie.subscriptions()] == ["a/b"]


def test_subscriptions_lists_every_filter_including_empty_levels():
    trie = SubscriptionTrie()
    entries = {("/", "s", 0), ("a//b", "s", 1), ("/a", "t", 2), ("#", "t", 0), ("a/+/#", "u", 5)}
    for f, s, o in entries:
        trie.add(f, s, o)
    assert set(trie.subscriptions()) == entries


def test_empty_levels_are_distinct_filters():
    trie = SubscriptionTrie()
    trie.add("a/b", "ab", 0)
    trie.add("a//b", "a__b", 0)
    trie.add("/a", "_a", 0)
    trie.add("/", "_", 0)
    assert set(trie.match("a/b")) == {"ab"}
    assert set(trie.match("a//b")) == {"a__b"}
    assert set(trie.match("/a")) == {"_a"}
    assert set(trie.match("/")) == {"_"}


# --- overlapping subscriptions ----------------------------------------------------


def test_overlapping_filters_of_one_subscriber_give_one_entry_at_highest_qos():
    trie = SubscriptionTrie()
    trie.add("a/+", "s", 0)
    trie.add("a/#", "s", 2)
    trie.add("a/b", "s", 1)
    trie.add("#", "s", 0)
    trie.add("a/b", "t", 1)
    assert trie.match("a/b") == {"s": 2, "t": 1}
    assert trie.match("a/c") == {"s": 2}
    assert trie.match("x") == {"s": 0}


def test_overlapping_subscriptions_merge_into_one_delivery():
    """Highest QoS, every identifier, no-local only if every match says so, retain as
    published if any does."""
    trie = Trie()
    trie.add("a/+", "s", Subscription(1, no_local=True, retain_as_published=True, identifier=7))
    trie.add("a/#", "s", Subscription(2, identifier=9))
    trie.add("#", "s", Subscription(0, no_local=True))
    subs, groups = trie.match("a/b")
    merged = subs["s"]
    assert (merged.qos, merged.no_local, merged.retain_as_published) == (2, False, True)
    assert sorted(merged.ids) == [7, 9]
    assert groups == ()
    trie.remove("a/#", "s")
    subs, _ = trie.match("a/b")
    assert (subs["s"].qos, subs["s"].no_local, subs["s"].ids) == (1, True, (7,))


def test_shared_groups_are_matched_apart_from_plain_subscribers():
    trie = Trie()
    trie.add("a/+", "m1", Subscription(1), group="g")
    trie.add("a/+", "m2", Subscription(0), group="g")
    trie.add("a/#", "m1", Subscription(2), group="h")
    trie.add("a/b", "plain", Subscription(0))
    subs, groups = trie.match("a/b")
    assert set(subs) == {"plain"}
    assert sorted((g.name, g.topic_filter, sorted(g.members)) for g in groups) == [
        ("g", "a/+", ["m1", "m2"]), ("h", "a/#", ["m1"])]
    assert trie.count == 4
    assert trie.remove("a/+", "m1", group="g") and trie.remove("a/+", "m2", group="g")
    assert trie.group("a/+", "g") is None
    assert trie.remove("a/+", "m1", group="g") is False
    assert sorted(f for f, _, _ in trie.subscriptions()) == ["$share/h/a/#", "a/b"]


def test_a_share_group_rotates_its_members():
    trie = Trie()
    for m in ("x", "y", "z"):
        trie.add("t", m, Subscription(1), group="g")
    group = trie.group("t", "g")
    firsts = [group.rotation()[0][0] for _ in range(6)]
    assert firsts == ["x", "y", "z", "x", "y", "z"]


def test_match_result_is_not_affected_by_later_merges():
    trie = SubscriptionTrie()
    trie.add("a/b", "s", 0)
    trie.add("a/+", "s", 2)
    assert trie.match("a/b") == {"s": 2}
    assert trie.match("a/c") == {"s": 2}
    assert trie.match("a/b") == {"s": 2}


# --- 100,000 subscriptions --------------------------------------------------------

GLOBAL = [("#", "everything", 0), ("site/#", "site-all", 1), ("+/+/temp", "temps", 2), ("$SYS/#", "sys", 0)]


def wide_subscriptions(total, subscribers):
    """``total`` distinct filters (including GLOBAL) spread over ``subscribers`` clients."""
    out = list(GLOBAL)
    for i in range(total - len(GLOBAL)):
        kind = i % 4
        if kind == 0:
            f = f"site/{i}/temp"
        elif kind == 1:
            f = f"site/{i}/+"
        elif kind == 2:
            f = f"site/+/{i}"
        else:
            f = f"site/{i}/#"
        out.append((f, f"c{i % subscribers}", i % 3))
    return out


def build(subscriptions):
    trie = SubscriptionTrie()
    for f, sub, qos in subscriptions:
        trie.add(f, sub, qos)
    return trie


class CountingDict(dict):
    """A node's children dict that counts every child match() looks up or walks over."""

    calls = 0

    def get(self, key, default=None):
        CountingDict.calls += 1
        return dict.get(self, key, default)

    def __getitem__(self, key):
        CountingDict.calls += 1
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        CountingDict.calls += 1
        return dict.__contains__(self, key)

    def __iter__(self):
        for key in dict.__iter__(self):
            CountingDict.calls += 1
            yield key

    def keys(self):
        return list(iter(self))

    def values(self):
        return [dict.__getitem__(self, k) for k in iter(self)]

    def items(self):
        return [(k, dict.__getitem__(self, k)) for k in iter(self)]


def instrument(trie):
    stack = [trie._root]
    while stack:
        node = stack.pop()
        children = node.children or {}
        stack.extend(dict.values(children))
        node.children = CountingDict(children)


def lookups(trie, topic):
    """The match of ``topic`` and the children looked at to find it (walked, not kept)."""
    trie._matched.clear()
    CountingDict.calls = 0
    result = trie.match(topic)
    return dict(result), CountingDict.calls


@pytest.fixture(scope="module")
def big():
    subscriptions = wide_subscriptions(100_000, 4999)
    trie = build(subscriptions)
    return subscriptions, trie


# Topics whose paths exist in the 100-subscription trie as well.
SMALL_TOPICS = [
    "site/40/temp",  # site/40/temp, site/#, +/+/temp, #
    "site/41/x",  # site/41/+
    "site/43/a/b",  # site/43/#
    "site/7/42",  # site/7/#, site/+/42
    "site/7",  # site/7/# matches its parent
    "site/42/temp",
    "site/nothing/here",
    "other/x/temp",
    "$SYS/broker/uptime",
    "a",
]


def test_100k_subscriptions_match_exactly_the_right_subscribers(big):
    subscriptions, trie = big
    assert trie.count == 100_000
    assert len({f for f, _, _ in subscriptions}) == 100_000
    topics = SMALL_TOPICS[:5] + [
        "$SYS/broker/uptime",
        "site/7/5006",  # two filters of subscriber c7 (site/7/# QoS 1, site/+/5006 QoS 2)
        "site/99995/temp",
        "site/12345/a/b/c",
    ]
    for topic in topics:
        expected = {}
        for f, sub, qos in subscriptions:
            if topic_matches(f, topic) and qos >= expected.get(sub, -1):
                expected[sub] = qos
        assert trie.match(topic) == expected, topic
    assert trie.match("site/7/5006")["c7"] == 2
    assert trie.match("$SYS/broker/uptime") == {"sys": 0}


def test_100k_subscriptions_cost_does_not_grow_with_subscription_count(big):
    """The children match() examines are the same for 100 and 100,000 subscriptions.

    The measure is deterministic, not a timing: every node's ``children`` is swapped
    for a dict that counts each lookup and each child iterated over, so a matcher
    that scanned siblings or subscriptions would show a count growing with the trie.
    """
    _, large = big
    small = build(wide_subscriptions(100, 4999))
    assert small.count == 100
    # the big trie is genuinely wide where the topics walk
    assert len(large._root.children["site"].children) > 70_000
    assert len(large._root.children["site"].children["+"].children) > 20_000
    instrument(small)
    instrument(large)
    for topic in SMALL_TOPICS:
        small_result, small_cost = lookups(small, topic)
        large_result, large_cost = lookups(large, topic)
        assert large_result == small_result, topic
        assert large_cost == small_cost, topic
        # bounded by the topic's depth: at most the literal, '+' and '#' child per
        # level of the (at most two) branches a topic of this table can follow
        depth = topic.count("/") + 1
        assert large_cost <= 3 * 2 * (depth + 1), (topic, large_cost)


def test_cost_does_not_depend_on_subscribers_of_one_filter():
    """100,000 subscribers on a single filter: still one node visited per level."""
    trie = SubscriptionTrie()
    for i in range(100_000):
        trie.add("a/b", i, i % 3)
    trie.add("a/c", "other", 0)
    instrument(trie)
    result, cost = lookups(trie, "a/b")
    assert len(result) == 100_000
    _, cost_other = lookups(trie, "a/c")
    assert cost == cost_other
