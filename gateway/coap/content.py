"""CoAP Content-Format <-> the hub's content type and payload format.

A CoAP publish with a Content-Format stores its media type as the message's content
type (and ``PayloadFormat.UTF8`` for UTF-8 text), so an MQTT 5 subscriber sees what the
device sent as Content Type and Payload Format Indicator; a message whose content type
is registered for CoAP reaches CoAP observers and GETs with that Content-Format, and
UTF-8 text without a type reads as text/plain. A message with an expiry carries the
seconds it has left as Max-Age (RFC 7252 section 5.10.5), so caches and observers
(RFC 7641 section 4.3.1) stop taking it for fresh when the hub drops it.
"""

from __future__ import annotations

from typing import Any

from aiocoap import Message
from aiocoap.numbers.codes import CONTENT
from aiocoap.numbers.contentformat import ContentFormat

from gateway.hub.api import PayloadFormat, Properties

_CACHE_KEY = "coap.content_format"
_NONE = -1
MAX_AGE_LIMIT = 0xFFFFFFFF  # a four-byte option


def _is_utf8_text(media_type: str) -> bool:
    base = media_type.split(";", 1)[0].strip()
    return (
        "charset=utf-8" in media_type.replace(" ", "")
        or base.endswith("json")
        or base.endswith("+json")
        or base == "application/link-format"
    )


def properties_for(content_format: int | None) -> Properties | None:
    """The message properties for a CoAP Content-Format, None when there is none to give."""
    if content_format is None:
        return None
    cf = ContentFormat(content_format)
    if not cf.is_known() or cf.encoding != "identity":
        return None
    media_type = cf.media_type
    utf8 = PayloadFormat.UTF8 if _is_utf8_text(media_type) else None
    return Properties(content_type=media_type, payload_format=utf8)


def content_format_of(message: Any) -> int | None:
    """The Content-Format for a hub message (memoised in ``message.cache``)."""
    cache = message.cache
    cf = cache.get(_CACHE_KEY)
    if cf is None:
        cf = _lookup(message.props)
        cache[_CACHE_KEY] = cf
    return None if cf == _NONE else cf


def _lookup(props: Properties | None) -> int:
    if props is None:
        return _NONE
    media_type = props.content_type
    if media_type is not None:
        try:
            return int(ContentFormat.by_media_type(media_type))
        except KeyError:
            return _NONE
    if props.payload_format == PayloadFormat.UTF8:
        return int(ContentFormat.TEXT)
    return _NONE


def representation(message: Any, now: float) -> Message:
    """A 2.05 Content carrying a hub message: payload, Content-Format, Max-Age."""
    response = Message(code=CONTENT, payload=message.payload)
    cf = content_format_of(message)
    if cf is not None:
        response.opt.content_format = cf
    expires = message.expires_at
    if expires is not None:
        response.opt.max_age = min(max(int(expires - now), 0), MAX_AGE_LIMIT)
    return response
