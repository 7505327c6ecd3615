"""The pure parts of gateway.coap: bounded caches, the rate limiter, the Content-Format
mapping, the table of refusal codes, and the aiocoap internals the gateway overrides (checked, so an aiocoap
upgrade that moves them fails here and not in production)."""

from __future__ import annotations

import inspect

import pytest
from aiocoap.blockwise import _extract_block_key
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.codes import (
    BAD_REQUEST,
    FORBIDDEN,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
)
from aiocoap.protocol import Context
from aiocoap.transports.udp6 import MessageInterfaceUDP6

from gateway.coap.blocks import BoundedCache
from gateway.coap.content import content_format_of, properties_for, representation
from gateway.coap.manager import RateLimiter
from gateway.coap.refusals import ACCESS, AUTHENTICATION, CODES, code_for, refusal
from gateway.hub.api import Denied, Message, PayloadFormat, Properties, Reason


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bounded_cache_drops_the_oldest_beyond_its_entry_limit():
    cache: BoundedCache[str, str] = BoundedCache(2, 1000, 10, Clock())
    for key in "abc":
        cache.put(key, key.upper(), 1)
    with pytest.raises(KeyError):
        cache.get("a")
    assert (cache.get("b"), cache.get("c"), len(cache), cache.size) == ("B", "C", 2, 2)


def test_bounded_cache_byte_limit_and_lifetime():
    clock = Clock()
    cache: BoundedCache[str, str] = BoundedCache(100, 10, 5, clock)
    cache.put("a", "x", 6)
    cache.put("b", "y", 6)  # 12 bytes > 10: "a" goes
    assert len(cache) == 1 and cache.size == 6
    clock.now += 5
    with pytest.raises(KeyError):
        cache.get("b")
    assert cache.size == 0


def test_rate_limiter_windows():
    clock = Clock()
    limiter = RateLimiter(3, 0, clock)
    assert [limiter.allow(("a", 1), "a") for _ in range(4)] == [None, None, None, "endpoint"]
    assert limiter.allow(("b", 1), "b") is None  # per endpoint
    clock.now += 1.0
    assert limiter.allow(("a", 1), "a") is None  # a new window


def test_rate_limiter_lets_devices_behind_one_address_through_up_to_its_ceiling():
    limiter = RateLimiter(3, 8, Clock())
    # Eight devices behind one NAT address, one port each: each under its own limit.
    assert [limiter.allow(("nat", port), "nat") for port in range(8)] == [None] * 8
    # A ninth port from the same address meets the per-address ceiling.
    assert limiter.allow(("nat", 99), "nat") == "address"
    assert limiter.allow(("other", 1), "other") is None


UTF8 = PayloadFormat.UTF8


@pytest.mark.parametrize("cf, props", [
    (None, None),
    (50, Properties(content_type="application/json", payload_format=UTF8)),
    (0, Properties(content_type="text/plain; charset=utf-8", payload_format=UTF8)),
    (42, Properties(content_type="application/octet-stream")),
    (60, Properties(content_type="application/cbor")),
    (110, Properties(content_type="application/senml+json", payload_format=UTF8)),
    (11050, None),  # deflate-encoded JSON: no content type says that
    (65000, None),  # not registered: nothing to say
])
def test_content_format_to_message_properties(cf, props):
    assert properties_for(cf) == props


@pytest.mark.parametrize("props, cf", [
    (None, None),
    (Properties(), None),
    (Properties(content_type="application/json"), 50),
    (Properties(content_type="text/plain;charset=utf-8"), 0),
    (Properties(content_type="application/x-unknown"), None),
    (Properties(content_type="application/x-unknown", payload_format=UTF8), None),
    (Properties(payload_format=UTF8), 0),  # UTF-8 text without a type: text/plain
    (Properties(payload_format=PayloadFormat.BYTES), None),
    (Properties(response_topic="r", correlation_data=b"c"), None),
])
def test_message_properties_to_content_format(props, cf):
    assert content_format_of(Message("t", b"", props=props)) == cf


def test_max_age_is_the_time_a_message_has_left():
    assert representation(Message("t", b"v", expires_at=130.9), 100.0).opt.max_age == 30
    assert representation(Message("t", b"v", expires_at=90.0), 100.0).opt.max_age == 0
    assert representation(Message("t", b"v"), 100.0).opt.max_age is None  # RFC 7252: 60


@pytest.mark.parametrize("reason, context, code", [
    (Reason.NOT_AUTHORIZED, AUTHENTICATION, UNAUTHORIZED),   # password file refusal
    (Reason.BAD_CREDENTIALS, AUTHENTICATION, UNAUTHORIZED),
    (Reason.NOT_AUTHORIZED, ACCESS, FORBIDDEN),              # the ACL
    (Reason.RETAIN_NOT_SUPPORTED, ACCESS, BAD_REQUEST),
    (Reason.SERVER_UNAVAILABLE, AUTHENTICATION, SERVICE_UNAVAILABLE),
    (Reason.SERVER_BUSY, ACCESS, SERVICE_UNAVAILABLE),
    (Reason.SESSION_TAKEN_OVER, AUTHENTICATION, SERVICE_UNAVAILABLE),
])
def test_refusal_codes(reason, context, code):
    assert code_for(reason, context) == code


def test_every_reason_has_a_code_in_every_context():
    for context, table in CODES.items():
        assert set(table) == set(Reason), context


def test_a_5_03_refusal_says_when_to_retry():
    busy = refusal(Denied(Reason.SERVER_UNAVAILABLE), AUTHENTICATION).to_message()
    assert (busy.code, busy.payload) == (SERVICE_UNAVAILABLE, b"server unavailable")
    assert busy.opt.max_age
    forbidden = refusal(Denied(Reason.NOT_AUTHORIZED, "no"), ACCESS).to_message()
    assert (forbidden.code, forbidden.payload, forbidden.opt.max_age) == (FORBIDDEN, b"no", None)


@pytest.mark.parametrize("cls, names", [
    (MessageManager, ["_deduplicate_message", "_send_initially", "_add_exchange",
                      "_remove_exchange", "_retransmit", "_send_via_transport",
                      "_next_message_id", "dispatch_error", "send_message"]),
    (Context, ["_append_tokenmanaged_messagemanaged_transport", "render_to_pipe"]),
    (MessageInterfaceUDP6, ["_create_transport_endpoint", "datagram_msg_received", "send"]),
])
def test_the_aiocoap_internals_we_override_exist(cls, names):
    for name in names:
        assert callable(getattr(cls, name)), f"{cls.__name__}.{name}"
    assert callable(_extract_block_key)
    params = inspect.signature(MessageManager._send_initially).parameters
    assert list(params) == ["self", "message", "messageerror_monitor"]


def test_the_example_coap_config_loads():
    from gateway.config import load
    from tests.conftest import REPO

    config = load(str(REPO / "etc" / "coap.conf"))
    coap = [listener for listener in config.listeners if listener.protocol == "coap"]
    assert [(x.port, x.bind_address) for x in coap] == [(5683, "127.0.0.1")]
