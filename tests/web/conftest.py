"""Fixtures of the HTTP API tests; MQTT-SN's raw client and pseudo-terminal come from
its own suite."""

from __future__ import annotations

from tests.coap.conftest import aio  # noqa: F401
from tests.mqttsn.conftest import pty_pair, sn  # noqa: F401
