"""MQTT 5 topic aliases, both ways, for one connection.

Inbound, the client maps aliases up to the Topic Alias Maximum we announced. Outbound,
we give aliases to the topics a client receives, up to the maximum it announced; when
they are all taken, the least recently used is reassigned (sending the topic again
with the alias redefines it, which the protocol allows).
"""

from __future__ import annotations

from collections import OrderedDict


class InboundAliases:
    """Alias -> topic as the client defined them."""

    __slots__ = ("maximum", "_topics")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._topics: dict[int, str] = {}

    def valid(self, alias: int) -> bool:
        return 0 < alias <= self.maximum

    def define(self, alias: int, topic: str) -> None:
        self._topics[alias] = topic

    def topic(self, alias: int) -> str | None:
        return self._topics.get(alias)


class OutboundAliases:
    """Topic -> alias for what we send. ``lookup`` finds a known alias; ``assign``
    makes one (the topic goes along with it that first time)."""

    __slots__ = ("maximum", "_aliases", "_next")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._aliases: OrderedDict[str, int] = OrderedDict()
        self._next = 1

    def lookup(self, topic: str) -> int | None:
        alias = self._aliases.get(topic)
        if alias is not None:
            self._aliases.move_to_end(topic)
        return alias

    def assign(self, topic: str) -> int:
        aliases = self._aliases
        if self._next <= self.maximum:
            alias = self._next
            self._next += 1
        else:
            _, alias = aliases.popitem(last=False)
        aliases[topic] = alias
        return alias
