"""Property tests of every codec: what the encoder writes the decoder reads back, whole,
byte by byte or cut anywhere, and arbitrary bytes raise only the codec's own error.

The strategies live in ``tests/strategies.py``, shared with ``bench/fuzz.py``, which
runs the same properties for millions of inputs.
"""

from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt.codec import Decoder, MQTTError, encode
from gateway.mqtt.packets import Connect
from gateway.mqttsn import codec as sn
from gateway.mqttsn.xbee import MAX_FRAME, FrameDecoder, wrap
from tests.strategies import (
    budget, byte_by_byte, feed_all, mqtt_packet, mqttsn_message, mutated, splits, xbee_frame,
    xbee_frame_data,
)

LEVELS = [3, 4, 5]


def _decoder(level: int) -> Decoder:
    decoder = Decoder()
    decoder.protocol_level = level
    return decoder


def _draining(decoder: Decoder) -> Callable[[bytes], list]:
    """``feed`` going on past a CONNECT (the decoder stops there for the transport to
    choose the packet limit), as the transport does."""
    def feed(data: bytes) -> list:
        out: list = []
        got = decoder.feed(data)
        while got and type(got[-1]) is Connect and decoder.buffered:
            out += got
            got = decoder.feed(b"")
        return out + got
    return feed


# --- MQTT --------------------------------------------------------------------------------


@budget(150)
@given(level=st.sampled_from(LEVELS), data=st.data())
def test_mqtt_round_trip(level: int, data: st.DataObject) -> None:
    packets = data.draw(st.lists(mqtt_packet(level), min_size=1, max_size=4))
    wire = b"".join(encode(p, level) for p in packets)
    assert _draining(_decoder(level))(wire) == packets
    assert feed_all(_draining(_decoder(level)), data.draw(splits(wire))) == packets


@budget(40)
@given(level=st.sampled_from(LEVELS), data=st.data())
def test_mqtt_round_trip_byte_by_byte(level: int, data: st.DataObject) -> None:
    packet = data.draw(mqtt_packet(level))
    assert feed_all(_draining(_decoder(level)), byte_by_byte(encode(packet, level))) == [packet]


def _mqtt_noise(level: int) -> st.SearchStrategy[bytes]:
    valid = mqtt_packet(level).map(lambda p: encode(p, level))
    return st.one_of(st.binary(max_size=300), mutated(valid))


@budget(200)
@given(level=st.sampled_from([None, *LEVELS]), data=st.data())
def test_mqtt_arbitrary_bytes_raise_only_mqtt_error(level: int | None, data: st.DataObject) -> None:
    chunks = data.draw(st.lists(_mqtt_noise(level or 4), min_size=1, max_size=3))
    decoder = Decoder(1 << 16)
    decoder.protocol_level = level
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    except MQTTError as e:
        assert e.reason >= 0x80
        # The stream cannot be resynchronised: the decoder keeps refusing.
        with pytest.raises(MQTTError):
            decoder.feed(b"\xc0\x00")


# --- MQTT-SN -----------------------------------------------------------------------------


@budget(300)
@given(msg=mqttsn_message())
def test_mqttsn_round_trip(msg: sn.Message) -> None:
    assert sn.decode(sn.encode(msg)) == msg


@budget(100)
@given(msg=mqttsn_message())
def test_mqttsn_frame_length_finds_the_end(msg: sn.Message) -> None:
    """A stream transport (plain serial) finds message boundaries with frame_length."""
    data = sn.encode(msg)
    stream = data + b"\x02\x16"
    assert sn.frame_length(stream)[0] == len(data)


@budget(300)
@given(data=st.one_of(st.binary(max_size=300), mutated(mqttsn_message().map(sn.encode))))
def test_mqttsn_arbitrary_bytes_raise_only_mqttsn_error(data: bytes) -> None:
    try:
        msg = sn.decode(data)
    except sn.MQTTSNError:
        return
    if isinstance(msg, sn.Encapsulated):
        try:
            sn.decode(msg.message)
        except sn.MQTTSNError:
            pass


# --- XBee --------------------------------------------------------------------------------


@budget(100)
@given(mode=st.sampled_from([1, 2]), data=st.data())
def test_xbee_round_trip(mode: int, data: st.DataObject) -> None:
    frames = data.draw(st.lists(xbee_frame(), min_size=1, max_size=4))
    wire = b"".join(wrap(xbee_frame_data(f), mode) for f in frames)
    assert FrameDecoder(mode).feed(wire) == frames
    assert feed_all(FrameDecoder(mode).feed, data.draw(splits(wire))) == frames
    assert feed_all(FrameDecoder(mode).feed, byte_by_byte(wire)) == frames


@budget(120)
@given(mode=st.sampled_from([1, 2]), data=st.data())
def test_xbee_noise_never_raises_and_resynchronises(mode: int, data: st.DataObject) -> None:
    valid = xbee_frame().map(lambda f: wrap(xbee_frame_data(f), mode))
    noise = data.draw(st.one_of(st.binary(max_size=200), mutated(valid)))
    decoder = FrameDecoder(mode)
    feed_all(decoder.feed, data.draw(splits(noise)))
    # After noise, frames are read again. In mode 2 the next delimiter resets the
    # decoder; in mode 1 noise may claim up to MAX_FRAME bytes of what follows.
    frame = data.draw(xbee_frame())
    wire = wrap(xbee_frame_data(frame), mode)
    got = decoder.feed(wire * (2 if mode == 2 else MAX_FRAME // len(wire) + 3))
    assert frame in got
