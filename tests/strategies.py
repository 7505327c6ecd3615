"""Hypothesis strategies for every wire format the gateway decodes, shared by the
fuzz tests (``tests/test_fuzz*.py``) and the long runner (``bench/fuzz.py``).

Message strategies build only what the protocol allows, so ``decode(encode(x)) == x``
must hold for every example; the text strategies build what an administrator might
type, valid or not. ``budget(n)`` scales example counts: ``GATEWAY_FUZZ_SCALE=100``
runs the CI tests a hundred times longer.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gateway.config import KEYS
from gateway.mqtt import packets as mp
from gateway.mqtt.reasons import NONZERO, PROPERTIES, REPEATABLE, WILL, PacketType, PropertyId, PropType
from gateway.mqttsn import codec as sn
from gateway.mqttsn import xbee

SCALE = float(os.environ.get("GATEWAY_FUZZ_SCALE", "1"))


def budget(examples: int) -> settings:
    """CI-sized settings, scaled by GATEWAY_FUZZ_SCALE; no deadline (CI machines stall)."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- shared pieces ---------------------------------------------------------------------

#: Any text MQTT may carry: valid UTF-8 (no surrogates) without U+0000.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
#: Text with the characters topic syntax cares about drawn often.
TOPICISH = st.text(
    st.one_of(st.sampled_from("/+#$ab"), st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
    max_size=16,
)
TOPIC_NAME = TOPICISH.filter(lambda t: "+" not in t and "#" not in t)
U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
PID = st.integers(1, 0xFFFF)
PAYLOAD = st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=400))


def _prop_value(ptype: PropType, nonzero: bool) -> st.SearchStrategy:
    low = 1 if nonzero else 0
    return {
        PropType.BYTE: st.integers(0, 1),
        PropType.U16: st.integers(low, 0xFFFF),
        PropType.U32: st.integers(low, 0xFFFFFFFF),
        PropType.VARINT: st.one_of(st.integers(low, 300), st.integers(low, 268_435_455)),
        PropType.STR: TEXT,
        PropType.BIN: st.binary(max_size=20),
        PropType.PAIR: st.tuples(TEXT, TEXT),
    }[ptype]


def properties(ctx: int, single_sub_id: bool = False) -> st.SearchStrategy[dict]:
    """A valid level 5 property block for packet type ``ctx`` (or ``WILL``)."""
    allowed = [p for p, (_, where) in PROPERTIES.items() if ctx in where]
    if not allowed:
        return st.just({})

    @st.composite
    def build(draw: st.DrawFn) -> dict:
        props: dict = {}
        for p in draw(st.lists(st.sampled_from(allowed), unique=True, max_size=4)):
            value = _prop_value(PROPERTIES[p][0], p in NONZERO)
            if p in REPEATABLE:
                most = 1 if single_sub_id and p == PropertyId.SUBSCRIPTION_IDENTIFIER else 3
                props[p] = draw(st.lists(value, min_size=1, max_size=most))
            else:
                props[p] = draw(value)
        return props

    return build()


# --- MQTT ------------------------------------------------------------------------------


def _props(level: int, ctx: int, **kw: bool) -> st.SearchStrategy[dict]:
    return properties(ctx, **kw) if level == 5 else st.just({})


def _reason(level: int) -> st.SearchStrategy[int]:
    return U8 if level == 5 else st.just(0)


@st.composite
def _will(draw: st.DrawFn, level: int) -> mp.Will:
    return mp.Will(
        draw(TOPIC_NAME.filter(bool)), draw(PAYLOAD), draw(st.integers(0, 2)), draw(st.booleans()),
        draw(_props(level, WILL)),
    )


@st.composite
def _connect(draw: st.DrawFn, level: int) -> mp.Connect:
    username = draw(st.none() | TEXT)
    password = draw(st.none() | st.binary(max_size=20))
    if level == 4 and username is None:
        password = None  # 3.1.1 forbids a password without a user name
    return mp.Connect(
        draw(TEXT), level, draw(st.booleans()), draw(U16), username, password,
        draw(st.none() | _will(level)), properties=draw(_props(level, PacketType.CONNECT)),
    )


@st.composite
def _publish(draw: st.DrawFn, level: int) -> mp.Publish:
    qos = draw(st.integers(0, 2))
    props = draw(_props(level, PacketType.PUBLISH))
    topic = draw(TOPIC_NAME)
    if not topic and PropertyId.TOPIC_ALIAS not in props:
        topic = "t"  # an empty topic needs a topic alias (level 5) and is invalid below
    return mp.Publish(
        topic, draw(PAYLOAD), qos, draw(st.booleans()), qos > 0 and draw(st.booleans()),
        draw(PID) if qos else None, props,
    )


def _ack(cls: type, ptype: PacketType, level: int) -> st.SearchStrategy:
    return st.builds(cls, PID, _reason(level), _props(level, ptype))


def _sub_options(level: int) -> st.SearchStrategy[int]:
    if level < 5:
        return st.integers(0, 2)
    return st.builds(
        lambda qos, nl, rap, rh: qos | nl << 2 | rap << 3 | rh << 4,
        st.integers(0, 2), st.integers(0, 1), st.integers(0, 1), st.integers(0, 2),
    )


@st.composite
def _subscribe(draw: st.DrawFn, level: int) -> mp.Subscribe:
    topics = draw(st.lists(st.tuples(TOPICISH, _sub_options(level)), min_size=1, max_size=4))
    # No Local on a shared subscription is a protocol error.
    topics = [(f, o & ~4 if f.startswith("$share/") else o) for f, o in topics]
    return mp.Subscribe(draw(PID), topics, draw(_props(level, PacketType.SUBSCRIBE, single_sub_id=True)))


def mqtt_packet(level: int) -> st.SearchStrategy[mp.Packet]:
    """Any packet valid at protocol level 3, 4 or 5, in either direction."""
    suback_codes = U8 if level == 5 else st.sampled_from([0, 1, 2, 0x80])
    choices = [
        _connect(level),
        st.builds(mp.ConnAck, U8, st.booleans(), _props(level, PacketType.CONNACK)),
        _publish(level),
        _ack(mp.PubAck, PacketType.PUBACK, level),
        _ack(mp.PubRec, PacketType.PUBREC, level),
        _ack(mp.PubRel, PacketType.PUBREL, level),
        _ack(mp.PubComp, PacketType.PUBCOMP, level),
        _subscribe(level),
        st.builds(
            mp.SubAck, PID, st.lists(suback_codes, min_size=1, max_size=5), _props(level, PacketType.SUBACK)
        ),
        st.builds(mp.Unsubscribe, PID, st.lists(TOPICISH, min_size=1, max_size=4), _props(level, PacketType.UNSUBSCRIBE)),
        st.builds(
            mp.UnsubAck, PID, st.lists(U8, max_size=4) if level == 5 else st.just([]),
            _props(level, PacketType.UNSUBACK),
        ),
        st.just(mp.PingReq()),
        st.just(mp.PingResp()),
        st.builds(mp.Disconnect, _reason(level), _props(level, PacketType.DISCONNECT)),
    ]
    if level == 5:
        choices.append(st.builds(mp.Auth, U8, properties(PacketType.AUTH)))
    return st.one_of(choices)


# --- MQTT-SN ---------------------------------------------------------------------------

SN_QOS = st.integers(-1, 2)
SN_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
SN_NAME = SN_TEXT.filter(bool)
#: A short topic name: exactly two bytes of UTF-8.
SN_SHORT = st.one_of(
    st.text(st.characters(max_codepoint=0x7F), min_size=2, max_size=2),
    st.characters(min_codepoint=0x80, max_codepoint=0x7FF),
)


@st.composite
def _sn_topic(draw: st.DrawFn) -> tuple[int, str | int]:
    ttype = draw(st.integers(0, 3))
    if ttype == sn.TopicIdType.NORMAL:
        return ttype, draw(SN_NAME)
    if ttype == sn.TopicIdType.SHORT:
        return ttype, draw(SN_SHORT)
    return ttype, draw(U16)


@st.composite
def _sn_subscribe(draw: st.DrawFn) -> sn.Subscribe:
    ttype, topic = draw(_sn_topic())
    return sn.Subscribe(draw(U16), topic, draw(SN_QOS), ttype, draw(st.booleans()))


@st.composite
def _sn_unsubscribe(draw: st.DrawFn) -> sn.Unsubscribe:
    ttype, topic = draw(_sn_topic())
    return sn.Unsubscribe(draw(U16), topic, ttype)


def _sn_will(cls: type) -> st.SearchStrategy:
    return st.one_of(st.just(cls(None)), st.builds(cls, SN_NAME, SN_QOS, st.booleans()))


SN_PAYLOAD = st.one_of(st.binary(max_size=40), st.binary(min_size=250, max_size=600))

_SN_PLAIN: list[st.SearchStrategy] = [
    st.builds(sn.Advertise, U8, U16),
    st.builds(sn.SearchGw, U8),
    st.builds(sn.GwInfo, U8, st.binary(max_size=16)),
    st.builds(sn.Connect, SN_TEXT, U16, st.booleans(), st.booleans(), U8),
    st.builds(sn.ConnAck, U8),
    st.just(sn.WillTopicReq()),
    _sn_will(sn.WillTopic),
    st.just(sn.WillMsgReq()),
    st.builds(sn.WillMsg, SN_PAYLOAD),
    st.builds(sn.Register, U16, U16, SN_NAME),
    st.builds(sn.RegAck, U16, U16, U8),
    st.builds(sn.Publish, U16, U16, SN_PAYLOAD, SN_QOS, st.booleans(), st.booleans(), st.integers(0, 3)),
    st.builds(sn.PubAck, U16, U16, U8),
    st.builds(sn.PubRec, U16),
    st.builds(sn.PubRel, U16),
    st.builds(sn.PubComp, U16),
    _sn_subscribe(),
    st.builds(sn.SubAck, U16, U16, U8, SN_QOS),
    _sn_unsubscribe(),
    st.builds(sn.UnsubAck, U16),
    st.builds(sn.PingReq, st.none() | SN_NAME),
    st.just(sn.PingResp()),
    st.builds(sn.Disconnect, st.none() | U16),
    _sn_will(sn.WillTopicUpd),
    st.builds(sn.WillTopicResp, U8),
    st.builds(sn.WillMsgUpd, SN_PAYLOAD),
    st.builds(sn.WillMsgResp, U8),
]


@st.composite
def _sn_encapsulated(draw: st.DrawFn) -> sn.Encapsulated:
    inner = draw(st.one_of(_SN_PLAIN))
    return sn.Encapsulated(draw(st.binary(max_size=12)), sn.encode(inner), draw(st.integers(0, 3)))


def mqttsn_message() -> st.SearchStrategy[sn.Message]:
    """Any MQTT-SN v1.2 message, forwarder encapsulation included."""
    return st.one_of(*_SN_PLAIN, _sn_encapsulated())


# --- XBee API frames -------------------------------------------------------------------

#: Bytes the API mode 2 escaper must handle, drawn often.
_XBEE_BYTE = st.one_of(st.sampled_from([0x7E, 0x7D, 0x11, 0x13]), U8)
_XBEE_DATA = st.lists(_XBEE_BYTE, max_size=80).map(bytes)


def xbee_frame() -> st.SearchStrategy[xbee.Frame]:
    """A frame as ``FrameDecoder`` returns it; ``xbee_frame_data`` turns it into frame data."""
    addr64 = st.one_of(st.integers(0, 2**64 - 1), st.just(0x0013A2007D11137E))
    other_api = U8.filter(lambda a: a not in (xbee.RX_PACKET, xbee.TX_STATUS))
    return st.one_of(
        st.builds(xbee.RxPacket, addr64, U16, U8, _XBEE_DATA),
        st.builds(xbee.TxStatus, U8, U16, U8, U8, U8),
        st.builds(xbee.OtherFrame, other_api, _XBEE_DATA),
    )


def xbee_frame_data(frame: xbee.Frame) -> bytes:
    if isinstance(frame, xbee.RxPacket):
        return xbee.rx_packet(frame.addr64, frame.addr16, frame.data, frame.options)
    if isinstance(frame, xbee.TxStatus):
        return xbee.tx_status(frame.frame_id, frame.addr16, frame.delivery, frame.retries, frame.discovery)
    return bytes((frame.api_id,)) + frame.data


# --- feeding a stream decoder ----------------------------------------------------------


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random points (possibly none)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def feed_all(feed: Callable[[bytes], list], chunks: list[bytes]) -> list:
    out: list = []
    for chunk in chunks:
        out += feed(chunk)
    return out


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --- noise ------------------------------------------------------------------------------


def mutated(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid encodings with bytes overwritten, inserted, deleted, cut short or extended:
    closer to line noise than uniform random bytes, which rarely pass a header."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(valid))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.integers(0, 2))
            at = draw(st.integers(0, len(data)))
            if op == 0 and at < len(data):
                data[at] = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF]) | U8)
            elif op == 1:
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
            else:
                del data[at : at + draw(st.integers(1, 4))]
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut]) + draw(st.binary(max_size=8))

    return build()


# --- configuration text ------------------------------------------------------------------

CONFIG_WORDS = [
    "0", "1", "-1", "65535", "65536", "1883", "true", "false", "yes", "none", "all", "2d", "0h", "10y",
    "12/3", "5/0", "5/-1s", "1/1e400", "1/nan", "1/inf", "qos1", "coap", "non", "ipv4", "mqttsn",
    "mqtt", "coap", "websockets", "plain", "xbee2", "/dev/ttyS0", "38400", "224.0.1.1", "239.1.1.1",
    "1.2.3.4", "::1", "#", "# comment", "a/+/b", "a/#", "file", "stderr", "syslog", "tlsv1.2",
    "/nonexistent/dir", "/nonexistent/file.conf", "\u0661\u0662", "\u00b2", "9" * 40, "9" * 5000,
    "debug", "error", "information", "notice", "warning", "subscribe", "unsubscribe", "topic",
]
CONFIG_KEYS = sorted(KEYS) + ["plugin_opt_x", "bridge_cafile", "connection", "listener", "port", "unknown_key"]
_VALUE = st.one_of(st.sampled_from(CONFIG_WORDS), TEXT.map(lambda s: s.replace("\n", " ")))


def _lines_text(line: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ends = st.sampled_from(["\n", "\r\n", "\n\n"])
    return st.lists(st.tuples(line, ends), max_size=12).map(lambda ls: "".join(a + b for a, b in ls))


#: Mosquitto-style configuration text: mostly known keys with plausible or odd values.
CONFIG_TEXT = st.one_of(
    _lines_text(
        st.builds(
            lambda pad, key, values, sep: pad + key + "".join(sep + v for v in values),
            st.sampled_from(["", " ", "\t"]), st.sampled_from(CONFIG_KEYS) | TEXT,
            st.lists(_VALUE, max_size=3), st.sampled_from([" ", "\t", "  "]),
        )
    ),
    st.text(max_size=200),
)

_B64 = st.binary(min_size=0, max_size=70).map(lambda b: base64.b64encode(b).decode())
_HASH = st.one_of(
    st.builds(lambda s, h: f"$6${s}${h}", _B64, _B64),
    st.builds(lambda n, s, h: f"$7${n}${s}${h}", st.sampled_from(["101", "0", "-1", "\u0661", "9" * 5000, "x"]), _B64, _B64),
    st.just("$7$101$c2FsdHNhbHRzYWx0$" + "A" * 88),
    TEXT,
)
_PASSWORD_LINE = st.one_of(
    st.builds(lambda u, sep, h: u + sep + h, TEXT, st.sampled_from([":", "::", " : "]), _HASH),
    st.sampled_from(["", "#", "# comment", ":", "user", "user:"]),
    TEXT,
)
#: Password file contents, as bytes (the parser sees bytes and decodes UTF-8 itself).
PASSWORD_FILE = st.one_of(
    _lines_text(_PASSWORD_LINE).map(str.encode),
    st.binary(max_size=200),
)

_ACL_LINE = st.one_of(
    st.builds(
        lambda kw, access, topic: " ".join(x for x in (kw, access, topic) if x is not None),
        st.sampled_from(["topic", "pattern", "user", "Topic", "#", ""]),
        st.none() | st.sampled_from(["read", "write", "readwrite", "deny", "subscribe", "rw"]),
        st.none() | TOPICISH | st.sampled_from(["%c/%u", "a/#/b", "+x", "#", ""]),
    ),
    TEXT,
)
#: ACL file contents, as bytes.
ACL_FILE = st.one_of(_lines_text(_ACL_LINE).map(str.encode), st.binary(max_size=200))
