"""The CoAP resources: ``/ps/{topic}``, ``/mqtt/connection`` and ``/.well-known/core``.

Compatible with EMQX 5's CoAP gateway: ``PUT``/``POST /ps/{topic}?qos=&retain=``
publishes, ``GET`` with Observe=0 subscribes (the topic may be a filter, ``+`` and ``#``
percent-encoded), Observe=1 deregisters; ``clientid``/``username``/``password`` in the
query authenticate a request (connectionless mode) and ``POST /mqtt/connection`` opens
a connection whose ``token`` later requests carry (connection mode), ``expiry=`` gives
a publish a lifetime in seconds. Beyond EMQX: ``GET`` without Observe reads the
retained message, ``DELETE`` clears it. A shared subscription (``$share/GROUP/FILTER``)
cannot be observed: an observer is promised every state change of its resource, and a
share group gives each message to one member only.

``CoAPSite`` replaces aiocoap's ``Site``: requests are answered synchronously in the
call that delivered them (aiocoap's resources start a task per request and copy the
request on the way), blockwise transfer (RFC 7959) wraps every resource here, and
Observe notifications are sent straight into the request's pipe, so notifications
larger than a block are sent blockwise too, which aiocoap's ``ObservableResource``
does not do.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable
from urllib.parse import quote

from aiocoap import Message, error
from aiocoap.blockwise import _extract_block_key
from aiocoap.numbers import constants
from aiocoap.numbers.codes import (
    CHANGED,
    CONTENT,
    CREATED,
    DELETE,
    DELETED,
    GET,
    INTERNAL_SERVER_ERROR,
    POST,
    PUT,
)
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.numbers.types import CON
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.hub.api import (
    READ, SUBSCRIBE, WRITE, ClientInfo, Denied, Message as HubMessage, Reason,
)
from gateway.hub.hub import Hub
from gateway.hub.topics import (
    SHARE_PREFIX,
    TopicError,
    has_wildcard,
    validate_topic_filter,
    validate_topic_name,
)
from gateway.coap.blocks import Block1Assembler, BoundedCache
from gateway.coap.clients import Clients, CoAPClient, Observation, peer_string
from gateway.coap.content import content_format_of, properties_for, representation
from gateway.coap.manager import CoAPStats
from gateway.coap.refusals import ACCESS, AUTHENTICATION, Busy, refusal, refused
from gateway.coap.settings import CoAPSettings, qos_for
from gateway.tls import uses_certificate_identity

#: How long a blockwise body waits for its next block (RFC 7252 MAX_TRANSMIT_WAIT).
BLOCK_LIFETIME = constants.TransportTuning().MAX_TRANSMIT_WAIT
#: Bounds on blockwise state: uploads being assembled, and split responses being served.
UPLOADS, UPLOAD_BYTES = 256, 32 << 20
RESPONSES, RESPONSE_BYTES = 1024, 64 << 20
PS = "ps"
LINK_FORMAT = ContentFormat.LINKFORMAT
#: Payloads up to this size fit any block size a client can ask for (SZX 0).
SMALLEST_BLOCK = 16
#: Largest ``expiry=`` (MQTT 5's four-byte Message Expiry Interval).
MAX_EXPIRY = 0xFFFFFFFF


class TooLarge(error.RequestEntityTooLarge):
    """4.13 with Size1 telling the client the largest body accepted (RFC 7959 2.9.3)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit

    def to_message(self) -> Message:
        m = super().to_message()
        m.opt.size1 = self.limit
        return m


def parse_query(request: Message) -> dict[str, str]:
    query: dict[str, str] = {}
    for item in request.opt.uri_query:
        key, _, value = item.partition("=")
        query[key] = value
    return query


def query_qos(query: dict[str, str], default: int) -> int:
    value = query.get("qos")
    if value is None:
        return default
    if value not in ("0", "1", "2"):
        raise error.BadRequest("qos must be 0, 1 or 2")
    return int(value)


def query_retain(query: dict[str, str]) -> bool:
    value = query.get("retain")
    if value is None or value in ("false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise error.BadRequest("retain must be true or false")


def query_expiry(query: dict[str, str]) -> int | None:
    """EMQX's ``expiry=SECONDS``: the message's lifetime; 0 or none: no expiry (as
    Mosquitto reads a Message Expiry Interval of 0)."""
    value = query.get("expiry")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EXPIRY:
        raise error.BadRequest("expiry must be a number of seconds")
    return int(value) or None


def write_refusal(hub: Hub, client: ClientInfo, topic: str, retain: bool) -> Denied | None:
    """``Hub.publish_from``'s checks for a request that has no session: retain
    availability, then the ACL (a denial counted and logged like any other)."""
    if retain and not hub.settings.retain_available:
        return Denied(Reason.RETAIN_NOT_SUPPORTED)
    if not hub.authorize(client, WRITE, topic):
        hub.denials.denied(client, WRITE, topic)
        return Denied(Reason.NOT_AUTHORIZED)
    return None


def _matches(value: str, pattern: str) -> bool:
    """RFC 6690 query filter: exact, or a prefix when the pattern ends with ``*``."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


class CoAPSite:
    """Answers every request of one CoAP listener (aiocoap ``serversite``)."""

    log = Logger()

    def __init__(self, hub: Hub, settings: CoAPSettings, stats: CoAPStats, clients: Clients,
                 listener: Any = None) -> None:
        self.hub = hub
        self.settings = settings
        self.stats = stats
        self.traffic = hub.stats.traffic_of("coap")  # PUBLISH by QoS: in, out, dropped
        self.clients = clients
        self.listener = listener
        # use_identity_as_username: a request without a DTLS identity is refused.
        self.requires_identity = uses_certificate_identity(listener)
        clients.site = self
        self.block1 = Block1Assembler(BoundedCache(
            UPLOADS, max(UPLOAD_BYTES, 2 * settings.body_limit), BLOCK_LIFETIME))
        self.block2: BoundedCache[Any, Message] = BoundedCache(
            RESPONSES, RESPONSE_BYTES, BLOCK_LIFETIME)
        self._etags = itertools.count(1)

    # entry point -------------------------------------------------------------------

    def render_pipe(self, pipe: Any) -> None:
        """Answer the request in ``pipe`` (called by ``GatewayContext.render_to_pipe``)."""
        request = pipe.request
        try:
            result = self.dispatch(pipe, request)
        except error.RenderableError as e:
            result = e.to_message()
        except Exception:
            self.log.failure("CoAP request from {peer} failed", peer=peer_string(request.remote))
            result = Message(code=INTERNAL_SERVER_ERROR)
        if result is None:
            return  # an observation: the handler answered already
        if isinstance(result, Deferred):
            self._answer_later(pipe, request, result)
            return
        self.reply(pipe, request, result)

    def _answer_later(self, pipe: Any, request: Message, d: Deferred) -> None:
        gone: list[bool] = []
        pipe.on_interest_end(lambda: gone.append(True))

        def failed(f: Any) -> Message:
            if f.check(error.RenderableError):
                return f.value.to_message()
            self.log.failure("CoAP request from {peer} failed", f,
                             peer=peer_string(request.remote))
            return Message(code=INTERNAL_SERVER_ERROR)

        def answer(result: Message | None) -> None:
            if result is not None and not gone:
                self.reply(pipe, request, result)

        d.addErrback(failed).addCallback(answer)

    def dispatch(self, pipe: Any, request: Message) -> Message | Deferred | None:
        opt = request.opt
        block2 = opt.block2
        if block2 is not None and block2.block_number > 0 and request.code is GET:
            return self._later_block(request, block2)
        if opt.block1 is not None:
            request = self._assemble(request)
        path = opt.uri_path
        if path and path[0] == PS:
            return self.pubsub(pipe, request, path)
        if path == ("mqtt", "connection"):
            return self.connection(request)
        if path == (".well-known", "core"):
            return self.well_known(request)
        raise error.NotFound()

    def reply(self, pipe: Any, request: Message, response: Message, last: bool = True) -> None:
        """Send ``response`` (or its first block) as the answer to ``request``."""
        if len(response.payload) > SMALLEST_BLOCK or request.opt.block2 is not None:
            response = self._fit(request, response, None)
        block1 = request.opt.block1
        if block1 is not None and not block1.more:
            response.opt.block1 = block1
        pipe.add_response(response, is_last=last)

    # identity ------------------------------------------------------------------------

    def client_info(self, request: Message, query: dict[str, str],
                    client_id: str) -> tuple[ClientInfo, bytes | None]:
        """Who a request comes from, and its password: the DTLS or OSCORE identity when
        the transport established one (the credential itself, as a certificate is for
        MQTT), else ``username``/``password`` from the query."""
        remote = request.remote
        identity = getattr(remote, "identity", None)
        if identity is not None:
            return ClientInfo(client_id, "coap", peer_string(remote), identity, self.listener,
                              certificate=True), None
        if self.requires_identity:
            raise error.Unauthorized("no identity from the DTLS handshake")
        password = query.get("password")
        return (ClientInfo(client_id, "coap", peer_string(remote), query.get("username"),
                           self.listener),
                password.encode() if password is not None else None)

    def _identify(self, request: Message, query: dict[str, str],
                  then: Callable[[ClientInfo, CoAPClient | None], Any]) -> Any:
        """Authenticate as EMQX does, then call ``then(client_info, connection)``."""
        token = query.get("token")
        if token is not None or self.settings.connection_required:
            client = self.clients.connection(query.get("clientid"), token)
            if client is None:
                raise error.Unauthorized("invalid or missing token and clientid")
            return then(client.info, client)
        info, password = self.client_info(request, query, query.get("clientid", ""))
        result = self.hub.authenticate(info, password)

        def checked(result: Any) -> Any:
            if not result:
                raise refusal(result, AUTHENTICATION)
            return then(info, None)

        if isinstance(result, Deferred):
            return result.addCallback(checked)
        return checked(result)

    # /ps/{topic} ---------------------------------------------------------------------

    def pubsub(self, pipe: Any, request: Message, path: tuple[str, ...]) -> Any:
        topic = "/".join(path[1:])
        query = parse_query(request)
        code = request.code
        if code is PUT or code is POST:
            try:
                validate_topic_name(topic)
            except TopicError as e:
                raise error.BadRequest(f"invalid topic: {e}") from None
            qos = query_qos(query, qos_for(self.settings.publish_qos, request.mtype is CON))
            retain = query_retain(query)
            expiry = query_expiry(query)
            limit = self.settings.message_size_limit
            if limit and len(request.payload) > limit:
                raise TooLarge(limit)
            return self._identify(request, query, lambda info, client: self.publish(
                request, topic, qos, retain, expiry, info, client))
        if code is GET:
            observe = request.opt.observe
            if observe == 0:
                try:
                    validate_topic_filter(topic)
                except TopicError as e:
                    raise error.BadRequest(f"invalid topic filter: {e}") from None
                if topic.startswith(SHARE_PREFIX):
                    raise error.BadRequest("a shared subscription cannot be observed")
                qos = query_qos(query, qos_for(self.settings.subscribe_qos,
                                               request.mtype is CON))
                return self._identify(request, query, lambda info, client: self.observe(
                    pipe, request, topic, qos, query.get("clientid", ""), info, client))
            if observe not in (None, 1):
                raise error.BadRequest("invalid observe value")
            try:
                (validate_topic_filter if observe == 1 else validate_topic_name)(topic)
            except TopicError as e:
                raise error.BadRequest(f"invalid topic: {e}") from None
            return self._identify(request, query, lambda info, client: self.read(
                request, topic, observe == 1, query.get("clientid", ""), info, client))
        if code is DELETE:
            try:
                validate_topic_name(topic)
            except TopicError as e:
                raise error.BadRequest(f"invalid topic: {e}") from None
            return self._identify(request, query, lambda info, client: self.clear(
                topic, info, client))
        raise error.MethodNotAllowed()

    def publish(self, request: Message, topic: str, qos: int, retain: bool, expiry: int | None,
                info: ClientInfo, client: CoAPClient | None) -> Message | Deferred[Message]:
        hub = self.hub
        payload = request.payload
        created = bool(retain and payload and hub.retained_message(topic) is None)
        cf = request.opt.content_format
        message = HubMessage(topic, payload, qos, retain,
                             properties_for(cf) if cf is not None else None,
                             hub.now() + expiry if expiry is not None else None)
        if client is not None:
            result = hub.publish_from(client.session, message)
        else:
            result = write_refusal(hub, info, topic, retain)
            if result is None:
                message.source = info
                hub.publish(message)
        if isinstance(result, Denied):
            raise refusal(result, ACCESS)
        self.traffic.received[qos] += 1
        stats = hub.stats
        stats.messages_received += 1
        stats.bytes_received += len(payload)
        answer = Message(code=CREATED if created else CHANGED)
        barrier = hub.durable() if qos or retain else None
        if barrier is not None:
            # With persistence on, the answer says the message is durable for every
            # persistent session that must receive it (and, retained, for the topic).
            return barrier.addCallback(lambda _: answer)
        return answer

    def read(self, request: Message, topic: str, deregister: bool, key_id: str,
             info: ClientInfo, client: CoAPClient | None) -> Message:
        if deregister:
            owner = client or self.clients.observers.get((request.remote, key_id))
            if owner is not None:
                owner.deregister(topic)
            if has_wildcard(topic):
                return Message(code=CONTENT)
        hub = self.hub
        if not hub.authorize(info, READ, topic):
            raise refused(ACCESS)
        message = hub.retained_message(topic)
        if message is None:
            if deregister:
                return Message(code=CONTENT)
            raise error.NotFound("no retained message")
        return representation(message, hub.now())

    def clear(self, topic: str, info: ClientInfo, client: CoAPClient | None) -> Message | Deferred[Message]:
        hub = self.hub
        denied = write_refusal(hub, info, topic, False)
        if denied is not None:
            raise refusal(denied, ACCESS)
        answer = Message(code=DELETED)
        if hub.retained_message(topic) is None:
            return answer
        message = HubMessage(topic, b"", 0, True)
        message.source = info
        hub.publish(message, client.session if client is not None else None)
        barrier = hub.durable()
        # With persistence on, a deleted retained message stays deleted after a crash.
        return barrier.addCallback(lambda _: answer) if barrier is not None else answer

    def observe(self, pipe: Any, request: Message, topic_filter: str, qos: int, key_id: str,
                info: ClientInfo, client: CoAPClient | None) -> None:
        """Subscribe, answer with the current state, then let the hub send the retained
        messages under a filter as notifications."""
        hub = self.hub
        # The hub checks again when subscribing; asked first, a refused request does
        # not create a session (which would take over a live client with its id).
        if not hub.authorize(info, SUBSCRIBE, topic_filter):
            hub.denials.denied(info, SUBSCRIBE, topic_filter)
            raise refused(ACCESS)
        clients = self.clients
        if client is None:
            if (request.remote, key_id) not in clients.observers and clients.full():
                raise Busy("too many CoAP clients (max_connections)")
            client = clients.observer(info, request.remote)
        result = client.observe(pipe, topic_filter, qos)
        if isinstance(result, Denied):
            raise refusal(result, ACCESS)
        obs, subscribed = result
        first = Message(code=CONTENT)
        wildcard = has_wildcard(topic_filter)
        if not wildcard:
            # An exact topic's retained value is the resource's current state: the
            # registration's own answer, not a notification.
            retained = hub.retained_message(topic_filter)
            if retained is not None and hub.can_read(client.info, topic_filter):
                first = representation(retained, hub.now())
        first = self.prepare_notification(obs, first)
        first.opt.observe = 0
        pipe.add_response(first, is_last=False)
        if wildcard and obs.active:
            hub.deliver_retained(client.session, subscribed)
        return None

    # /mqtt/connection ------------------------------------------------------------------

    def connection(self, request: Message) -> Any:
        query = parse_query(request)
        code = request.code
        client_id = query.get("clientid")
        if code is POST:
            if not client_id:
                raise error.BadRequest("clientid is required")
            if client_id not in self.clients.connections and self.clients.full():
                raise Busy("too many CoAP clients (max_connections)")
            info, password = self.client_info(request, query, client_id)
            result = self.hub.authenticate(info, password)
            if isinstance(result, Deferred):
                return result.addCallback(lambda result: self._open(request, info, result))
            return self._open(request, info, result)
        if code is PUT or code is DELETE:
            client = self.clients.connection(client_id, query.get("token"))
            if client is None:
                raise error.Unauthorized("invalid token or clientid")
            if code is PUT:
                return Message(code=CHANGED)
            client.end("connection closed by the client")
            return Message(code=DELETED)
        raise error.MethodNotAllowed()

    def _open(self, request: Message, info: ClientInfo, result: Any) -> Message:
        if not result:
            raise refusal(result, AUTHENTICATION)
        client = self.clients.open_connection(info, request.remote)
        return Message(code=CREATED, payload=(client.token or "").encode())

    # /.well-known/core -----------------------------------------------------------------

    def well_known(self, request: Message) -> Any:
        if request.code is not GET:
            raise error.MethodNotAllowed()
        accept = request.opt.accept
        if accept is not None and accept != LINK_FORMAT:
            raise error.NotAcceptable()
        query = parse_query(request)
        info, password = self.client_info(request, query, query.get("clientid", ""))
        ok = self.hub.authenticate(info, password)
        if isinstance(ok, Deferred):
            return ok.addCallback(lambda ok: self._links(query, info if ok else None))
        return self._links(query, info if ok else None)

    def _links(self, query: dict[str, str], info: ClientInfo | None) -> Message:
        """RFC 6690 links: </ps>, </mqtt/connection> and readable retained topics."""
        links = [("/ps", ';rt="core.ps"'), ("/mqtt/connection", "")]
        if info is not None:
            hub = self.hub
            for topic in sorted(hub.retained_store.topics()):
                if topic.startswith("$") or not hub.authorize(info, READ, topic):
                    continue
                message = hub.retained_message(topic)
                href = "/ps/" + "/".join(quote(level, safe="!$&'()*,;=:@")
                                         for level in topic.split("/"))
                cf = content_format_of(message) if message is not None else None
                links.append((href, ";obs" + (f";ct={cf}" if cf is not None else "")))
        href_filter = query.get("href")
        if href_filter is not None:
            links = [link for link in links if _matches(link[0], href_filter)]
        rt_filter = query.get("rt")
        if rt_filter is not None:
            links = [link for link in links if _matches(link[1].partition('rt="')[2][:-1],
                                                      rt_filter)]
        payload = ",".join(f"<{href}>{attrs}" for href, attrs in links).encode()
        return Message(code=CONTENT, payload=payload, content_format=LINK_FORMAT)

    # blockwise (RFC 7959) --------------------------------------------------------------

    def _assemble(self, request: Message) -> Message:
        """Feed one Block1 block; the whole request once the last block is in."""
        limit = self.settings.body_limit
        block1 = request.opt.block1
        size1 = request.opt.size1
        if (size1 is not None and size1 > limit) or block1.start + len(request.payload) > limit:
            raise TooLarge(limit)
        return self.block1.feed(request)

    def _later_block(self, request: Message, block2: Any) -> Message:
        try:
            whole = self.block2.get(_extract_block_key(request))
        except KeyError:
            raise error.RequestEntityIncomplete() from None
        return whole._extract_block(block2.block_number, block2.size_exponent,
                                    request.remote.maximum_payload_size)

    def _fit(self, request: Message, response: Message, key: Any) -> Message:
        """The response, or its first block with the whole kept for the next requests."""
        remote = request.remote
        szx = remote.maximum_block_size_exp
        block2 = request.opt.block2
        number = 0
        if block2 is not None:
            szx = min(szx, block2.size_exponent)
            number = block2.block_number
        if len(response.payload) <= min(1 << (szx + 4), remote.maximum_payload_size):
            return response
        response.opt.etag = next(self._etags).to_bytes(4, "big")
        self.block2.put(key if key is not None else _extract_block_key(request), response,
                        len(response.payload))
        return response._extract_block(number, szx, remote.maximum_payload_size)

    def prepare_notification(self, obs: Observation, response: Message) -> Message:
        """A notification larger than a block goes out as its first block (RFC 7959 2.6)."""
        if len(response.payload) <= SMALLEST_BLOCK and obs.request.opt.block2 is None:
            return response
        return self._fit(obs.request, response, obs.block_key)
