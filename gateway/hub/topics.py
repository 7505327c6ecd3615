"""Topic name and topic filter rules (MQTT 3.1.1 §4.7), shared by every protocol.

Kept apart from the trie, as Mosquitto keeps ``util_topic.c`` apart from ``subs.c``:
channels validate what arrives from the wire, the trie trusts what it is given.
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535
#: Most '/' separators in a name or filter (so 201 levels), as Mosquitto's
#: ``TOPIC_HIERARCHY_LIMIT``: every level costs the subscription trie a node and
#: the matcher a step, so a client must not choose thousands of them.
MAX_TOPIC_SEPARATORS = 200


class TopicError(ValueError):
    """An invalid topic name or filter."""


def _check_text(topic: str) -> None:
    if not topic:
        raise TopicError("empty topic")
    if "\x00" in topic:
        raise TopicError("topic contains U+0000")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise TopicError("topic is not valid UTF-8") from e
    if size > MAX_TOPIC_BYTES:
        raise TopicError("topic longer than 65535 bytes")
    if topic.count("/") > MAX_TOPIC_SEPARATORS:
        raise TopicError(f"topic with more than {MAX_TOPIC_SEPARATORS + 1} levels")


def validate_topic_name(topic: str) -> None:
    """A name a message is published to: no wildcards."""
    _check_text(topic)
    if "+" in topic or "#" in topic:
        raise TopicError("wildcard in topic name")


def validate_topic_filter(topic_filter: str) -> None:
    """A subscription filter: ``+`` fills a whole level, ``#`` is a whole last level."""
    _check_text(topic_filter)
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if level == "#":
            if i != last:
                raise TopicError("'#' not the last level")
        elif level == "+":
            continue
        elif "+" in level or "#" in level:
            raise TopicError("wildcard inside a level")


def is_valid_topic_name(topic: str) -> bool:
    try:
        validate_topic_name(topic)
    except TopicError:
        return False
    return True


def is_valid_topic_filter(topic_filter: str) -> bool:
    try:
        validate_topic_filter(topic_filter)
    except TopicError:
        return False
    return True


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Reference matcher for one filter; the trie is the fast path for many."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    for i, f in enumerate(flevels):
        if f == "#":
            return True
        if i >= len(tlevels):
            return False
        if f != "+" and f != tlevels[i]:
            return False
    return len(flevels) == len(tlevels)


SHARE_PREFIX = "$share/"


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """``$share/GROUP/FILTER`` -> (GROUP, FILTER); any other filter -> (None, filter).

    Raises TopicError for a malformed shared filter (empty or wildcard share name, no
    filter after it), so every protocol reads shared subscriptions the same way.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    group, sep, rest = topic_filter[len(SHARE_PREFIX):].partition("/")
    if not sep or not group or not rest:
        raise TopicError("shared subscription needs $share/NAME/FILTER")
    if "+" in group or "#" in group:
        raise TopicError("wildcard in a share name")
    validate_topic_filter(rest)
    return group, rest
