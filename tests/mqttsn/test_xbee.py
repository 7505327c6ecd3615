"""XBee API frames: golden bytes from Digi's documentation, escaping, resynchronisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqttsn import xbee
from gateway.mqttsn.xbee import FrameDecoder, RxPacket, TxStatus
from tests.mqttsn.radio import api_frame, frames_in, receive_packet, transmit_status

# Digi's worked examples (API mode 1): a Transmit Request of "TxData0A" and a Receive
# Packet of "RxData".
TX_EXAMPLE = bytes.fromhex("7E0016100100 13A200400A0127 FFFE0000 547844617461 3041 13".replace(" ", ""))
RX_EXAMPLE = bytes.fromhex("7E0012900013A20040522BAA7D84015278446174610D")


def test_transmit_request_matches_the_documented_example() -> None:
    data = xbee.tx_request(0x01, 0x0013A200400A0127, 0xFFFE, b"TxData0A")
    assert xbee.wrap(data, 1) == TX_EXAMPLE


def test_receive_packet_example_decodes() -> None:
    assert FrameDecoder(1).feed(RX_EXAMPLE) == [RxPacket(0x0013A20040522BAA, 0x7D84, 0x01, b"RxData")]


def test_receive_packet_example_in_mode_2() -> None:
    wire = api_frame(RX_EXAMPLE[3:-1], 2)
    assert b"\x7d\x5d" in wire and b"\x7d\x33" in wire  # 0x7D and 0x13 escaped
    assert FrameDecoder(2).feed(wire) == [RxPacket(0x0013A20040522BAA, 0x7D84, 0x01, b"RxData")]


def test_mode_2_escapes_length_data_and_checksum() -> None:
    payload = b"\x7e\x7d\x11\x13"
    data = xbee.tx_request(0x13, 0x0013A2007D11137E, 0x7D11, payload)
    wire = xbee.wrap(data, 2)
    assert wire == api_frame(data, 2)
    assert wire.count(b"\x7e") == 1  # only the delimiter
    assert frames_in(wire, 2) == [data]


def test_escaped_checksum_and_length() -> None:
    # frame data of 0x11 bytes: the length LSB itself needs escaping
    data = b"\x10" + bytes(16)
    wire = xbee.wrap(data, 2)
    assert wire[:4] == b"\x7e\x00\x7d\x31"
    assert frames_in(wire, 2) == [data]


@pytest.mark.parametrize("mode", [1, 2])
def test_byte_by_byte_and_back_to_back(mode: int) -> None:
    a = receive_packet(0x0013A20012345678, 0x1234, b"\x02\x16")
    b = transmit_status(7, 0x7D11, 0x21)
    wire = api_frame(a, mode) + api_frame(b, mode)
    dec = FrameDecoder(mode)
    frames = [f for byte in wire for f in dec.feed(bytes([byte]))]
    assert frames == [RxPacket(0x0013A20012345678, 0x1234, 1, b"\x02\x16"), TxStatus(7, 0x7D11, 0, 0x21, 0)]
    assert dec.dropped == 0


@pytest.mark.parametrize("mode", [1, 2])
def test_bad_checksum_is_dropped_and_counted(mode: int) -> None:
    good = api_frame(receive_packet(1, 2, b"ok"), mode)
    bad = bytearray(api_frame(receive_packet(1, 2, b"no"), mode))
    bad[-1] ^= 0x01
    dec = FrameDecoder(mode)
    assert dec.feed(b"noise" + bytes(bad) + good) == [RxPacket(1, 2, 1, b"ok")]
    assert dec.bad_checksum == 1


def test_truncated_frame_is_dropped_when_the_next_one_starts() -> None:
    good = api_frame(receive_packet(1, 2, b"ok"), 2)
    dec = FrameDecoder(2)
    assert dec.feed(good[:7] + good) == [RxPacket(1, 2, 1, b"ok")]
    assert dec.truncated == 1


def test_implausible_length_is_noise() -> None:
    dec = FrameDecoder(1)
    good = api_frame(receive_packet(1, 2, b"ok"), 1)
    assert dec.feed(b"\x7e\xff\xff" + good) == [RxPacket(1, 2, 1, b"ok")]
    assert dec.dropped == 1


def test_other_frames_are_returned_for_the_caller_to_ignore() -> None:
    modem_status = b"\x8a\x06"
    assert FrameDecoder(1).feed(api_frame(modem_status, 1)) == [xbee.OtherFrame(0x8A, b"\x06")]


def test_mode_must_be_1_or_2() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(3)


@given(st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF), st.binary(max_size=100), st.sampled_from([1, 2]))
def test_rx_round_trip_with_any_bytes(addr64: int, addr16: int, payload: bytes, mode: int) -> None:
    wire = api_frame(receive_packet(addr64, addr16, payload), mode)
    assert FrameDecoder(mode).feed(wire) == [RxPacket(addr64, addr16, 1, payload)]


@given(st.integers(1, 255), st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF), st.binary(max_size=100))
def test_tx_request_matches_the_independent_framer(fid: int, addr64: int, addr16: int, payload: bytes) -> None:
    data = xbee.tx_request(fid, addr64, addr16, payload)
    for mode in (1, 2):
        assert xbee.wrap(data, mode) == api_frame(data, mode)
