"""Which topics cross a bridge, and how their names change on the way (sans-IO).

Mosquitto's ``topic PATTERN [in|out|both] [QOS] [LOCAL_PREFIX] [REMOTE_PREFIX]``:
the local side subscribes to LOCAL_PREFIX + PATTERN, the remote side to
REMOTE_PREFIX + PATTERN; a message crossing loses one prefix and gains the other
(``bridge__remap_topic_in``, ``send__publish``). ``""`` stands for an empty pattern
or prefix; an empty pattern maps one local topic to one remote topic, so it needs
both prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.hub.topics import TopicError, topic_matches, validate_topic_filter, validate_topic_name

IN, OUT, BOTH = "in", "out", "both"
DIRECTIONS = (IN, OUT, BOTH)
EMPTY = '""'


@dataclass(frozen=True, slots=True)
class TopicRule:
    """One ``topic`` line: the filters it subscribes on each side and its prefixes."""

    pattern: str
    direction: str
    qos: int
    local_prefix: str
    remote_prefix: str

    @property
    def local_topic(self) -> str:
        return self.local_prefix + self.pattern

    @property
    def remote_topic(self) -> str:
        return self.remote_prefix + self.pattern

    @property
    def inbound(self) -> bool:
        return self.direction != OUT

    @property
    def outbound(self) -> bool:
        return self.direction != IN


def parse_rule(args: str) -> TopicRule:
    """The words after ``topic``, checked as Mosquitto checks them; ValueError says why.

    A word starting with ``#`` after the direction ends the line (a comment), as in
    Mosquitto, except in the pattern itself, where ``#`` is the wildcard.
    """
    words = args.split()
    if not words:
        raise ValueError("missing value")
    pattern, rest = words[0], words[1:]
    for i, word in enumerate(rest):
        if word.startswith("#"):
            rest = rest[:i]
            break
    if len(rest) > 4:
        raise ValueError("too many values (expected PATTERN [in|out|both] [QOS] "
                         "[LOCAL_PREFIX] [REMOTE_PREFIX])")
    direction = rest[0].lower() if rest else OUT
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be in, out or both, got {rest[0]!r}")
    qos = 0
    if len(rest) > 1:
        if rest[1] not in ("0", "1", "2"):
            raise ValueError(f"QoS must be 0, 1 or 2, got {rest[1]!r}")
        qos = int(rest[1])
    local = rest[2] if len(rest) > 2 else EMPTY
    remote = rest[3] if len(rest) > 3 else EMPTY
    return make_rule(pattern, direction, qos, "" if local == EMPTY else local,
                     "" if remote == EMPTY else remote)


def make_rule(pattern: str, direction: str, qos: int, local_prefix: str = "",
              remote_prefix: str = "") -> TopicRule:
    """A rule after Mosquitto's ``bridge__add_topic`` checks."""
    if pattern == EMPTY:
        pattern = ""
    for side, prefix in (("local", local_prefix), ("remote", remote_prefix)):
        if prefix:
            try:
                validate_topic_name(prefix)
            except TopicError as e:
                raise ValueError(f"invalid {side} prefix {prefix!r}: {e}") from None
    if not pattern and not (local_prefix and remote_prefix):
        raise ValueError('an empty pattern ("") needs a local and a remote prefix')
    rule = TopicRule(pattern, direction, qos, local_prefix, remote_prefix)
    for side, full in (("local", rule.local_topic), ("remote", rule.remote_topic)):
        try:
            validate_topic_filter(full)
        except TopicError as e:
            raise ValueError(f"invalid {side} topic {full!r}: {e}") from None
    return rule


def remap_in(rules: list[TopicRule], topic: str) -> str:
    """A remote message's local topic: the first inbound rule with prefixes whose
    remote filter matches swaps the remote prefix for the local one."""
    for rule in rules:
        if rule.inbound and (rule.local_prefix or rule.remote_prefix) and topic_matches(
                rule.remote_topic, topic):
            if rule.remote_prefix and topic.startswith(rule.remote_prefix):
                topic = topic[len(rule.remote_prefix):]
            return rule.local_prefix + topic
    return topic


def remap_out(rules: list[TopicRule], topic: str) -> str:
    """A local message's remote topic, as ``remap_in`` the other way."""
    for rule in rules:
        if rule.outbound and (rule.local_prefix or rule.remote_prefix) and topic_matches(
                rule.local_topic, topic):
            if rule.local_prefix and topic.startswith(rule.local_prefix):
                topic = topic[len(rule.local_prefix):]
            return rule.remote_prefix + topic
    return topic
