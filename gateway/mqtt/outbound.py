"""Encoding one delivery for one MQTT connection, as cheaply as the level allows.

A message fanned out to many subscribers is encoded once per shape and the bytes
kept in ``message.cache``: levels 3 and 4 share one encoding per (QoS, retain); level 5
has its own (its property block differs), and what varies per delivery (packet id,
DUP, subscription identifiers, the remaining expiry, a topic alias) is stamped onto
the cached parts. Cache keys: ints below 8 for levels 3/4; at level 5, the identifiers
tuple alone at QoS 0 without retain (ints or empty, so it equals no other key), else
8..15 without identifiers and (QoS, retain, identifiers) tuples with them; strings
for the level 5 parts (``codes.RAW_PROPS``: the property block, which
``codes.hub_message`` fills with the publisher's own bytes when they can go out
unchanged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.hub.api import Message
from gateway.mqtt import codes
from gateway.mqtt.encoder import _VARINT1, _varint, props_body, publish_parts, publish_v5, set_dup
from gateway.mqtt.reasons import PropertyId

if TYPE_CHECKING:
    from gateway.mqtt.channel import MQTTChannel

_EXPIRY = PropertyId.MESSAGE_EXPIRY_INTERVAL
_SUB_ID = PropertyId.SUBSCRIPTION_IDENTIFIER
_ALIAS = PropertyId.TOPIC_ALIAS
_RAW = codes.RAW_PROPS
_SUB_ID1 = [bytes((_SUB_ID, i)) for i in range(0x80)]  # one identifier below 128


def encode_delivery(
    ch: MQTTChannel, message: Message, qos: int, packet_id: int | None, dup: bool,
    retain: bool, sub_ids: tuple[int, ...],
) -> bytes | None:
    """The PUBLISH bytes for this client, or None when they exceed its Maximum
    Packet Size (the delivery is then dropped for it, as MQTT 5 requires)."""
    mount = ch.settings.mount_point
    if mount and message.topic.startswith(mount):
        message = _unmounted(message, mount)
    cache = message.cache
    if ch.level != 5:
        key = qos * 2 + retain
        head = cache.get(key)
        if qos == 0:
            if head is None:
                h, payload = publish_parts(message.topic, message.payload, 0, retain)
                head = cache[key] = h + payload
            return head
        if head is None:
            head = cache[key] = publish_parts(message.topic, message.payload, qos, retain)[0]
        if dup:
            head = set_dup(head)
        return head + packet_id.to_bytes(2, "big") + message.payload  # type: ignore[union-attr]
    if message.expires_at is None and ch.aliases_out is None:
        # The same bytes for every subscriber with the same identifiers: kept once,
        # whole at QoS 0, as (head, tail) around the packet id otherwise.
        if not (qos or retain):
            # The common case: the identifiers tuple alone is the key (hashed faster
            # than a tuple around it; the empty one stands for none).
            data = cache.get(sub_ids)
            if data is None:
                data = _parts_v5(message, sub_ids, 0, False, sub_ids)
        else:
            key = (qos, retain, sub_ids) if sub_ids else 8 + qos * 2 + retain
            parts = cache.get(key)
            if parts is None:
                parts = _parts_v5(message, key, qos, retain, sub_ids)
            if qos == 0:
                data = parts
            else:
                head, tail = parts
                if dup:
                    head = set_dup(head)
                data = head + packet_id.to_bytes(2, "big") + tail  # type: ignore[union-attr]
    else:
        data = _stamped_v5(ch, message, qos, packet_id, dup, retain, sub_ids)
        if data is None:
            return None
    limit = ch.max_out
    if limit and len(data) > limit:
        return None
    return data


def _unmounted(message: Message, mount: str) -> Message:
    """The message as a client under ``mount_point`` sees it (the prefix removed),
    made once per message and mount point."""
    key = ("mount", mount)
    copy = message.cache.get(key)
    if copy is None:
        copy = message.cache[key] = message.copy(topic=message.topic[len(mount):])
    return copy


def _static_v5(message: Message) -> bytes:
    """The end-to-end property block of ``message`` at level 5 (no length prefix)."""
    if message.props is None:
        return b""
    cache = message.cache
    static = cache.get(_RAW)
    if static is None:
        static = cache[_RAW] = props_body(codes.static_properties(message.props))
    return static  # type: ignore[no-any-return]


def _parts_v5(message: Message, key: object, qos: int, retain: bool,
              sub_ids: tuple[int, ...]) -> bytes | tuple[bytes, bytes]:
    """A level 5 PUBLISH with subscription identifiers ``sub_ids``, kept under
    ``key``: the packet at QoS 0, else (head, tail) with the packet id between."""
    cache = message.cache
    static = b"" if message.props is None else cache.get(_RAW)
    if static is None:
        static = _static_v5(message)
    if not sub_ids:
        ids = b""
    elif len(sub_ids) == 1 and sub_ids[0] < 0x80:
        ids = _SUB_ID1[sub_ids[0]]
    else:
        ids = b"".join(bytes((_SUB_ID,)) + _varint(i) for i in sub_ids)
    topic = message.topic.encode()
    payload = message.payload
    tl = len(topic)
    n = len(static) + len(ids)
    plen = _VARINT1[n] if n < 0x80 else _varint(n)
    rl = 2 + tl + (2 if qos else 0) + len(plen) + n + len(payload)
    b0 = 0x30 | qos << 1 | retain
    if rl < 0x80:  # the fixed header and the topic length in one step
        lead = bytes((b0, rl, tl >> 8, tl & 0xFF))
    else:
        lead = bytes((b0,)) + _varint(rl) + tl.to_bytes(2, "big")
    if qos == 0:
        parts: bytes | tuple[bytes, bytes] = b"".join((lead, topic, plen, static, ids, payload))
    else:
        parts = (lead + topic, b"".join((plen, static, ids, payload)))
    cache[key] = parts
    return parts


def _stamped_v5(
    ch: MQTTChannel, message: Message, qos: int, packet_id: int | None, dup: bool,
    retain: bool, sub_ids: tuple[int, ...],
) -> bytes | None:
    cache = message.cache
    static = _static_v5(message)
    topic = cache.get("topic")
    if topic is None:
        topic = cache["topic"] = message.topic.encode()
    extra = bytearray()
    remaining = codes.remaining_expiry(message, ch.hub.now())
    if remaining is not None:
        extra.append(_EXPIRY)
        extra += remaining.to_bytes(4, "big")
    for sub_id in sub_ids:
        extra.append(_SUB_ID)
        extra += _varint(sub_id)
    aliases = ch.aliases_out
    if aliases is None:
        return publish_v5(topic, message.payload, qos, retain, dup, packet_id, static + extra)
    alias = aliases.lookup(message.topic)
    if alias is not None:
        body = static + extra + bytes((_ALIAS,)) + alias.to_bytes(2, "big")
        return publish_v5(b"", message.payload, qos, retain, dup, packet_id, body)
    # A new alias travels with its topic; assigned only if the packet will be sent
    # (the size is the same whatever the alias number).
    body = static + extra + bytes((_ALIAS, 0, 0))
    if ch.max_out and len(publish_v5(topic, message.payload, qos, retain, dup, packet_id, body)) > ch.max_out:
        return None
    body = body[:-2] + aliases.assign(message.topic).to_bytes(2, "big")
    return publish_v5(topic, message.payload, qos, retain, dup, packet_id, body)
