"""The CONNECT handshake of one MQTT connection: checks, authentication (by password
or by an MQTT 5 enhanced method over AUTH packets), then CONNACK.

A ``Handshake`` lives only while a connection is being accepted; the channel keeps
nothing of it afterwards but the session. Refusal codes follow Mosquitto 2.0 where
the protocol leaves a choice, so clients see what they would see there.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.hub.api import WRITE, Allowed, AuthContinue, ClientInfo, Denied, Message, Reason, as_result
from gateway.logtext import clip
from gateway.hub.topics import TopicError, validate_topic_name
from gateway.mqtt import codes
from gateway.mqtt.aliases import InboundAliases, OutboundAliases
from gateway.mqtt.codec import MQTTError, encode
from gateway.mqtt.packets import Auth, ConnAck, Connect, Disconnect
from gateway.mqtt.reasons import ConnAckCode, PacketType, PropertyId, ReasonCode
from gateway.tls import certificate_username, uses_certificate_identity

if TYPE_CHECKING:
    from gateway.mqtt.channel import MQTTChannel

_P = PropertyId
_RC = ReasonCode
NEVER = 0xFFFFFFFF


class Handshake:
    """From CONNECT to CONNACK."""

    log = Logger()

    def __init__(self, ch: MQTTChannel, p: Connect) -> None:
        self.ch = ch
        self.p = p
        self.will: Message | None = None
        self.will_delay = 0
        self.will_expiry: int | None = None
        self.method: Any = None        # the enhanced authentication method, if any
        self.method_state: Any = None
        self.awaiting = False          # an AUTH 0x18 went out; the client's answer is due
        self.assigned = False
        self.receive_maximum = 0

    # checks --------------------------------------------------------------------------

    def begin(self) -> None:
        ch, p = self.ch, self.p
        settings = ch.settings
        level = p.protocol_level
        if level not in settings.protocol_levels:
            self.log.info("refused connection from {peer}: protocol level {protocol_level} not accepted",
                          peer=ch.peer, protocol_level=level)
            ch.level = level
            code = _RC.UNSUPPORTED_PROTOCOL_VERSION if level == 5 else ConnAckCode.UNACCEPTABLE_PROTOCOL_VERSION
            self._refuse_code(code, None)
            return
        ch.level = level
        ch.bridge = p.bridge
        props = p.properties
        client_id = p.client_id
        if not client_id:
            if level == 3 or (level == 4 and not p.clean_session) or not settings.allow_zero_length_clientid:
                self._refuse_code(ConnAckCode.IDENTIFIER_REJECTED if level < 5 else _RC.UNSPECIFIED_ERROR,
                                  "zero-length client id")
                return
            client_id = settings.auto_id_prefix + str(uuid.uuid4()).upper()  # as Mosquitto: 36 characters
            self.assigned = True
        elif level == 3 and len(client_id) > 23:
            self._refuse_code(ConnAckCode.IDENTIFIER_REJECTED, "client id longer than 23 characters")
            return
        ch.keepalive = p.keepalive
        if settings.max_keepalive < 65535 and (p.keepalive > settings.max_keepalive or p.keepalive == 0):
            if level < 5:
                self._refuse_code(ConnAckCode.IDENTIFIER_REJECTED, "keepalive above max_keepalive")
                return
            ch.keepalive = settings.max_keepalive  # announced as Server Keep Alive
        if p.will is not None and not self._read_will():
            return
        if level == 5:
            self.receive_maximum = props.get(_P.RECEIVE_MAXIMUM, 0)
            ch.max_out = props.get(_P.MAXIMUM_PACKET_SIZE, 0)
            alias_max = props.get(_P.TOPIC_ALIAS_MAXIMUM, 0)
            if alias_max:
                ch.aliases_out = OutboundAliases(alias_max)
            if settings.max_topic_alias:
                ch.aliases_in = InboundAliases(settings.max_topic_alias)
            ch.problem_info = props.get(_P.REQUEST_PROBLEM_INFORMATION, 1) == 1
        # On a use_identity_as_username listener the TLS certificate names the client.
        username = certificate_username(ch.link, ch.listener, p.username)
        ch.client = ClientInfo(client_id, "mqtt", ch.peer, username, ch.listener,
                               uses_certificate_identity(ch.listener))
        from gateway.mqtt.channel import AUTHENTICATING

        ch.state = AUTHENTICATING
        method_name = props.get(_P.AUTHENTICATION_METHOD) if level == 5 else None
        if method_name is None and level == 5 and _P.AUTHENTICATION_DATA in props:
            ch.protocol_error(MQTTError("Authentication Data without a method", _RC.PROTOCOL_ERROR))
            return
        if method_name is not None:
            self.method = ch.hub.auth_methods.get(method_name)
            if self.method is None:
                self._refuse(Denied(Reason.BAD_AUTHENTICATION_METHOD, f"unknown method {method_name!r}"))
                return
            self._run(self.method.start, ch.client, props.get(_P.AUTHENTICATION_DATA))
            return
        self._run(ch.hub.authenticate, ch.client, p.password)

    def _read_will(self) -> bool:
        ch, p = self.ch, self.p
        settings = ch.settings
        w = p.will
        assert w is not None
        v5 = ch.level == 5
        topic = settings.mount_point + w.topic
        try:
            validate_topic_name(topic)
        except TopicError as e:
            ch.protocol_error(MQTTError(f"will topic: {e}", _RC.TOPIC_NAME_INVALID))
            return False
        if w.retain and not settings.retain_available:
            if v5:
                self._refuse_code(_RC.RETAIN_NOT_SUPPORTED, "will retain not available")
            else:
                ch.protocol_error(MQTTError("will retain not available", _RC.RETAIN_NOT_SUPPORTED))
            return False
        if w.qos > settings.max_qos:
            if v5:
                self._refuse_code(_RC.QOS_NOT_SUPPORTED, "will QoS above max_qos")
            else:
                ch.protocol_error(MQTTError("will QoS above max_qos", _RC.QOS_NOT_SUPPORTED))
            return False
        limit = settings.message_size_limit
        if limit and len(w.payload) > limit:
            self._refuse_code(_RC.PACKET_TOO_LARGE if v5 else ConnAckCode.NOT_AUTHORIZED,
                              "will payload above message_size_limit")
            return False
        props = w.properties
        if v5 and props.get(_P.PAYLOAD_FORMAT_INDICATOR) == 1 and not codes.valid_utf8(w.payload):
            self._refuse_code(_RC.PAYLOAD_FORMAT_INVALID, "will payload is not UTF-8")
            return False
        self.will = Message(topic, w.payload, w.qos, w.retain, codes.hub_properties(props))
        self.will_delay = props.get(_P.WILL_DELAY_INTERVAL, 0) if props else 0
        self.will_expiry = props.get(_P.MESSAGE_EXPIRY_INTERVAL) if props else None
        return True

    # authentication ----------------------------------------------------------------

    def _run(self, fn: Any, *args: Any) -> None:
        d = maybeDeferred(fn, *args)
        d.addCallbacks(self._answered, self._backend_failed)
        d.addErrback(self._internal_error)

    def _backend_failed(self, failure: Failure) -> None:
        self.log.failure("authentication backend failed", failure)
        self._answered(Denied(Reason.SERVER_UNAVAILABLE))

    def _internal_error(self, failure: Failure) -> None:
        self.log.failure("internal error while accepting {peer}", failure, peer=self.ch.peer)
        self.ch._close()

    def _answered(self, result: Any) -> None:
        from gateway.mqtt.channel import AUTHENTICATING

        if self.ch.state != AUTHENTICATING or self.ch.handshake is not self:
            return
        if isinstance(result, AuthContinue) and self.method is not None:
            self.method_state = result.state
            self.awaiting = True
            self.ch._write(encode(Auth(_RC.CONTINUE_AUTHENTICATION, self._auth_props(result.data)), 5))
            return
        if isinstance(result, AuthContinue):      # only a method may ask for another round
            result = Denied(Reason.UNSPECIFIED, "authentication backend asked for another round")
        result = as_result(result)
        if not result:
            self._refuse(result)
            return
        self._accept(result)

    def packet(self, p: Any) -> None:
        """A packet before CONNACK that is not queued: any AUTH, and everything from a
        client using an enhanced method, which may send only AUTH and DISCONNECT until
        CONNACK (MQTT-3.1.2-30)."""
        if type(p) is Auth:
            self.auth_packet(p)
        elif type(p) is Disconnect:
            self.ch._close()
        else:
            self.ch.protocol_error(MQTTError(f"{type(p).__name__} during enhanced authentication",
                                             _RC.PROTOCOL_ERROR))

    def auth_packet(self, p: Auth) -> None:
        """The client's next step of an enhanced authentication."""
        if self.method is None or not self.awaiting:
            self.ch.protocol_error(MQTTError("unexpected AUTH", _RC.PROTOCOL_ERROR))
            return
        if p.reason_code != _RC.CONTINUE_AUTHENTICATION or p.properties.get(_P.AUTHENTICATION_METHOD) != self.method.name:
            self.ch.protocol_error(MQTTError("AUTH with another method or reason", _RC.PROTOCOL_ERROR))
            return
        self.awaiting = False
        self._run(self.method.step, self.ch.client, self.method_state, p.properties.get(_P.AUTHENTICATION_DATA))

    def _auth_props(self, data: bytes | None) -> dict[int, Any]:
        props: dict[int, Any] = {_P.AUTHENTICATION_METHOD: self.method.name}
        if data:
            props[_P.AUTHENTICATION_DATA] = data
        return props

    # outcome -----------------------------------------------------------------------

    def _refuse(self, denied: Denied) -> None:
        ch = self.ch
        client = ch.client
        self.log.info(
            "refused {client_id} from {peer}: {reason}",
            client_id=clip(client.client_id) if client else None, peer=ch.peer,
            reason=denied.text or denied.reason.value,
        )
        if ch.level == 5:
            props: dict[int, Any] = {}
            if denied.text and ch.problem_info:
                props[_P.REASON_STRING] = denied.text
            if denied.user_properties:
                props[_P.USER_PROPERTY] = list(denied.user_properties)
            ch._write(self._connack_v5(codes.v5_code(denied.reason), False, props))
        else:
            ch._write(encode(ConnAck(codes.connack_v3(denied.reason))))
        ch._close()

    def _refuse_code(self, code: int, why: str | None) -> None:
        ch = self.ch
        if why:
            self.log.info("refused connection from {peer}: {why}", peer=ch.peer, why=why)
        ch._write(encode(ConnAck(code), ch.level))
        ch._close()

    def _accept(self, result: Allowed) -> None:
        ch, p = self.ch, self.p
        client = ch.client
        assert client is not None
        if result.username is not None:
            client.username = result.username
        if self.method is not None:
            client.auth_method = self.method.name
        will = self.will
        if will is not None and not ch.hub.authorize(client, WRITE, will.topic):
            self._refuse(Denied(Reason.NOT_AUTHORIZED, "will topic not authorized"))
            return
        level = ch.level
        if level == 5:
            interval = p.properties.get(_P.SESSION_EXPIRY_INTERVAL, 0)
            expiry: int | None = None if interval == NEVER else interval
            connack_props = self._connack_props(result)
            if ch.max_out and len(self._connack_v5(0, False, connack_props)) > ch.max_out:
                # Nothing we could send fits (as Mosquitto: no CONNACK, the connection closes).
                self.log.info("refused {client_id} from {peer}: CONNACK above its Maximum Packet Size",
                              client_id=clip(client.client_id), peer=ch.peer)
                ch._close()
                return
        else:
            expiry = 0 if p.clean_session else None
        session, present = ch.hub.connect(client, ch, p.clean_session, expiry, will, self.will_delay,
                                          self.will_expiry)
        if level == 5:
            session.receive_maximum = self.receive_maximum
            ch._write(self._connack_v5(0, present, connack_props))
        else:
            ch._write(encode(ConnAck(0, present and level == 4)))
        if ch.settings.verbose:
            self.log.info(
                "client {client_id} connected from {peer} (level {protocol_level}, clean {clean}, keepalive {keepalive})",
                client_id=clip(client.client_id), peer=ch.peer, protocol_level=level,
                clean=p.clean_session, keepalive=ch.keepalive,
            )
        if self.method is not None:
            ch.auth_method = self.method
        ch.connected(session)

    def _connack_v5(self, code: int, present: bool, props: dict[int, Any]) -> bytes:
        """A level 5 CONNACK within the client's Maximum Packet Size: the Reason String
        and User Properties go first when it would not be (MQTT-3.2.2-19, -20)."""
        data = encode(ConnAck(code, present, props), 5)
        limit = self.ch.max_out
        if limit and len(data) > limit:
            props = {k: v for k, v in props.items() if k not in (_P.REASON_STRING, _P.USER_PROPERTY)}
            data = encode(ConnAck(code, present, props), 5)
        return data

    def _connack_props(self, result: Allowed) -> dict[int, Any]:
        """What the server announces, in Mosquitto's order (only what differs from
        the protocol's defaults, plus the two Mosquitto always sends)."""
        ch, p = self.ch, self.p
        settings = ch.settings
        props: dict[int, Any] = {}
        if settings.max_topic_alias:
            props[_P.TOPIC_ALIAS_MAXIMUM] = settings.max_topic_alias
        if ch.keepalive != p.keepalive:
            props[_P.SERVER_KEEP_ALIVE] = ch.keepalive
        if self.assigned:
            props[_P.ASSIGNED_CLIENT_IDENTIFIER] = ch.client.client_id  # type: ignore[union-attr]
        if self.method is not None:
            props[_P.AUTHENTICATION_METHOD] = self.method.name
            if result.auth_data:
                props[_P.AUTHENTICATION_DATA] = result.auth_data
        if result.user_properties:
            props[_P.USER_PROPERTY] = list(result.user_properties)
        if not settings.retain_available:
            props[_P.RETAIN_AVAILABLE] = 0
        if settings.max_packet_size:
            props[_P.MAXIMUM_PACKET_SIZE] = settings.max_packet_size
        if settings.receive_maximum:
            props[_P.RECEIVE_MAXIMUM] = settings.receive_maximum
        if settings.max_qos != 2:
            props[_P.MAXIMUM_QOS] = settings.max_qos
        return props


class Reauthentication:
    """AUTH 0x19 from a connected level 5 client: the CONNECT's method runs again while
    the connection goes on. A failure ends the connection with DISCONNECT."""

    log = Logger()

    def __init__(self, ch: MQTTChannel) -> None:
        self.ch = ch
        self.method = ch.auth_method
        self.method_state: Any = None
        self.started = False           # AUTH 0x19 seen
        self.awaiting = False          # an AUTH 0x18 went out; the client's answer is due

    def auth_packet(self, p: Auth) -> None:
        ch = self.ch
        name = p.properties.get(_P.AUTHENTICATION_METHOD)
        if self.method is None or name != self.method.name:
            self._protocol_error("AUTH without the CONNECT's authentication method")
            return
        data = p.properties.get(_P.AUTHENTICATION_DATA)
        if p.reason_code == _RC.RE_AUTHENTICATE and not self.started:
            self.started = True
            d = maybeDeferred(self.method.start, ch.client, data)
        elif p.reason_code == _RC.CONTINUE_AUTHENTICATION and self.awaiting:
            self.awaiting = False
            d = maybeDeferred(self.method.step, ch.client, self.method_state, data)
        else:
            self._protocol_error(f"unexpected AUTH reason code {p.reason_code:#04x}")
            return
        d.addErrback(self._backend_failed)
        d.addCallback(self._answered)
        d.addErrback(self._internal_error)

    def _protocol_error(self, why: str) -> None:
        self.ch.protocol_error(MQTTError(why, _RC.PROTOCOL_ERROR), PacketType.AUTH)

    def _backend_failed(self, failure: Failure) -> Denied:
        self.log.failure("re-authentication backend failed", failure)
        return Denied(Reason.SERVER_UNAVAILABLE)

    def _internal_error(self, failure: Failure) -> None:
        self.log.failure("internal error while re-authenticating {peer}", failure, peer=self.ch.peer)
        self.ch._close()

    def _answered(self, result: Any) -> None:
        ch = self.ch
        if ch.handshake is not self:
            return
        props: dict[int, Any] = {_P.AUTHENTICATION_METHOD: self.method.name}
        if isinstance(result, AuthContinue):
            self.method_state = result.state
            self.awaiting = True
            if result.data:
                props[_P.AUTHENTICATION_DATA] = result.data
            ch._write(encode(Auth(_RC.CONTINUE_AUTHENTICATION, props), 5))
            return
        ch.handshake = None
        result = as_result(result)
        if result and result.username is not None and result.username != ch.client.username:
            result = Denied(Reason.NOT_AUTHORIZED, "re-authenticated as another user")
        if not result:
            self.log.info("re-authentication of {client_id} failed: {reason}",
                          client_id=clip(ch.client.client_id), reason=clip(result.text) or result.reason.value)
            ch.send_disconnect(codes.v5_code(result.reason))
            ch._close()
            return
        if result.auth_data:
            props[_P.AUTHENTICATION_DATA] = result.auth_data
        ch._write(encode(Auth(0, props), 5))
