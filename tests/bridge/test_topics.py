"""Topic lines and remapping, as Mosquitto's ``bridge__add_topic`` and remap functions."""

from __future__ import annotations

import pytest

from gateway.bridge.topics import TopicRule, make_rule, parse_rule, remap_in, remap_out


@pytest.mark.parametrize("args, rule", [
    ("sensors/#", TopicRule("sensors/#", "out", 0, "", "")),
    ("sensors/# in", TopicRule("sensors/#", "in", 0, "", "")),
    ("sensors/# BOTH 2", TopicRule("sensors/#", "both", 2, "", "")),
    ("# both 2 local/topic/ remote/topic/", TopicRule("#", "both", 2, "local/topic/", "remote/topic/")),
    ('t out 1 "" R/', TopicRule("t", "out", 1, "", "R/")),
    ('t out 1 L/ ""', TopicRule("t", "out", 1, "L/", "")),
    ('"" in 0 local remote', TopicRule("", "in", 0, "local", "remote")),
    ("clients/total in 0 test/mosquitto/org/ $SYS/broker/",
     TopicRule("clients/total", "in", 0, "test/mosquitto/org/", "$SYS/broker/")),
    ("a/# out 1 # a comment", TopicRule("a/#", "out", 1, "", "")),
])
def test_parse(args, rule):
    assert parse_rule(args) == rule


@pytest.mark.parametrize("args, reason", [
    ("", "missing value"),
    ("a sideways", "direction must be in, out or both, got 'sideways'"),
    ("a in 3", "QoS must be 0, 1 or 2, got '3'"),
    ('"" in 0 local ""', 'an empty pattern ("") needs a local and a remote prefix'),
    ('"" in 0 "" remote', 'an empty pattern ("") needs a local and a remote prefix'),
    ("a in 0 l/+/ r/", "invalid local prefix 'l/+/'"),
    ("a/#/b in", "invalid local topic 'a/#/b'"),
    ("a in 0 l r x", "too many values"),
])
def test_refused(args, reason):
    with pytest.raises(ValueError) as e:
        parse_rule(args)
    assert str(e.value).startswith(reason)


# Mosquitto's table (man mosquitto.conf, topic): pattern, local and remote prefix, and
# the full topics each side sees.
TABLE = [
    ("pattern", "L/", "R/", "L/pattern", "R/pattern"),
    ("pattern", "L/", "", "L/pattern", "pattern"),
    ("pattern", "", "R/", "pattern", "R/pattern"),
    ("pattern", "", "", "pattern", "pattern"),
    ("", "local", "remote", "local", "remote"),
]


@pytest.mark.parametrize("pattern, local, remote, local_topic, remote_topic", TABLE)
def test_mosquittos_table(pattern, local, remote, local_topic, remote_topic):
    rule = make_rule(pattern, "both", 0, local, remote)
    assert (rule.local_topic, rule.remote_topic) == (local_topic, remote_topic)
    assert remap_out([rule], local_topic) == remote_topic
    assert remap_in([rule], remote_topic) == local_topic


def test_wildcard_remapping_keeps_the_rest_of_the_topic():
    rules = [make_rule("sensors/#", "out", 1, "", "site-a/"),
             make_rule("cmd/#", "in", 1, "site-a/", "cloud/site-a/")]
    assert remap_out(rules, "sensors/t/1") == "site-a/sensors/t/1"
    assert remap_in(rules, "cloud/site-a/cmd/open") == "site-a/cmd/open"
    # Each direction uses only its own rules; a topic no rule remaps is left alone.
    assert remap_in(rules, "site-a/sensors/t") == "site-a/sensors/t"
    assert remap_out(rules, "site-a/cmd/open") == "site-a/cmd/open"


def test_first_matching_rule_wins():
    rules = [make_rule("a/#", "both", 0, "", "x/"), make_rule("a/b", "both", 0, "", "y/")]
    assert remap_out(rules, "a/b") == "x/a/b"
