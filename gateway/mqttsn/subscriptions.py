"""SUBSCRIBE and UNSUBSCRIBE from an MQTT-SN client (handlers of ``MQTTSNChannel``).

A topic name subscribed by name is registered and its id given in the SUBACK. With
persistence on, a persistent session's SUBACK and UNSUBACK wait for the commit of
what they report (``DurableAcks.run``), and the retained messages a subscription
brings follow its SUBACK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.hub.api import Denied, Subscription
from gateway.hub.topics import has_wildcard, split_shared
from gateway.mqttsn.codec import ReturnCode, SubAck, Subscribe, TopicIdType, UnsubAck, Unsubscribe, encode
from gateway.mqttsn.reasons import return_code
from gateway.mqttsn.registry import register, registry_of, subscription_topic

if TYPE_CHECKING:
    from gateway.hub.sessions import Session

#: The handlers' ``ch``: an ``MQTTSNChannel`` (not imported: the channel imports this).
MQTTSNChannel = Any


def on_subscribe(ch: MQTTSNChannel, p: Subscribe) -> None:
    hub = ch.ctx.hub
    session = ch.session
    assert session is not None
    name, topic_id, code = subscription_topic(p.topic_type, p.topic, ch.ctx.predefined)
    if name is None or p.qos < 0:
        if name is not None:
            code = ReturnCode.NOT_SUPPORTED
        ch.send(encode(SubAck(topic_id, p.msg_id, code, 0)))
        return
    # A topic name subscribed by name gets its topic id in the SUBACK; a filter
    # (wildcards, or a shared subscription) matches topics registered at delivery.
    registry = None
    if p.topic_type == TopicIdType.NORMAL and not has_wildcard(name) and split_shared(name)[0] is None:
        registry = registry_of(session, ch.ctx.settings.max_topics)
        if not registry.has_room_for(name):
            ch.send(encode(SubAck(0, p.msg_id, ReturnCode.CONGESTION, 0)))
            return
    result = hub.subscribe(session, name, Subscription(p.qos))
    if not result:
        assert isinstance(result, Denied)
        ch.send(encode(SubAck(topic_id, p.msg_id, return_code(result), 0)))
        return
    if registry is not None:
        topic_id = register(session, ch.ctx.settings.max_topics, name) or 0
        ch.ctx.counters.registrations += 1
    _answer(ch, session, encode(SubAck(topic_id, p.msg_id, ReturnCode.ACCEPTED, result.qos)), result)


def on_unsubscribe(ch: MQTTSNChannel, p: Unsubscribe) -> None:
    session = ch.session
    assert session is not None
    name, _, _ = subscription_topic(p.topic_type, p.topic, ch.ctx.predefined)
    if name is not None:
        ch.ctx.hub.unsubscribe(session, name)
    _answer(ch, session, encode(UnsubAck(p.msg_id)), None)


def _answer(ch: MQTTSNChannel, session: Session, data: bytes, granted: Any) -> None:
    """A SUBACK (then the retained messages ``granted`` brings) or an UNSUBACK. A
    persistent session's waits for the commit of what it reports (and of the
    registration), as its REGACK does, so a crash cannot take it back."""
    if session.clean:
        _answered(ch, session, data, granted)
    else:
        ch.acks.run(lambda: _answered(ch, session, data, granted))


def _answered(ch: MQTTSNChannel, session: Session, data: bytes, granted: Any) -> None:
    if ch.session is not session:
        return  # the client went away meanwhile
    ch.send(data)
    if granted is not None:
        ch.ctx.hub.deliver_retained(session, granted)
