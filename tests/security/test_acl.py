"""ACL files: Mosquitto's syntax and decisions, plus the stricter SUBSCRIBE check."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.security.acl import AclFile, covers, intersects
from gateway.hub.api import ClientInfo

ACL = """\
# anonymous clients
topic read public/#
topic read $SYS/broker/uptime

user alice
topic readwrite home/alice/#
topic read home/+/status
topic deny home/alice/secret
topic write $SYS/forbidden

user bob
topic home/bob/#
topic read $SYS/#
topic deny #

pattern read devices/%c/config
pattern write devices/%c/state
pattern readwrite users/%u/#
pattern deny users/%u/locked
"""


@pytest.fixture
def acl():
    return AclFile.parse(ACL, "acl")


def who(client_id="c1", username=None):
    return ClientInfo(client_id, username=username)


# (client, access, topic, allowed)
CASES = [
    (who(), "read", "public/news", True),
    (who(), "write", "public/news", False),              # read-only rule
    (who(), "read", "home/alice/x", False),              # no rule
    (who(), "read", "$SYS/broker/uptime", True),
    (who(), "read", "$SYS/broker/version", False),
    (who(username="alice"), "read", "home/alice/temp", True),
    (who(username="alice"), "write", "home/alice/temp", True),
    (who(username="alice"), "read", "home/alice/secret", False),     # deny wins, whatever its place
    (who(username="alice"), "read", "home/bob/status", True),
    (who(username="alice"), "write", "home/bob/status", False),
    (who(username="alice"), "read", "public/news", False),           # anonymous rules are not hers
    (who(username="bob"), "read", "home/bob/x", False),              # deny # is tried first
    (who(username="bob"), "read", "$SYS/broker/load", True),         # '#' never covers '$SYS'
    (who("dev7"), "read", "devices/dev7/config", True),              # %c
    (who("dev7"), "read", "devices/dev8/config", False),
    (who("dev7"), "write", "devices/dev7/state", True),
    (who("dev7"), "read", "devices/dev7/state", False),
    (who(username="carol"), "write", "users/carol/inbox", True),     # %u, user without section
    (who(username="carol"), "read", "users/carol/locked", False),
    (who(username="carol"), "read", "users/dave/inbox", False),
    (who(), "read", "users//inbox", False),                          # %u needs a username
    (who("a+b"), "read", "devices/a+b/config", False),               # wildcard in client id
    (who("x", username="#"), "read", "users/#/inbox", False),        # wildcard in username
]


@pytest.mark.parametrize("client, access, topic, allowed", CASES)
def test_decisions(acl, client, access, topic, allowed):
    assert acl.check(client, access, topic) is allowed
    assert acl.check(client, access, topic) is allowed               # cached answer agrees


SUBSCRIBE = [
    (who(), "public/#", True),
    (who(), "#", True),                     # public/# under it: filtered per message
    (who(), "home/#", False),               # nothing readable under it
    (who(), "$SYS/#", True),
    (who(), "$SYS/broker/load", False),
    (who(username="alice"), "home/alice/secret", False),     # a deny covers it
    (who(username="alice"), "home/alice/#", True),
    (who(username="alice"), "home/+/status", True),
    (who(username="alice"), "$SYS/#", False),                # only a write rule there
    (who(username="bob"), "home/bob/#", False),              # deny # covers everything
    (who(username="bob"), "$SYS/broker/#", True),
    (who("dev7"), "devices/dev7/#", True),
    (who("dev7"), "devices/+/config", True),
    (who("dev7"), "devices/dev8/#", False),
    (who(username="carol"), "users/carol/locked", False),
    (who(username="carol"), "users/carol/+", True),
    (who(username="carol"), "$share/g/users/carol/x", True),
    (who(username="carol"), "$share/g/users/dave/x", False),
]


@pytest.mark.parametrize("client, topic_filter, allowed", SUBSCRIBE)
def test_subscribe_decisions(acl, client, topic_filter, allowed):
    assert acl.check(client, "subscribe", topic_filter) is allowed


@pytest.mark.parametrize("a, b, result", [
    ("a/#", "a", True), ("a/+", "a/b", True), ("a/b", "a/c", False), ("+/b", "a/+", True),
    ("#", "$SYS/x", False), ("$SYS/#", "$SYS/+/x", True), ("a/b/c", "a/#", True),
    ("a/+/c", "a/b", False),
])
def test_intersects(a, b, result):
    assert intersects(tuple(a.split("/")), tuple(b.split("/"))) is result
    assert intersects(tuple(b.split("/")), tuple(a.split("/"))) is result


@pytest.mark.parametrize("outer, inner, result", [
    ("a/#", "a", True), ("a/#", "a/b/+", True), ("a/+", "a/b", True), ("a/+", "a/#", False),
    ("a/b", "a/+", False), ("#", "#", True), ("+/+", "a/b", True), ("a", "a/b", False),
])
def test_covers(outer, inner, result):
    assert covers(tuple(outer.split("/")), tuple(inner.split("/"))) is result


def test_no_rules_for_the_client_denies_everything():
    acl = AclFile.parse("user alice\ntopic a\n")
    assert not acl.check(who(), "read", "a")
    assert not acl.check(who(username="bob"), "read", "a")
    assert not acl.check(who(), "subscribe", "#")


@pytest.mark.parametrize("text, line, reason", [
    ("topic read a\ntopic reed b\n", 2, "invalid access type 'reed'"),
    ("user\n", 1, "missing username"),
    ("topic\n", 1, "empty topic"),
    ("\n\ntopic read a/#/b\n", 3, "invalid topic 'a/#/b'"),
    ("# c\nfoo bar\n", 2, "invalid line"),
])
def test_errors_carry_file_and_line(tmp_path, text, line, reason):
    path = tmp_path / "acl"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        AclFile.load(str(path))
    assert str(e.value).startswith(f"{path}:{line}: {reason}")


def test_topic_with_spaces_and_indented_comments():
    acl = AclFile.parse("  # note\ntopic read a b/c\n")
    assert acl.check(who(), "read", "a b/c")


def test_rule_without_access_word_is_readwrite():
    acl = AclFile.parse("topic a/b\n")
    assert acl.check(who(), "read", "a/b") and acl.check(who(), "write", "a/b")
