"""Ports for servers under test, picked at run time: each number handed out once per process.

A port is found by binding a probe socket to port 0 and closing it before the server
binds, so the kernel may offer the same number to the next probe; two listeners of one
config would then collide (the gateway refuses a ``duplicate listener``). The test
fixtures and the benchmarks (``bench/brokers.py``) both pick ports here.
"""

from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()


def unused_port(kind: int = socket.SOCK_STREAM, family: int = socket.AF_INET,
                host: str = "127.0.0.1") -> int:
    """A port free on ``host`` a moment ago whose number this process has not handed out."""
    while True:
        with socket.socket(family, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
