"""Subscription trie: matching cost grows with topic depth, not with subscriptions.

Each node holds the subscribers of the filter that ends there, as a dict
``subscriber -> options``; options is the MQTT 5 subscription-options byte (QoS in
bits 0-1), so later protocol levels store their flags without a new structure.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterator


class _Node:
    __slots__ = ("children", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subs: dict[Any, int] = {}


_EMPTY: dict[Any, int] = {}


class SubscriptionTrie:
    """Filters to subscribers, matched against topic names."""

    def __init__(self) -> None:
        self._root = _Node()
        self.count = 0

    def add(self, topic_filter: str, subscriber: Hashable, options: int) -> bool:
        """Add or replace; returns True when the subscription is new."""
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        new = subscriber not in node.subs
        node.subs[subscriber] = options
        if new:
            self.count += 1
        return new

    def remove(self, topic_filter: str, subscriber: Hashable) -> bool:
        """Remove and prune empty branches; returns True when it existed."""
        path = [self._root]
        levels = topic_filter.split("/")
        node = self._root
        for level in levels:
            node = node.children.get(level)  # type: ignore[assignment]
            if node is None:
                return False
            path.append(node)
        if node.subs.pop(subscriber, None) is None:
            return False
        self.count -= 1
        for i in range(len(levels), 0, -1):
            n = path[i]
            if n.subs or n.children:
                break
            del path[i - 1].children[levels[i - 1]]
        return True

    def match(self, topic: str) -> dict[Any, int]:
        """Subscribers whose filters match ``topic``, each once, with its highest QoS.

        The returned dict may be a node's own: callers must not modify it.
        """
        levels = topic.split("/")
        n = len(levels)
        found: list[dict[Any, int]] = []
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
                hash_node = children.get("#")
                if hash_node is not None and hash_node.subs:
                    found.append(hash_node.subs)
                continue
            if not children:
                continue
            if i or not dollar:
                hash_node = children.get("#")
                if hash_node is not None and hash_node.subs:
                    found.append(hash_node.subs)
                plus = children.get("+")
                if plus is not None:
                    push((plus, i + 1))
            child = children.get(levels[i])
            if child is not None:
                push((child, i + 1))
        if not found:
            return _EMPTY
        if len(found) == 1:
            return found[0]
        merged: dict[Any, int] = {}
        for subs in found:
            for sub, opts in subs.items():
                old = merged.get(sub)
                if old is None or (opts & 3) > (old & 3):
                    merged[sub] = opts
        return merged

    def subscriptions(self) -> Iterator[tuple[str, Any, int]]:
        """Every (filter, subscriber, options), for persistence and diagnostics."""
        stack: list[tuple[_Node, str]] = [(c, k) for k, c in self._root.children.items()]
        while stack:
            node, path = stack.pop()
            for sub, opts in node.subs.items():
                yield path, sub, opts
            for k, c in node.children.items():
                stack.append((c, f"{path}/{k}"))
