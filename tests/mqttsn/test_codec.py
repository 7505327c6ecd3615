"""The MQTT-SN codec against hand-built bytes: one case table drives decode and encode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqttsn import codec as c
from gateway.mqttsn.codec import MQTTSNError, ReturnCode, decode, encode, frame_length
from tests.mqttsn import wire as w

RC = [w.ACCEPTED, w.CONGESTION, w.INVALID_TOPIC_ID, w.NOT_SUPPORTED]

CASES = [
    (c.Advertise(1, 900), w.advertise(1, 900)),
    (c.SearchGw(0), w.searchgw(0)),
    (c.SearchGw(3), w.searchgw(3)),
    (c.GwInfo(7), w.gwinfo(7)),
    (c.GwInfo(7, b"\x0a\x00\x00\x01"), w.gwinfo(7, b"\x0a\x00\x00\x01")),
    (c.Connect("sensor-1", 60, True, False), w.connect("sensor-1", 60, w.CLEAN)),
    (c.Connect("s", 0, False, True), w.connect("s", 0, w.WILL)),
    (c.Connect("s", 10, True, False, 2), w.connect("s", 10, w.CLEAN, protocol_id=2)),
    *[(c.ConnAck(rc), w.connack(rc)) for rc in RC],
    (c.WillTopicReq(), w.willtopicreq()),
    (c.WillTopic("dead/a", 1, True), w.willtopic("dead/a", 1, True)),
    (c.WillTopic("dead/a", 0, False), w.willtopic("dead/a")),
    (c.WillTopic(None), w.willtopic(None)),
    (c.WillMsgReq(), w.willmsgreq()),
    (c.WillMsg(b"gone"), w.willmsg(b"gone")),
    (c.WillMsg(b""), w.willmsg(b"")),
    (c.Register(0, 5, "sensors/temp"), w.register(0, 5, "sensors/temp")),
    (c.Register(12, 65535, "a/b"), w.register(12, 65535, "a/b")),
    *[(c.RegAck(1, 2, rc), w.regack(1, 2, rc)) for rc in RC],
    (c.Publish(1, 0, b"21.5"), w.publish(1, b"21.5")),
    (c.Publish(1, 7, b"x", 1, True, True), w.publish(1, b"x", 1, 7, retain=True, dup=True)),
    (c.Publish(2, 8, b"", 2), w.publish(2, b"", 2, 8)),
    (c.Publish(10, 0, b"p", -1, topic_type=1), w.publish(10, b"p", -1, id_type=w.PREDEFINED)),
    (c.Publish(w.short("ab"), 0, b"s", 0, topic_type=2), w.publish("ab", b"s", id_type=w.SHORT)),
    (c.Publish(3, 0, b"r", 0, topic_type=3), w.publish(3, b"r", id_type=w.RESERVED)),
    *[(c.PubAck(1, 2, rc), w.puback(1, 2, rc)) for rc in RC],
    (c.PubRec(9), w.pubrec(9)),
    (c.PubRel(9), w.pubrel(9)),
    (c.PubComp(9), w.pubcomp(9)),
    (c.Subscribe(1, "sensors/#", 1), w.subscribe(1, "sensors/#", 1)),
    (c.Subscribe(2, 10, 2, 1), w.subscribe(2, 10, 2, w.PREDEFINED)),
    (c.Subscribe(3, "ab", 0, 2, True), w.subscribe(3, "ab", 0, w.SHORT, dup=True)),
    (c.Subscribe(4, 5, -1, 3), w.subscribe(4, 5, -1, w.RESERVED)),
    *[(c.SubAck(1, 2, rc, 1), w.suback(1, 2, rc, 1)) for rc in RC],
    (c.Unsubscribe(1, "a/+"), w.unsubscribe(1, "a/+")),
    (c.Unsubscribe(2, 10, 1), w.unsubscribe(2, 10, w.PREDEFINED)),
    (c.Unsubscribe(3, "ab", 2), w.unsubscribe(3, "ab", w.SHORT)),
    (c.UnsubAck(4), w.unsuback(4)),
    (c.PingReq(), w.pingreq()),
    (c.PingReq("sleepy"), w.pingreq("sleepy")),
    (c.PingResp(), w.pingresp()),
    (c.Disconnect(), w.disconnect()),
    (c.Disconnect(300), w.disconnect(300)),
    (c.WillTopicUpd("new/will", 1, True), w.willtopicupd("new/will", 1, True)),
    (c.WillTopicUpd(None), w.willtopicupd(None)),
    *[(c.WillTopicResp(rc), w.willtopicresp(rc)) for rc in RC],
    (c.WillMsgUpd(b"bye"), w.willmsgupd(b"bye")),
    *[(c.WillMsgResp(rc), w.willmsgresp(rc)) for rc in RC],
    (c.Encapsulated(b"\x00\x13\xa2\x00", w.pingreq(), 1), w.encapsulated(b"\x00\x13\xa2\x00", w.pingreq(), 1)),
    (c.Encapsulated(b"", w.connect("x"), 0), w.encapsulated(b"", w.connect("x"))),
]


@pytest.mark.parametrize("message, raw", CASES, ids=[type(m).__name__ for m, _ in CASES])
def test_decode(message: c.Message, raw: bytes) -> None:
    assert decode(raw) == message


@pytest.mark.parametrize("message, raw", CASES, ids=[type(m).__name__ for m, _ in CASES])
def test_encode(message: c.Message, raw: bytes) -> None:
    assert encode(message) == raw


@pytest.mark.parametrize("message, raw", CASES, ids=[type(m).__name__ for m, _ in CASES])
def test_trailing_or_missing_bytes_are_refused(message: c.Message, raw: bytes) -> None:
    # A datagram is exactly one message: its length field must match.
    with pytest.raises(MQTTSNError):
        decode(raw + b"\x00")
    with pytest.raises(MQTTSNError):
        decode(raw[:-1])


def test_every_message_type_is_in_the_table() -> None:
    assert {type(m) for m, _ in CASES} == set(c._ENCODERS)


def test_long_form_publish_round_trip() -> None:
    payload = bytes(range(256)) * 2
    raw = w.publish(1, payload, 1, 3, long_form=True)
    assert raw[:3] == b"\x01\x02\x09" and raw[3] == 0x0C
    assert decode(raw) == c.Publish(1, 3, payload, 1)
    assert encode(c.Publish(1, 3, payload, 1)) == raw


def test_long_form_is_accepted_for_a_short_message() -> None:
    assert decode(w.msg(0x16, b"", long_form=True)) == c.PingReq()


def test_short_form_is_used_up_to_255_bytes() -> None:
    assert encode(c.Publish(1, 0, b"x" * 248))[0] == 255
    assert encode(c.Publish(1, 0, b"x" * 249))[:3] == b"\x01\x01\x02"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x01",  # three-byte form, length missing
        b"\x01\x00",
        b"\x01\x00\x03",  # three-byte form, no room for the type
        b"\x00",
        b"\x01\x16",
        b"\x02\x03",  # unknown type 0x03
        b"\x02\x11",  # unknown type 0x11
        b"\x02\x19",
        b"\x02\xff",
        w.msg(0x04, b"\x04\x01\x00"),  # CONNECT with a one-byte duration
        w.msg(0x04, b"\x04\x01\x00\x3c\xff\xfe"),  # client id not UTF-8
        w.msg(0x0A, b"\x00\x01\x00\x02\xc3"),  # REGISTER topic not UTF-8
        w.msg(0x0C, b"\x00\x00\x01"),  # PUBLISH too short
        w.msg(0x0D, b"\x00\x01\x00\x02"),  # PUBACK without return code
        w.msg(0x12, b"\x01\x00\x01\x00"),  # SUBSCRIBE predefined with a 1-byte id
        w.msg(0x12, b"\x02\x00\x01abc"),  # SUBSCRIBE short name of 3 bytes
        w.msg(0x18, b"\x00"),  # DISCONNECT with a one-byte duration
        w.msg(0x17, b"\x00"),  # PINGRESP with a body
        w.msg(0x05, b""),  # CONNACK without return code
        w.msg(0x00, b"\x01\x00"),  # ADVERTISE too short
        w.msg(0xFE, b"\x00\x01\x02"),  # encapsulation without an inner message
        w.msg(0x07, b"\x20"),  # WILLTOPIC with flags but no topic
    ],
)
def test_malformed_messages_raise(raw: bytes) -> None:
    with pytest.raises(MQTTSNError) as e:
        decode(raw)
    assert e.value.return_code == ReturnCode.NOT_SUPPORTED


def test_four_byte_long_form_message_without_a_body() -> None:
    # b"\x01\x00\x04\x16" is a complete PINGREQ in the three-byte form.
    assert decode(b"\x01\x00\x04\x16") == c.PingReq()


def test_frame_length_finds_message_boundaries() -> None:
    stream = w.pingreq() + w.publish(1, b"x" * 300, long_form=True)
    assert frame_length(stream) == (2, 1)
    assert frame_length(stream, 2) == (len(stream) - 2, 3)
    assert frame_length(b"\x01\x00") is None
    assert frame_length(b"") is None


def test_encapsulation_length_covers_the_header_only() -> None:
    # v1.2, 5.5: Length counts Length, MsgType, Ctrl and the node id; the inner
    # message follows. A node id whose bytes look like a length must not move the split.
    node = b"\x0d" + bytes(8)
    raw = bytes([3 + len(node), 0xFE, 0x01]) + node + w.unsuback(0)
    assert decode(raw) == c.Encapsulated(node, w.unsuback(0), 1)
    assert encode(c.Encapsulated(node, w.unsuback(0), 1)) == raw
    stream = raw + w.pingreq()
    assert frame_length(stream) == (len(raw), 1)
    assert frame_length(raw[: raw[0]]) is None  # the inner length field is not here yet


@pytest.mark.parametrize(
    "raw",
    [
        b"\x01\x00\x07\xfe\x00" + w.pingreq(),  # three-byte length form
        bytes([2, 0xFE]) + w.pingreq(),  # no room for Ctrl
        bytes([3, 0xFE, 0]) + bytes([3, 0xFE, 0]) + w.pingreq(),  # nested encapsulation
        bytes([4, 0xFE, 0, 9]),  # no inner message
    ],
)
def test_malformed_encapsulation_raises(raw: bytes) -> None:
    with pytest.raises(MQTTSNError):
        decode(raw)


def test_node_id_longer_than_one_length_octet_is_refused() -> None:
    with pytest.raises(MQTTSNError):
        encode(c.Encapsulated(bytes(253), w.pingreq()))


def test_qos_minus_one_flags() -> None:
    assert c.qos_from_flags(0x60) == -1
    assert c.qos_to_flags(-1) == 0x60


def test_too_long_message_cannot_be_encoded() -> None:
    with pytest.raises(MQTTSNError) as e:
        encode(c.Publish(1, 0, b"x" * 65530))
    assert e.value.return_code == ReturnCode.CONGESTION


@given(
    st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=600),
    st.sampled_from([-1, 0, 1, 2]), st.booleans(), st.booleans(), st.integers(0, 3),
)
def test_publish_round_trip(tid: int, mid: int, data: bytes, qos: int, retain: bool, dup: bool, ttype: int) -> None:
    m = c.Publish(tid, mid, data, qos, retain, dup, ttype)
    raw = encode(m)
    assert raw == w.publish(tid, data, qos, mid, retain, dup, ttype, long_form=len(data) + 7 > 255)
    assert decode(raw) == m


@given(st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s), st.integers(0, 0xFFFF),
       st.booleans(), st.booleans())
def test_connect_round_trip(cid: str, duration: int, clean: bool, will: bool) -> None:
    m = c.Connect(cid, duration, clean, will)
    assert decode(encode(m)) == m
