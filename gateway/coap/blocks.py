"""Blockwise transfer state (RFC 7959) with bounds on entries, bytes and age.

aiocoap's ``Block1Spool`` and ``Block2Cache`` keep every partial upload and every
split response for MAX_TRANSMIT_WAIT (93 s) with no limit on how many: a client
that starts uploads, or GETs a large retained value from many ports, could make the
gateway hold gigabytes. Here both live in a ``BoundedCache``: oldest first out when
a count or byte limit is reached, and nothing older than its lifetime is served.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generic, TypeVar

from aiocoap import Message, error
from aiocoap.blockwise import ContinueException, _extract_block_key

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A dict in insertion order whose oldest entries go first."""

    def __init__(self, max_entries: int, max_bytes: int, lifetime: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.lifetime = lifetime
        self._clock = clock
        self._items: dict[K, tuple[V, int, float]] = {}
        self.size = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: K, value: V, size: int) -> None:
        self.pop(key, None)
        self._items[key] = (value, size, self._clock() + self.lifetime)
        self.size += size
        self._evict()

    def get(self, key: K) -> V:
        value, _, expires = self._items[key]
        if expires <= self._clock():
            self.pop(key)
            raise KeyError(key)
        return value

    def pop(self, key: K, *default: Any) -> Any:
        try:
            value, size, _ = self._items.pop(key)
        except KeyError:
            if default:
                return default[0]
            raise
        self.size -= size
        return value

    def _evict(self) -> None:
        items = self._items
        now = self._clock()
        while items:
            oldest = next(iter(items))
            _, size, expires = items[oldest]
            if len(items) <= self.max_entries and self.size <= self.max_bytes and expires > now:
                return
            del items[oldest]
            self.size -= size


class Block1Assembler:
    """Request bodies arriving in Block1 blocks, assembled in order."""

    def __init__(self, cache: BoundedCache[Any, Message]) -> None:
        self.cache = cache

    def feed(self, request: Message) -> Message:
        """The whole request after its last block; ``ContinueException`` (2.31) before."""
        block1 = request.opt.block1
        key = _extract_block_key(request)
        if block1.block_number == 0:
            whole = request
        else:
            try:
                whole = self.cache.pop(key)
            except KeyError:
                raise error.RequestEntityIncomplete() from None
            try:
                whole._append_request_block(request)
            except ValueError:
                raise error.RequestEntityIncomplete() from None
        if block1.more:
            self.cache.put(key, whole, len(whole.payload))
            raise ContinueException(block1)
        return whole
