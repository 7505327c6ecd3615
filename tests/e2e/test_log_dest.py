"""Debian's stock mosquitto.conf and the ``log_dest`` variants it and others use:
``file``, ``syslog``, ``topic`` ($SYS/broker/log/...), and ``dlt`` (accepted, warned
about)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import NOT_SUPPORTED
from tests.conftest import REPO, Gateway, cli_command, free_port, launch, serving
from tests.e2e.clients import PahoClient, unique

DEBIAN = REPO / "tests" / "data" / "config" / "good" / "debian-default.conf"   # Debian 12's file


def debian_config(directory: Path, port: int) -> str:
    """Debian's file with its paths moved under ``directory``, and conf.d holding a
    listener; the gateway refuses none of its keys."""
    conf_d = directory / "conf.d"
    conf_d.mkdir()
    (conf_d / "local.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    lines, dropped = [], []
    for line in DEBIAN.read_text().splitlines():
        key = line.split()[0] if line.strip() and not line.startswith("#") else ""
        if key in NOT_SUPPORTED:
            dropped.append(key)
            continue
        lines.append(line.replace("/run/mosquitto/", f"{directory}/")
                     .replace("/var/log/mosquitto/", f"{directory}/")
                     .replace("/var/lib/mosquitto/", f"{directory}/")
                     .replace("/etc/mosquitto/conf.d", str(conf_d)))
    assert dropped == []
    return "\n".join(lines) + "\n"


def test_debian_stock_config(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(debian_config(tmp_path, port))
    # Its listener is in conf.d and its log in a file: ready when the port answers.
    gw = Gateway(cli_command("-c", str(conf)), [port], tmp_path, conf)
    try:
        gw.wait_ready()
        assert (tmp_path / "mosquitto.pid").read_text().strip() == str(gw.proc.pid)
        client = PahoClient(port, unique("debian"))
        client.connect()
        client.close()
        log = (tmp_path / "mosquitto.log").read_text()
        assert f"listening for mqtt on 127.0.0.1:{port}" in log
        assert f"store {tmp_path}/mqttgateway.db: 0 retained messages" in log
    finally:
        assert gw.stop() == 0, gw.describe()
    assert not (tmp_path / "mosquitto.pid").exists()


def test_log_dest_topic_syslog_and_dlt(tmp_path):
    lines = ["log_dest stderr", "log_dest syslog", "log_dest topic", "log_dest dlt"]
    for gw in serving(launch(tmp_path, lines, args=["-v"])):
        gw.wait_for_log("log_dest dlt: there is no DLT")
        watcher = PahoClient(gw.port, unique("watcher"))
        watched = PahoClient(gw.port, unique("watched"))
        try:
            watcher.connect()
            watcher.subscribe("$SYS/broker/log/#", qos=2)
            watched.connect()
            seen = []
            while not any(b"client watched-" in m.payload for m in seen):
                seen.append(watcher.next_message())
            line = next(m for m in seen if b"client watched-" in m.payload)
            assert (line.topic, line.qos, line.retain) == ("$SYS/broker/log/I", 2, False)
            timestamp, _, text = line.payload.decode().partition(": ")
            assert timestamp.isdigit() and "connected from 127.0.0.1:" in text
        finally:
            watched.close()
            watcher.close()
