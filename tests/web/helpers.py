"""HTTP helpers for the HTTP API tests: requests with urllib, scrapes parsed by
prometheus_client's own parser."""

from __future__ import annotations

import base64
import json
import http.client
import ssl
import time
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"
TIMEOUT = 15.0


class Response:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def get(port: int, path: str, auth: tuple[str, str] | None = None, method: str = "GET",
        context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
        source: str = "") -> Response:
    """One request (from ``source``, another 127.x address, to keep apart from the
    login throttle's count of 127.0.0.1); HTTP errors are answers too (``status``)."""
    bind = (source, 0) if source else None
    if context is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            HOST, port, timeout=TIMEOUT, context=context, source_address=bind)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT, source_address=bind)
    all_headers = dict(headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        all_headers["Authorization"] = f"Basic {token}"
    try:
        conn.request(method, path, headers=all_headers)
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, auth: tuple[str, str] | None = None, source: str = "") -> Samples:
    """``/metrics`` as (sample name, sorted labels) -> value."""
    response = get(port, "/metrics", auth, source=source)
    assert response.status == 200, (response.status, response.body)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a series not seen yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something true; only a guard against hangs."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {result!r})")
        time.sleep(0.05)
