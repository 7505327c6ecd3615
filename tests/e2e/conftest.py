"""Client factories for the end-to-end tests; each closes what it made at teardown.

``paho`` comes from ``tests/conftest.py``.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from tests.conftest import closing
from tests.e2e.clients import MosquittoSub, RawClient


@pytest.fixture
def raw() -> Iterator[Callable[[int], RawClient]]:
    """``raw(port)``: an open TCP connection for hand-made bytes."""
    yield from closing(RawClient)


@pytest.fixture
def mosquitto_sub() -> Iterator[Callable[..., MosquittoSub]]:
    """``mosquitto_sub(port, filter, qos=0, protocol=4)``, already subscribed."""
    yield from closing(MosquittoSub, MosquittoSub.stop, MosquittoSub.wait_subscribed)
