"""The serial networks without a serial port: bytes in through ``feed``, bytes out on a
``StringTransport``, time on a Clock (the plain framing's stall rule)."""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from gateway.mqttsn.serial import STALL, PlainSerialNetwork, XBeeNetwork
from tests.mqttsn import wire as w
from tests.mqttsn.helpers import Rig
from tests.mqttsn.radio import BROADCAST, api_frame, frames_in, receive_packet, transmit_status


def plain() -> tuple[Rig, PlainSerialNetwork, StringTransport]:
    rig = Rig()
    net = PlainSerialNetwork(rig.ctx, "/dev/ttyTEST", rig.clock)
    net.port = StringTransport()
    rig.ctx.add_network(net)
    return rig, net, net.port


def take(port: StringTransport) -> bytes:
    data = port.value()
    port.clear()
    return data


def test_messages_back_to_back_in_any_pieces() -> None:
    rig, net, port = plain()
    stream = w.connect("board", 30) + w.pingreq() + w.publish("ab", b"x" * 300, 1, 7, id_type=w.SHORT)
    for i in range(len(stream)):
        net.feed(stream[i : i + 1])
    assert take(port) == w.connack() + w.pingresp() + w.puback(w.short("ab"), 7)
    assert net.frames_dropped == 0


def test_impossible_lengths_and_types_are_skipped_at_once() -> None:
    rig, net, port = plain()
    net.feed(b"\x00\x00\x01\x00\x01" + w.connect("board", 30) + b"\x00\x01\x00\x00" + w.pingreq())
    assert take(port) == w.connack() + w.pingresp()
    assert net.frames_dropped == 2  # one per run of noise


def test_line_noise_is_resolved_by_the_stall_rule() -> None:
    rig, net, port = plain()
    net.feed(b"\xff\x13line noise\x7e" + w.connect("board", 30) + b"\x13\x37" + w.pingreq())
    for _ in range(20):
        if port.value() == w.connack() + w.pingresp():
            break
        rig.advance(STALL)
    assert take(port) == w.connack() + w.pingresp()
    assert net.frames_dropped >= 2


def test_a_length_that_never_completes_is_noise_after_the_stall_time() -> None:
    rig, net, port = plain()
    net.feed(b"\xc8\x0c" + w.connect("board", 30))  # claims a 200-byte PUBLISH
    assert take(port) == b""
    rig.advance(STALL)
    assert take(port) == w.connack()
    assert net.frames_dropped == 1


def test_more_bytes_before_the_stall_time_keep_waiting() -> None:
    rig, net, port = plain()
    message = w.publish(1, b"y" * 100)
    net.feed(w.connect("board", 30))
    take(port)
    net.feed(message[:50])
    rig.advance(STALL * 0.9)
    net.feed(message[50:80])
    rig.advance(STALL * 0.9)
    net.feed(message[80:])
    assert take(port) == w.puback(1, 0, w.INVALID_TOPIC_ID)  # whole, and answered
    assert net.frames_dropped == 0


def test_writes_while_the_line_is_down_are_counted() -> None:
    rig, net, port = plain()
    net.feed(w.connect("board", 30))
    net.port = None
    net.feed(w.pingreq())
    assert net.send_errors == 1


def xbee() -> tuple[Rig, XBeeNetwork, StringTransport]:
    rig = Rig()
    net = XBeeNetwork(rig.ctx, "/dev/ttyXB", rig.clock, 2)
    net.port = StringTransport()
    rig.ctx.add_network(net)
    return rig, net, net.port


def test_frame_ids_skip_zero_and_addresses_are_kept() -> None:
    rig, net, port = xbee()
    net._frame_id = 254
    net.feed(api_frame(receive_packet(0xA1, 0x1111, w.connect("r1", 30)), 2))
    net.feed(api_frame(receive_packet(0xA1, 0x2222, w.pingreq()), 2))
    net.feed(api_frame(receive_packet(0xA1, 0x2222, w.searchgw()), 2))
    frames = frames_in(take(port), 2)
    assert [f[1] for f in frames] == [255, 1, 2]
    assert [(int.from_bytes(f[2:10], "big"), int.from_bytes(f[10:12], "big")) for f in frames] == [
        (0xA1, 0x1111), (0xA1, 0x2222), (BROADCAST, 0xFFFE)]
    assert [f[14:] for f in frames] == [w.connack(), w.pingresp(), w.gwinfo(1)]


def test_failed_transmissions_and_bad_frames_are_counted() -> None:
    rig, net, port = xbee()
    net.feed(api_frame(transmit_status(1, 0x1111, delivery=0x21), 2))
    net.feed(api_frame(transmit_status(2, 0x1111, delivery=0), 2))
    bad = bytearray(api_frame(receive_packet(0xA1, 0x1111, w.pingreq()), 2))
    bad[-1] ^= 0x55
    net.feed(bytes(bad))
    net.feed(api_frame(b"\x8a\x02", 2))  # modem status: ignored
    assert net.transmit_failures == 1
    assert net.frames_dropped == 1
    assert rig.hub.sys.values()["mqttsn/frames/dropped"] == 1
    assert take(port) == b""


def test_advertise_is_a_broadcast_frame() -> None:
    rig = Rig(advertise_interval=60, gateway_id=3)
    net = XBeeNetwork(rig.ctx, "/dev/ttyXB", rig.clock, 1)
    net.port = StringTransport()
    rig.ctx.add_network(net)
    rig.advance(0)
    frame = frames_in(take(net.port), 1)[0]
    assert int.from_bytes(frame[2:10], "big") == BROADCAST and frame[14:] == w.advertise(3, 60)
