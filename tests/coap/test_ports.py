"""The CoAP listener under twistd and the mqttgateway command, and its UDP port: bound
at startup, never shared (aiocoap's own servers set SO_REUSEPORT, so two of them can
split one port's clients between them without a word)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

from aiocoap import Context
from aiocoap.numbers.codes import CONTENT, CREATED, GET, PUT
from aiocoap.resource import Site

from tests.coap.helpers import HOST, coap_lines
from tests.conftest import (REPO, config_text, free_port, free_udp_port, gateway_env, run_briefly,
                            twistd_command)


def test_twistd_runs_the_coap_listener(gateway, aio):
    port = free_udp_port()
    gateway(*coap_lines(port), twistd=True)
    uri = f"coap://{HOST}:{port}/ps/twistd/t"
    assert aio.request(PUT, uri + "?retain=true", b"up").code == CREATED
    response = aio.request(GET, uri)
    assert (response.code, response.payload) == (CONTENT, b"up")


def test_a_second_gateway_cannot_take_the_coap_port(gateway, tmp_path):
    port = free_udp_port()
    gateway(*coap_lines(port))
    conf = tmp_path / "second.conf"
    conf.write_text(config_text(free_port(), coap_lines(port)))
    done = run_briefly([sys.executable, "-m", "gateway.cli", "-c", str(conf)])
    assert done.returncode == 1
    assert f"{HOST}:{port}" in done.stderr
    assert "Address already in use" in done.stderr


def test_the_port_of_an_aiocoap_server_with_so_reuseport_is_refused(tmp_path):
    port = free_udp_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Context] = {}

    async def serve() -> None:
        os.environ.pop("AIOCOAP_REUSE_PORT", None)  # aiocoap's default: SO_REUSEPORT on
        holder["ctx"] = await Context.create_server_context(
            Site(), bind=(HOST, port), transports=["udp6"])
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    try:
        conf = tmp_path / "gw.conf"
        conf.write_text(config_text(free_port(), coap_lines(port)))
        done = run_briefly([sys.executable, "-m", "gateway.cli", "-c", str(conf)])
        assert done.returncode == 1
        assert "Address already in use" in done.stderr
    finally:
        asyncio.run_coroutine_threadsafe(holder["ctx"].shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_another_reactor_is_refused_with_a_clear_message(tmp_path):
    conf = tmp_path / "gw.conf"
    conf.write_text(config_text(free_port(), coap_lines(free_udp_port())))
    argv = twistd_command("-c", str(conf), twistd_options=["-r", "poll"])
    done = subprocess.run(argv, cwd=REPO, env=gateway_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "needs the asyncio reactor" in done.stdout + done.stderr
