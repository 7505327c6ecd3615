"""Retained messages: one per topic, looked up by filter when a client subscribes.

A topic-level tree (the mirror image of the subscription trie: names stored, filters
matched) keeps a wildcard lookup proportional to what it returns. A message whose
expiry has passed is dropped when a look-up meets it.
"""

from __future__ import annotations

from gateway.hub.api import Message


class _Node:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: Message | None = None


class RetainedStore:
    """Store, replace, clear (empty payload) and look up retained messages."""

    def __init__(self) -> None:
        self._root = _Node()
        self._by_topic: dict[str, Message] = {}

    def __len__(self) -> int:
        return len(self._by_topic)

    def get(self, topic: str, now: float | None = None) -> Message | None:
        message = self._by_topic.get(topic)
        if message is not None and now is not None and message.expired(now):
            self.clear(topic)
            return None
        return message

    def topics(self) -> list[str]:
        return list(self._by_topic)

    def store(self, message: Message) -> bool:
        """Store, or clear on an empty payload. Returns True if the topic was new."""
        if not message.payload:
            self.clear(message.topic)
            return False
        node = self._root
        for level in message.topic.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        new = node.message is None
        node.message = message
        self._by_topic[message.topic] = message
        return new

    def clear(self, topic: str) -> bool:
        if self._by_topic.pop(topic, None) is None:
            return False
        levels = topic.split("/")
        path = [self._root]
        node = self._root
        for level in levels:
            node = node.children[level]
            path.append(node)
        node.message = None
        for i in range(len(levels), 0, -1):
            n = path[i]
            if n.message is not None or n.children:
                break
            del path[i - 1].children[levels[i - 1]]
        return True

    def match(self, topic_filter: str, now: float | None = None) -> list[Message]:
        """Retained messages whose topic the filter matches ($ topics not by a leading
        wildcard); with ``now``, expired ones are dropped instead of returned."""
        if "+" not in topic_filter and "#" not in topic_filter:
            m = self.get(topic_filter, now)
            return [m] if m is not None else []
        found = self._match(topic_filter)
        if now is None:
            return found
        live = [m for m in found if m.expires_at is None or not m.expired(now)]
        if len(live) != len(found):
            for m in found:
                if m.expires_at is not None and m.expired(now):
                    self.clear(m.topic)
        return live

    def _match(self, topic_filter: str) -> list[Message]:
        levels = topic_filter.split("/")
        n = len(levels)
        out: list[Message] = []
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                if node.message is not None:
                    out.append(node.message)
                continue
            level = levels[i]
            if level == "#":
                if i and node.message is not None:
                    out.append(node.message)
                self._collect(node, out, skip_dollar=i == 0)
            elif level == "+":
                for name, child in node.children.items():
                    if i == 0 and name.startswith("$"):
                        continue
                    stack.append((child, i + 1))
            else:
                child = node.children.get(level)
                if child is not None:
                    stack.append((child, i + 1))
        return out

    @staticmethod
    def _collect(node: _Node, out: list[Message], skip_dollar: bool) -> None:
        stack = [
            c for k, c in node.children.items() if not (skip_dollar and k.startswith("$"))
        ]
        while stack:
            n = stack.pop()
            if n.message is not None:
                out.append(n.message)
            stack.extend(n.children.values())
