"""The delivery encoder's cached fast paths against the codec's plain encoder: the
bytes a subscriber gets must not depend on which path built them or on what the
message's cache already held."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from gateway.hub.api import Message, Properties
from gateway.mqtt.channel import MQTTSettings
from gateway.mqtt.codec import encode
from gateway.mqtt.outbound import encode_delivery
from gateway.mqtt.packets import Publish
from gateway.mqtt.reasons import PropertyId as P

# What a topic or property can hold once decoded from UTF-8 (no lone surrogates).
texts = st.text(st.characters(codec="utf-8"), max_size=5)
topics = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=60)


def channel(level: int) -> SimpleNamespace:
    return SimpleNamespace(settings=MQTTSettings(), level=level, aliases_out=None, max_out=0)


@given(
    topic=topics,
    payload=st.binary(max_size=200),
    users=st.lists(st.tuples(texts, texts), max_size=3),
    deliveries=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans(),
                                  st.lists(st.integers(1, 300), max_size=3).map(tuple)),
                        min_size=1, max_size=6),
)
def test_level_5_deliveries_match_the_plain_encoder(topic, payload, users, deliveries):
    """QoS, retain, DUP and subscription identifiers in any order over one message,
    lengths on both sides of one-byte varints (props over 127 bytes, packets too)."""
    props = Properties(user_properties=tuple(users)) if users else None
    message = Message(topic, payload, 2, False, props)
    ch = channel(5)
    for qos, retain, dup, ids in deliveries:
        pid = 77 if qos else None
        dup = dup and qos > 0
        got = encode_delivery(ch, message, qos, pid, dup, retain, ids)  # type: ignore[arg-type]
        expected_props: dict = {}
        if users:
            expected_props[P.USER_PROPERTY] = list(users)
        if ids:
            expected_props[P.SUBSCRIPTION_IDENTIFIER] = list(ids)
        assert got == encode(Publish(topic, payload, qos, retain, dup, pid, expected_props), 5)


@given(
    topic=topics,
    payload=st.binary(max_size=200),
    deliveries=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans(), st.sampled_from([3, 4, 5])),
                        min_size=1, max_size=6),
)
def test_levels_share_one_message_cache_without_mixing_encodings(topic, payload, deliveries):
    message = Message(topic, payload, 2, False)
    for qos, retain, dup, level in deliveries:
        pid = 9 if qos else None
        dup = dup and qos > 0
        got = encode_delivery(channel(level), message, qos, pid, dup, retain, ())  # type: ignore[arg-type]
        assert got == encode(Publish(topic, payload, qos, retain, dup, pid, {}), level)


def test_remaining_lengths_around_one_byte_are_encoded_right():
    """Every length from 120 to 140 bytes, with and without identifiers and user
    properties, so the one- and two-byte remaining lengths both come up."""
    for size in range(110, 140):
        for ids in ((), (5,), (200,)):
            for props in (None, Properties(user_properties=(("k", "v"),))):
                message = Message("t", b"x" * size, 1, False, props)
                for qos in (0, 1):
                    pid = 3 if qos else None
                    expected = {P.SUBSCRIPTION_IDENTIFIER: list(ids)} if ids else {}
                    if props:
                        expected = {P.USER_PROPERTY: [("k", "v")], **expected}
                    got = encode_delivery(channel(5), message, qos, pid, False, False, ids)  # type: ignore[arg-type]
                    assert got == encode(Publish("t", b"x" * size, qos, False, False, pid, expected), 5)
