"""Every client a test started is gone when it ends, passed or failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.helpers import Client


@pytest.fixture(autouse=True)
def no_stray_clients() -> Iterator[None]:
    yield
    Client.kill_all()
