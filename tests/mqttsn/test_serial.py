"""MQTT-SN over serial lines against the real gateway: the test plays the board or the
XBee coordinator on a pseudo-terminal, paho-mqtt sits on the MQTT side of the hub."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.clients import unique
from tests.mqttsn import wire as w
from tests.mqttsn.radio import BROADCAST, Board, Coordinator, api_frame, receive_packet

RADIO_A = 0x0013A2007D11137E  # address bytes that need escaping in API mode 2
RADIO_A16 = 0x7D11
RADIO_B = 0x0013A20040A1B2C3
RADIO_B16 = 0x1234
ESCAPE_ME = b"\x7e\x7d\x11\x13 escaped \x7e"


def serial_gateway(gateway, device: str, framing: str, *lines: str):
    gw = gateway(f"mqttsn_serial {device} 38400 {framing}", "sys_interval 1", *lines)
    gw.wait_for_log(f"MQTT-SN serial line {device} open")
    return gw


def test_plain_framing_survives_line_noise(gateway, pty_pair, paho) -> None:
    master, device = pty_pair
    gw = serial_gateway(gateway, device, "plain", "mqttsn_predefined_topic 5 serial/predef")
    mqtt = paho(gw.port, unique("watch"))
    mqtt.connect()
    mqtt.subscribe("serial/#", 1)
    mqtt.subscribe("$SYS/broker/mqttsn/frames/dropped")
    board = Board(master)
    # Noise before CONNECT, including a byte claiming a 200-byte PUBLISH that never comes.
    board.send(b"\x00\xff\x13\x37line noise\x7e\xc8\x0c" + w.connect("board-1", 30))
    board.expect(w.connack())
    board.send(b"\x02\x99" + w.publish(5, b"first", 1, 1, id_type=w.PREDEFINED) + b"\x03\x0c\x01")
    board.expect(w.puback(5, 1))
    board.send(w.register(0, 2, "serial/named") + b"\xfe\xfe" + w.pingreq())
    board.expect(w.regack(1, 2))
    board.expect(w.pingresp())
    board.send(w.publish(1, b"second", 0))
    got = [m.payload for m in mqtt.wait_for("serial/named") if m.topic.startswith("serial/")]
    assert got == [b"first", b"second"]
    # and towards the board: a subscription by name gets a topic id, no REGISTER needed
    board.send(w.subscribe(3, "serial/cmd", 0))
    board.expect(w.suback(2, 3, w.ACCEPTED, 0))
    mqtt.publish("serial/cmd", b"open", 1)
    board.expect(w.publish(2, b"open"))
    dropped = [m for m in mqtt.wait_for("$SYS/broker/mqttsn/frames/dropped", timeout=15)][-1]
    assert int(dropped.payload) > 0


def test_xbee_mode_2_with_two_radios(gateway, pty_pair, paho) -> None:
    master, device = pty_pair
    gw = serial_gateway(gateway, device, "xbee2", "mqttsn_gateway_id 9")
    mqtt = paho(gw.port, unique("watch"))
    mqtt.connect()
    mqtt.subscribe("radio/#", 1)
    xb = Coordinator(master, mode=2)

    def reply(addr64: int, payload: bytes):
        return xb.expect(lambda tx: tx.addr64 == addr64 and tx.payload == payload)

    # a corrupt frame and a truncated one first: dropped and counted, not fatal
    bad = bytearray(api_frame(receive_packet(RADIO_A, RADIO_A16, w.connect("x")), 2))
    bad[-1] ^= 0xFF
    xb.send_raw(bytes(bad) + api_frame(receive_packet(RADIO_B, RADIO_B16, w.pingreq()), 2)[:6])

    xb.send(RADIO_A, RADIO_A16, w.searchgw(0))
    gwinfo = reply(BROADCAST, w.gwinfo(9))
    assert gwinfo.addr16 == 0xFFFE

    xb.send(RADIO_A, RADIO_A16, w.connect("radio-a", 30))
    assert reply(RADIO_A, w.connack()).addr16 == RADIO_A16
    xb.send(RADIO_B, RADIO_B16, w.connect("radio-b", 30))
    assert reply(RADIO_B, w.connack()).addr16 == RADIO_B16

    xb.send(RADIO_B, RADIO_B16, w.subscribe(1, "radio/data", 1))
    reply(RADIO_B, w.suback(1, 1, w.ACCEPTED, 1))

    xb.send(RADIO_A, RADIO_A16, w.register(0, 1, "radio/data"))
    reply(RADIO_A, w.regack(1, 1))
    xb.send(RADIO_A, RADIO_A16, w.publish(1, ESCAPE_ME, 1, 0x7E13))
    reply(RADIO_A, w.puback(1, 0x7E13))
    delivered = reply(RADIO_B, w.publish(1, ESCAPE_ME, 1, 1))
    xb.send(RADIO_B, RADIO_B16, w.puback(1, 1))
    assert delivered.frame_id != 0
    assert mqtt.next_message().payload == ESCAPE_ME

    # MQTT to a radio whose 16-bit address changed after a rejoin
    xb.send(RADIO_B, 0x7E7E, w.pingreq())
    assert reply(RADIO_B, w.pingresp()).addr16 == 0x7E7E
    mqtt.publish("radio/data", b"\x11\x13", 1)
    assert reply(RADIO_B, w.publish(1, b"\x11\x13", 1, 2)).addr16 == 0x7E7E
    assert xb.statuses_sent >= 8


@pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")
def test_unplugged_line_is_reopened(gateway, tmp_path: Path, paho) -> None:
    """The device vanishes (USB unplugged) with a persistent session subscribed at
    QoS 1; a message published meanwhile reaches the board once it is back."""
    gw_end, board_end = tmp_path / "ttyGW", tmp_path / "ttyBOARD"

    def plug() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={gw_end}", f"pty,raw,echo=0,link={board_end}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (gw_end.exists() and board_end.exists()):
            assert time.monotonic() < deadline, "socat made no ptys"
            time.sleep(0.02)
        return proc

    def unplug(proc: subprocess.Popen[bytes]) -> None:
        # socat can miss a SIGTERM that lands just before its select(): kill it then
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def board() -> tuple[Board, int]:
        fd = os.open(board_end, os.O_RDWR | os.O_NOCTTY)
        return Board(fd), fd

    socat = plug()
    try:
        gw = serial_gateway(gateway, str(gw_end), "plain")
        mqtt = paho(gw.port, unique("replug-pub"))
        mqtt.connect()
        first, fd = board()
        try:
            first.send(w.connect("replugged", 30, flags=0))
            first.expect(w.connack())
            first.send(w.subscribe(1, "serial/replug", 1))
            first.expect(w.suback(1, 1, w.ACCEPTED, 1))
        finally:
            os.close(fd)
        start = len(gw.stderr)
        unplug(socat)
        gw.wait_for_log(f"serial line {gw_end} lost", start)
        mqtt.publish("serial/replug", b"while away", 1)
        start = len(gw.stderr)
        socat = plug()
        gw.wait_for_log(f"MQTT-SN serial line {gw_end} open", start, timeout=20)
        again, fd = board()
        try:
            again.send(w.connect("replugged", 30, flags=0))
            again.expect(w.connack())
            again.send(w.pingreq())  # the gateway resends on CONNECT, before it reads this
            got = again.expect(w.pingresp())
            publishes = [m for m in got if m[1] == 0x0C]
            assert [m[7:] for m in publishes] == [b"while away"], [m.hex() for m in got]
            m = publishes[0]
            again.send(w.puback(int.from_bytes(m[3:5], "big"), int.from_bytes(m[5:7], "big")))
            again.send(w.disconnect())
            again.expect(w.disconnect())
        finally:
            os.close(fd)
        assert gw.running()
    finally:
        unplug(socat)


def test_missing_device_does_not_stop_the_gateway(gateway, tmp_path: Path, paho) -> None:
    missing = tmp_path / "ttyUSB9"
    gw = gateway(f"mqttsn_serial {missing} 9600 xbee1")
    gw.wait_for_log(f"cannot open serial line {missing}")
    client = paho(gw.port, unique("still-up"))
    client.connect()
