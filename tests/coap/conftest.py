"""Fixtures for the CoAP tests: a shared gateway with a CoAP listener, and clients.

The gateway itself comes from ``tests/conftest.py`` (a real subprocess); a module
here sets ``shared_gateway_config`` and reads the CoAP port from ``coap_port``.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from tests.coap.helpers import AioCoAP, MQTTClient, coap_lines
from tests.conftest import closing, free_udp_port


@pytest.fixture(scope="module")
def coap_port() -> int:
    return free_udp_port()


@pytest.fixture(scope="module")
def coap_config() -> list[str]:
    """Extra config lines for the module's shared gateway (after the CoAP listener)."""
    return []


@pytest.fixture(scope="module")
def shared_gateway_config(coap_port: int, coap_config: list[str]) -> list[str]:
    return coap_lines(coap_port, *coap_config)


@pytest.fixture(scope="module")
def aio() -> Iterator[AioCoAP]:
    client = AioCoAP()
    yield client
    client.close()


@pytest.fixture
def mqtt_client() -> Iterator[Callable[..., MQTTClient]]:
    """``mqtt_client(port, **options)``: a connected paho client, closed at teardown."""
    yield from closing(MQTTClient)
