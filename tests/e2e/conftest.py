"""Client factories for the end-to-end tests (each closes what it made at teardown),
and ``stores``: gateways restarted on one persistence store.

``paho`` comes from ``tests/conftest.py``.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import Gateway, closing
from tests.e2e.clients import MosquittoSub, RawClient


@pytest.fixture
def raw() -> Iterator[Callable[[int], RawClient]]:
    """``raw(port)``: an open TCP connection for hand-made bytes."""
    yield from closing(RawClient)


@pytest.fixture
def mosquitto_sub() -> Iterator[Callable[..., MosquittoSub]]:
    """``mosquitto_sub(port, filter, qos=0, protocol=4)``, already subscribed."""
    yield from closing(MosquittoSub, MosquittoSub.stop, MosquittoSub.wait_subscribed)


class Stores:
    """Gateways that share one store folder, started and stopped in turn."""

    def __init__(self, gateway, folder: Path, extra: tuple[str, ...] = ()) -> None:
        self.start_gateway = gateway
        self.folder = folder
        folder.mkdir(exist_ok=True)
        self.lines = ("persistence true", f"persistence_location {folder}/", *extra)
        self.gw: Gateway | None = None

    def start(self, wait: bool = True) -> Gateway:
        self.gw = self.start_gateway(*self.lines, wait=wait)
        return self.gw

    def restart(self, sig: int = signal.SIGTERM) -> Gateway:
        assert self.gw is not None
        status = self.gw.stop(sig)
        assert status == (0 if sig == signal.SIGTERM else -sig), self.gw.describe()
        return self.start()

    @property
    def port(self) -> int:
        assert self.gw is not None
        return self.gw.port

    @property
    def path(self) -> Path:
        return self.folder / "mqttgateway.db"


@pytest.fixture
def stores(gateway, tmp_path):
    """Gateways with ``persistence true`` on one store folder (``Stores``)."""
    return Stores(gateway, tmp_path / "store")
