"""The status page in headless Chromium (Debian's ``chromium``), as an operator sees it:
clients of the three protocols listed in the rendered page, logged in with Basic.

Set ``STATUS_SCREENSHOT=/path/to/file.png`` to keep the screenshot of the run.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import threading
from pathlib import Path

from aiocoap.numbers.codes import PUT

from gateway.security.passwords import make_hash
from tests.conftest import free_port, free_udp_port
from tests.mqttsn import wire as w
from tests.web.helpers import get, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(profile: Path, *args: str, budget: int = 8000) -> subprocess.CompletedProcess[str]:
    """One headless run; the virtual time budget lets the page poll before it is read.
    Each run needs its own ``profile``: a second one on the same directory waits."""
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", f"--virtual-time-budget={budget}", "--window-size=1280,1100",
            *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


class Rows(html.parser.HTMLParser):
    """(protocol, first cell text) of every ``<tr data-protocol>`` in the clients table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str]] = []
        self._protocol: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-protocol" in found:
            self._protocol = found["data-protocol"]
        elif tag == "td" and self._protocol is not None and self._text is None:
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._text is not None and self._protocol is not None:
            self.rows.append((self._protocol, "".join(self._text).strip()))
            self._protocol = None
        if tag == "td":
            self._text = None


def test_clients_of_all_three_protocols_are_listed(gateway, paho, sn, aio, tmp_path) -> None:
    (tmp_path / "passwd").write_text(f"operator:{make_hash(b'plant-42')}\n")
    http, sn_port, coap_port = free_port(), free_udp_port(), free_udp_port()
    gw = gateway(f"password_file {tmp_path / 'passwd'}", "allow_anonymous true",
                 f"listener {sn_port} 127.0.0.1", "protocol mqttsn",
                 f"listener {coap_port} 127.0.0.1", "protocol coap",
                 f"listener {http}", "protocol http_api")
    mqtt = paho(gw.port, "line-3-plc")
    mqtt.connect()
    mqtt.subscribe("plant/#", 1)
    sensor = sn(sn_port)
    assert sensor.ask(w.connect("boiler-sensor", 60)) == w.connack()
    assert sensor.ask(w.subscribe(1, "plant/valve/#")) == w.suback(0, 1)
    observation = aio.observe(f"coap://127.0.0.1:{coap_port}/ps/plant/valve?clientid=valve-7")
    auth = ("operator", "plant-42")
    wait_until(lambda: get(http, "/api/status", auth).json()["clients"]["connected"] == 3, "3 clients")
    for i in range(5):
        mqtt.publish("plant/boiler/temp", f"{80 + i}".encode(), 1)

    url = f"http://operator:plant-42@127.0.0.1:{http}/"
    dom = chromium(tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr
    parser = Rows()
    parser.feed(dom.stdout)
    assert sorted(parser.rows) == [("coap", "valve-7"), ("mqtt", "line-3-plc"),
                                   ("mqttsn", "boiler-sensor")], dom.stdout
    assert 'data-loaded="true"' in dom.stdout

    # traffic of all three while the screenshot's page polls, so its chart has lines
    stop = threading.Event()

    def traffic() -> None:
        n = 0
        while not stop.wait(0.02):
            n += 1
            mqtt.client.publish("plant/boiler/temp", str(n).encode())
            sensor.send(w.publish("pv", str(n).encode(), 0, id_type=w.SHORT))
            if n % 5 == 0:
                aio.request(PUT, f"coap://127.0.0.1:{coap_port}/ps/plant/valve/state", b"open")

    pump = threading.Thread(target=traffic, daemon=True)
    pump.start()
    shot = tmp_path / "status.png"
    try:
        # a longer budget: enough polls, half a second of real time apart, for the chart
        done = chromium(tmp_path / "profile-shot", f"--screenshot={shot}", url, budget=120000)
    finally:
        stop.set()
        pump.join(15)
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("STATUS_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
    observation.cancel()
