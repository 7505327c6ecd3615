"""Client factories for the end-to-end tests; each closes what it made at teardown."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from tests.e2e.clients import MosquittoSub, PahoClient, RawClient


@pytest.fixture
def paho() -> Iterator[Callable[..., PahoClient]]:
    """``paho(port, client_id, **PahoClient options)``: a client, not yet connected."""
    made: list[PahoClient] = []

    def make(port: int, client_id: str, **kwargs: Any) -> PahoClient:
        client = PahoClient(port, client_id, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def raw() -> Iterator[Callable[[int], RawClient]]:
    """``raw(port)``: an open TCP connection for hand-made bytes."""
    made: list[RawClient] = []

    def make(port: int) -> RawClient:
        client = RawClient(port)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def mosquitto_sub() -> Iterator[Callable[..., MosquittoSub]]:
    """``mosquitto_sub(port, filter, qos=0, protocol=4)``, already subscribed."""
    made: list[MosquittoSub] = []

    def make(port: int, topic_filter: str, qos: int = 0, protocol: int = 4) -> MosquittoSub:
        sub = MosquittoSub(port, topic_filter, qos, protocol)
        made.append(sub)
        sub.wait_subscribed()
        return sub

    yield make
    for sub in made:
        sub.stop()
