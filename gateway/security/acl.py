"""Mosquitto ACL files (``acl_file``) and the decisions made from them.

Syntax (``man mosquitto.conf``, ``aclfile.example``)::

    topic [read|write|readwrite|deny] FILTER     # before any `user`: anonymous clients
    user NAME                                    # rules below apply to NAME
    topic [read|write|readwrite|deny] FILTER
    pattern [read|write|readwrite|deny] FILTER   # every client; %c client id, %u username

Evaluation follows Mosquitto's ``mosquitto_acl_check_default``: the client's own list
(its user's, or the anonymous one) first, then the patterns; within each, ``deny``
rules are tried before the others; the first matching rule decides; nothing matching
is a denial. A topic starting with ``$`` is matched only by rules starting with ``$``,
so ``#`` never grants ``$SYS``. A client id or username containing ``+`` or ``#``
gets nothing from patterns (it could widen its own rule otherwise).

Subscriptions are checked more strictly than Mosquitto 2.0, which lets every SUBSCRIBE
through: a filter is refused when a ``deny`` rule covers every topic under it, or when
no readable rule could match any topic under it. An accepted wildcard subscription is
still filtered message by message (``READ``).

Checks are synchronous and cached: each client's rules (patterns substituted) are
compiled once, and each (access, topic) answer is memoised per client, so the check
per delivered message is usually two dict lookups. Reload replaces the whole object,
which drops every cache at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError, read_file
from gateway.hub.topics import TopicError, validate_topic_filter

DENY = 0
READ_BIT = 1
WRITE_BIT = 2
ACCESS = {"read": READ_BIT, "write": WRITE_BIT, "readwrite": READ_BIT | WRITE_BIT, "deny": DENY}
CACHE_TOPICS = 4096          # answers kept per client before its cache is cleared
CACHE_CLIENTS = 65536        # compiled clients kept before all are recompiled
CACHE_ENTRIES = 1_000_000    # answers kept in all, so many clients x many topics stay bounded


@dataclass(frozen=True, slots=True)
class Rule:
    access: int
    filter: str
    levels: tuple[str, ...]
    pattern: bool = False

    @classmethod
    def make(cls, access: int, topic_filter: str, pattern: bool = False) -> Rule:
        return cls(access, topic_filter, tuple(topic_filter.split("/")), pattern)


def _deny_first(rules: list[Rule]) -> list[Rule]:
    return [r for r in rules if r.access == DENY] + [r for r in rules if r.access != DENY]


def matches(levels: tuple[str, ...], topic_levels: list[str]) -> bool:
    """Does a filter (split) match a topic (split)? ``$`` handling is the caller's."""
    n = len(topic_levels)
    for i, f in enumerate(levels):
        if f == "#":
            return True
        if i >= n:
            return False
        if f != "+" and f != topic_levels[i]:
            return False
    return len(levels) == n


def intersects(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Is there a topic both filters match?"""
    if a[0].startswith("$") != b[0].startswith("$"):
        # A '$' topic is only matched by a filter whose first level is that literal.
        return False
    for x, y in zip(a, b):
        if x == "#" or y == "#":
            return True
        if x != y and x != "+" and y != "+":
            return False
    if len(a) == len(b):
        return True
    longer = a if len(a) > len(b) else b
    return longer[min(len(a), len(b))] == "#"


def covers(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """Does every topic matched by *inner* also match *outer*?"""
    for i, f in enumerate(inner):
        if i >= len(outer):
            return False
        o = outer[i]
        if o == "#":
            return True
        if o == "+":
            if f == "#":
                return False
            continue
        if o != f:
            return False
    if len(outer) == len(inner):
        return True
    return len(outer) == len(inner) + 1 and outer[-1] == "#"


def _parse_rule(words: str, pattern: bool) -> Rule:
    parts = words.split(None, 1)
    if not parts:
        raise ValueError("empty topic")
    if len(parts) == 1:
        access, topic_filter = READ_BIT | WRITE_BIT, parts[0]
    else:
        if parts[0] not in ACCESS:
            raise ValueError(f"invalid access type {parts[0]!r} (read, write, readwrite or deny)")
        access, topic_filter = ACCESS[parts[0]], parts[1].strip()
    try:
        validate_topic_filter(topic_filter)
    except TopicError as e:
        raise ValueError(f"invalid topic {topic_filter!r}: {e}") from None
    return Rule.make(access, topic_filter, pattern)


class _Client:
    """One client's compiled rules plus its memoised answers, one dict per access."""

    __slots__ = ("own", "patterns", "read", "write", "subscribe")

    def __init__(self, own: list[Rule], patterns: list[Rule]) -> None:
        self.own = own
        self.patterns = patterns
        self.read: dict[str, bool] = {}
        self.write: dict[str, bool] = {}
        self.subscribe: dict[str, bool] = {}


class AclFile:
    """The rules of one ACL file."""

    def __init__(
        self,
        anonymous: list[Rule] | None = None,
        users: dict[str, list[Rule]] | None = None,
        patterns: list[Rule] | None = None,
        path: str = "",
    ) -> None:
        self.anonymous = _deny_first(anonymous or [])
        self.users = {u: _deny_first(r) for u, r in (users or {}).items()}
        self.patterns = _deny_first(patterns or [])
        self.path = path
        self._clients: dict[tuple[str | None, str], _Client] = {}
        self._entries = 0

    # -- loading -----------------------------------------------------------------

    @classmethod
    def load(cls, path: str) -> AclFile:
        return cls.parse(read_file(path, "ACL file"), path)

    @classmethod
    def parse(cls, data: bytes | str, path: str = "<string>") -> AclFile:
        """Parse; ConfigError(``path:line: reason``) on the first bad line."""
        if isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line = data[: e.start].count(b"\n") + 1
                raise ConfigError("not valid UTF-8", path, line) from None
        else:
            text = data
        anonymous: list[Rule] = []
        users: dict[str, list[Rule]] = {}
        patterns: list[Rule] = []
        current: list[Rule] = anonymous
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword, _, rest = line.partition(" ")
            rest = rest.strip()
            try:
                if keyword == "topic":
                    current.append(_parse_rule(rest, False))
                elif keyword == "pattern":
                    patterns.append(_parse_rule(rest, True))
                elif keyword == "user":
                    if not rest:
                        raise ValueError("missing username")
                    current = users.setdefault(rest, [])
                else:
                    raise ValueError(f"invalid line (expected topic, pattern or user): {line!r}")
            except ValueError as e:
                raise ConfigError(str(e), path, number) from None
        return cls(anonymous, users, patterns, path)

    # -- decisions -----------------------------------------------------------------

    def _client(self, username: str | None, client_id: str) -> _Client:
        if len(self._clients) >= CACHE_CLIENTS or self._entries >= CACHE_ENTRIES:
            self._clients.clear()
            self._entries = 0
        own = self.anonymous if username is None else self.users.get(username, [])
        patterns: list[Rule] = []
        dangerous = any(c in "+#" for c in client_id) or (
            username is not None and any(c in "+#" for c in username)
        )
        if not dangerous:
            for rule in self.patterns:
                if "%u" in rule.filter and username is None:
                    continue
                text = rule.filter.replace("%c", client_id)
                if username is not None:
                    text = text.replace("%u", username)
                patterns.append(Rule.make(rule.access, text, True))
        compiled = self._clients[(username, client_id)] = _Client(own, patterns)
        return compiled

    def check(self, client: Any, access: str, topic: str) -> bool:
        """``access`` is "read", "write" or "subscribe" (then *topic* is a filter)."""
        compiled = self._clients.get((client.username, client.client_id))
        if compiled is None:
            compiled = self._client(client.username, client.client_id)
        answers = compiled.read if access == "read" else compiled.write if access == "write" else compiled.subscribe
        answer = answers.get(topic)
        if answer is None:
            if access == "subscribe":
                answer = self._may_subscribe(compiled, topic)
            else:
                answer = self._check_topic(compiled, READ_BIT if access == "read" else WRITE_BIT, topic)
            if len(answers) >= CACHE_TOPICS:
                self._entries -= len(answers)
                answers.clear()
            elif self._entries >= CACHE_ENTRIES:
                self._clients.clear()
                self._entries = 0
            answers[topic] = answer
            self._entries += 1
        return answer

    @staticmethod
    def _check_topic(compiled: _Client, bit: int, topic: str) -> bool:
        levels = topic.split("/")
        dollar = topic.startswith("$")
        for rules in (compiled.own, compiled.patterns):
            for rule in rules:
                if dollar and not rule.filter.startswith("$"):
                    continue
                if matches(rule.levels, levels):
                    if rule.access == DENY:
                        return False
                    if rule.access & bit:
                        return True
        return False

    @staticmethod
    def _may_subscribe(compiled: _Client, topic_filter: str) -> bool:
        if topic_filter.startswith("$share/"):
            parts = topic_filter.split("/", 2)
            if len(parts) < 3:
                return False
            topic_filter = parts[2]
        levels = tuple(topic_filter.split("/"))
        dollar = topic_filter.startswith("$")
        for rules in (compiled.own, compiled.patterns):
            for rule in rules:
                if dollar and not rule.filter.startswith("$"):
                    continue
                if rule.access == DENY:
                    if covers(rule.levels, levels):
                        return False
                elif rule.access & READ_BIT and intersects(rule.levels, levels):
                    return True
        return False

    def users_with_rules(self) -> set[str]:
        return set(self.users)
