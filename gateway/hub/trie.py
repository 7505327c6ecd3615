"""Subscription trie: matching cost grows with topic depth, not with subscriptions.

Each node holds the subscribers of the filter that ends there, as a dict
``subscriber -> Subscription``, and the shared-subscription groups of that filter
(``$share/GROUP/FILTER``), each an ordered set of members of which one gets each
message. Dicts are made on first use: a level that only leads somewhere costs one
small slotted object.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterator

from gateway.hub.api import Subscription


class ShareGroup:
    """The members of one shared subscription (one share name and one filter)."""

    __slots__ = ("name", "topic_filter", "members", "_turn")

    def __init__(self, name: str, topic_filter: str) -> None:
        self.name = name
        self.topic_filter = topic_filter
        self.members: dict[Any, Subscription] = {}
        self._turn = 0

    def rotation(self) -> list[tuple[Any, Subscription]]:
        """Members starting with the one whose turn it is; advances the turn."""
        items = list(self.members.items())
        n = len(items)
        if n <= 1:
            return items
        start = self._turn % n
        self._turn = start + 1
        return items[start:] + items[:start]

    @property
    def full_filter(self) -> str:
        return f"$share/{self.name}/{self.topic_filter}"


class _Node:
    __slots__ = ("children", "subs", "shared")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None
        self.subs: dict[Any, Subscription] | None = None
        self.shared: dict[str, ShareGroup] | None = None

    def empty(self) -> bool:
        return not self.children and not self.subs and not self.shared


_EMPTY: dict[Any, Subscription] = {}
MATCH_KEPT = 4096           # topics whose matches are kept at once
MATCH_KEPT_TOPIC = 256      # characters: longer topics are matched every time
_NO_GROUPS: tuple[ShareGroup, ...] = ()


class Merged(Subscription):
    """Several of one subscriber's subscriptions matching one topic, as one delivery:
    the highest QoS, every subscription identifier, no-local only if all say so."""

    __slots__ = ()

    def __init__(self, first: Subscription) -> None:
        super().__init__(first.qos, first.no_local, first.retain_as_published,
                         first.retain_handling, first.identifier)

    def add(self, other: Subscription) -> None:
        if other.qos > self.qos:
            self.qos = other.qos
        self.no_local = self.no_local and other.no_local
        self.retain_as_published = self.retain_as_published or other.retain_as_published
        if other.ids:
            self.ids = self.ids + other.ids


class SubscriptionTrie:
    """Filters to subscribers, matched against topic names.

    Publishers mostly repeat their topics, so what a topic matched is kept until the
    next change to the trie (any subscribe or unsubscribe forgets all of it): a repeated
    topic costs one dict lookup instead of a walk. Long topics are not kept, and the
    table is emptied when full, so its memory stays bounded whatever the topics."""

    def __init__(self) -> None:
        self._root = _Node()
        self.count = 0
        # topic -> (subscribers, their (subscriber, subscription) items, share groups)
        self._matched: dict[str, tuple[dict[Any, Subscription], tuple[tuple[Any, Subscription], ...],
                                       tuple[ShareGroup, ...] | list[ShareGroup]]] = {}

    def _walk_create(self, topic_filter: str) -> _Node:
        node = self._root
        for level in topic_filter.split("/"):
            children = node.children
            if children is None:
                children = node.children = {}
            child = children.get(level)
            if child is None:
                child = children[level] = _Node()
            node = child
        return node

    def add(self, topic_filter: str, subscriber: Hashable, sub: Subscription,
            group: str | None = None) -> bool:
        """Add or replace; returns True when the subscription is new."""
        self._matched.clear()
        node = self._walk_create(topic_filter)
        if group is None:
            subs = node.subs
            if subs is None:
                subs = node.subs = {}
        else:
            shared = node.shared
            if shared is None:
                shared = node.shared = {}
            share = shared.get(group)
            if share is None:
                share = shared[group] = ShareGroup(group, topic_filter)
            subs = share.members
        new = subscriber not in subs
        subs[subscriber] = sub
        if new:
            self.count += 1
        return new

    def remove(self, topic_filter: str, subscriber: Hashable, group: str | None = None) -> bool:
        """Remove and prune empty branches; returns True when it existed."""
        self._matched.clear()
        levels = topic_filter.split("/")
        path = [self._root]
        node = self._root
        for level in levels:
            children = node.children
            node = children.get(level) if children else None  # type: ignore[assignment]
            if node is None:
                return False
            path.append(node)
        if group is None:
            if not node.subs or node.subs.pop(subscriber, None) is None:
                return False
        else:
            share = node.shared.get(group) if node.shared else None
            if share is None or share.members.pop(subscriber, None) is None:
                return False
            if not share.members:
                del node.shared[group]  # type: ignore[union-attr]
        self.count -= 1
        for i in range(len(levels), 0, -1):
            if not path[i].empty():
                break
            del path[i - 1].children[levels[i - 1]]  # type: ignore[union-attr]
        return True

    def group(self, topic_filter: str, name: str) -> ShareGroup | None:
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.get(level) if node.children else None  # type: ignore[assignment]
            if node is None:
                return None
        return node.shared.get(name) if node.shared else None

    def match(self, topic: str) -> tuple[dict[Any, Subscription], tuple[ShareGroup, ...] | list[ShareGroup]]:
        """Subscribers whose filters match ``topic``, each once, and the share groups.

        A subscriber matched by several filters gets one ``Merged`` subscription. The
        returned dict and list may be kept or a node's own: callers must not modify them.
        """
        found = self._matched.get(topic)
        if found is None:
            found = self._remember(topic)
        return found[0], found[2]

    def deliveries(self, topic: str) -> tuple[tuple[tuple[Any, Subscription], ...],
                                              tuple[ShareGroup, ...] | list[ShareGroup]]:
        """``match`` as (subscriber, subscription) pairs: a snapshot, which a delivery
        that edits the trie (a session detached on the way) does not change."""
        found = self._matched.get(topic)
        if found is None:
            found = self._remember(topic)
        return found[1], found[2]

    def _remember(self, topic: str) -> tuple[dict[Any, Subscription], tuple[tuple[Any, Subscription], ...],
                                             tuple[ShareGroup, ...] | list[ShareGroup]]:
        subs, groups = self._match(topic)
        found = (subs, tuple(subs.items()), groups)
        if len(topic) <= MATCH_KEPT_TOPIC:
            matched = self._matched
            if len(matched) >= MATCH_KEPT:
                matched.clear()
            matched[topic] = found
        return found

    def _match(self, topic: str) -> tuple[dict[Any, Subscription], tuple[ShareGroup, ...] | list[ShareGroup]]:
        levels = topic.split("/")
        n = len(levels)
        found: list[dict[Any, Subscription]] = []
        groups: list[ShareGroup] | None = None
        dollar = topic[:1] == "$"
        stack = [(self._root, 0)]
        pop = stack.pop
        push = stack.append
        while stack:
            node, i = pop()
            children = node.children
            if i == n:
                if node.subs:
                    found.append(node.subs)
                if node.shared:
                    groups = (groups or []) + list(node.shared.values())
                if children:
                    hash_node = children.get("#")
                    if hash_node is not None:
                        if hash_node.subs:
                            found.append(hash_node.subs)
                        if hash_node.shared:
                            groups = (groups or []) + list(hash_node.shared.values())
                continue
            if not children:
                continue
            if i or not dollar:
                hash_node = children.get("#")
                if hash_node is not None:
                    if hash_node.subs:
                        found.append(hash_node.subs)
                    if hash_node.shared:
                        groups = (groups or []) + list(hash_node.shared.values())
                plus = children.get("+")
                if plus is not None:
                    push((plus, i + 1))
            child = children.get(levels[i])
            if child is not None:
                push((child, i + 1))
        shares = groups if groups is not None else _NO_GROUPS
        if not found:
            return _EMPTY, shares
        if len(found) == 1:
            return found[0], shares
        merged: dict[Any, Subscription] = {}
        for subs in found:
            for subscriber, sub in subs.items():
                old = merged.get(subscriber)
                if old is None:
                    merged[subscriber] = sub
                else:
                    if type(old) is not Merged:
                        old = merged[subscriber] = Merged(old)
                    old.add(sub)  # type: ignore[attr-defined]
        return merged, shares

    def subscriptions(self) -> Iterator[tuple[str, Any, Subscription]]:
        """Every (filter, subscriber, subscription), ``$share/`` filters included."""
        root = self._root.children or {}
        stack: list[tuple[_Node, str]] = [(c, k) for k, c in root.items()]
        while stack:
            node, path = stack.pop()
            for subscriber, sub in (node.subs or {}).items():
                yield path, subscriber, sub
            for share in (node.shared or {}).values():
                for subscriber, sub in share.members.items():
                    yield share.full_filter, subscriber, sub
            for k, c in (node.children or {}).items():
                stack.append((c, f"{path}/{k}"))
