"""CoAP Content-Format <-> MQTT 5 Content Type and Payload Format Indicator.

A CoAP publish with a Content-Format stores its media type as the message's MQTT 5
Content Type (and Payload Format Indicator 1 for UTF-8 text), so an MQTT 5 subscriber
sees what the device sent; an MQTT 5 publish with a Content Type registered for CoAP
reaches CoAP observers and GETs with that Content-Format. Properties are keyed by the
MQTT 5 property identifiers, as ``gateway.mqtt.packets`` keys them.
"""

from __future__ import annotations

from typing import Any

from aiocoap.numbers.contentformat import ContentFormat

PAYLOAD_FORMAT_INDICATOR = 0x01  # gateway.mqtt.reasons.PropertyId values
CONTENT_TYPE = 0x03

_CACHE_KEY = "coap.content_format"
_NONE = -1


def _is_utf8_text(media_type: str) -> bool:
    base = media_type.split(";", 1)[0].strip()
    return (
        "charset=utf-8" in media_type.replace(" ", "")
        or base.endswith("json")
        or base.endswith("+json")
        or base == "application/link-format"
    )


def properties_for(content_format: int | None) -> dict[Any, Any] | None:
    """MQTT 5 properties for a CoAP Content-Format, None when there is none to give."""
    if content_format is None:
        return None
    cf = ContentFormat(content_format)
    if not cf.is_known() or cf.encoding != "identity":
        return None
    media_type = cf.media_type
    props: dict[Any, Any] = {CONTENT_TYPE: media_type}
    if _is_utf8_text(media_type):
        props[PAYLOAD_FORMAT_INDICATOR] = 1
    return props


def content_format_of(message: Any) -> int | None:
    """The Content-Format for a hub message (memoised in ``message.cache``)."""
    cache = message.cache
    cf = cache.get(_CACHE_KEY)
    if cf is None:
        cf = _lookup(message.properties)
        cache[_CACHE_KEY] = cf
    return None if cf == _NONE else cf


def _lookup(props: dict[Any, Any] | None) -> int:
    if not props:
        return _NONE
    media_type = props.get(CONTENT_TYPE)
    if isinstance(media_type, str):
        try:
            return int(ContentFormat.by_media_type(media_type))
        except KeyError:
            return _NONE
    if props.get(PAYLOAD_FORMAT_INDICATOR) == 1:
        return int(ContentFormat.TEXT)
    return _NONE
