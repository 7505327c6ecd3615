"""Fixtures of the bridge tests: real Mosquitto brokers, stopped at teardown; the
MQTT-SN tests' pseudo-terminal for a radio."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.bridge.broker import Mosquitto
from tests.mqttsn.conftest import pty_pair  # noqa: F401  (a fixture shared with tests/mqttsn)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``mosquitto(listeners=None, settings="")``: a started Mosquitto (see ``Mosquitto``)."""
    made: list[Mosquitto] = []

    def start(listeners: list[str] | None = None, settings: str = "") -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto-{len(made)}", listeners, settings)
        made.append(broker)
        return broker.start()

    yield start
    for broker in made:
        broker.stop()
