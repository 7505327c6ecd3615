"""The Hub: the one in-process pub/sub core behind every protocol (see ``api.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.hub.api import SUBSCRIBE_FAILED, ClientInfo, Endpoint, Message
from gateway.hub.retained import RetainedStore
from gateway.hub.sessions import Limits, Session
from gateway.hub.sysinfo import Stats, SysTopics
from gateway.hub.trie import SubscriptionTrie


@dataclass(slots=True)
class HubSettings:
    """The hub-side part of the configuration."""

    limits: Limits = field(default_factory=Limits)
    retain_available: bool = True
    upgrade_outgoing_qos: bool = False
    persistent_client_expiration: int | None = None


Authenticator = Callable[[ClientInfo, "bytes | None"], "bool | Deferred[bool]"]
Authorizer = Callable[[ClientInfo, str, str], bool]


def allow_all_authenticate(client: ClientInfo, password: bytes | None) -> bool:
    return True


class Hub:
    """Routes messages between sessions; owns sessions, subscriptions and retained messages."""

    log = Logger()

    def __init__(self, settings: HubSettings | None = None) -> None:
        self.settings = settings or HubSettings()
        self.stats = Stats()
        self.trie = SubscriptionTrie()
        self.retained_store = RetainedStore()
        self.sessions: dict[str, Session] = {}
        self.sys = SysTopics(self)
        self._authenticate: Authenticator = allow_all_authenticate
        self._authorize: Authorizer | None = None
        # None when no rule can deny a read, which keeps deliveries free of calls.
        self._read_check: Authorizer | None = None

    # security hooks --------------------------------------------------------------

    def set_security(
        self,
        authenticate: Authenticator,
        authorize: Authorizer | None,
        reads_restricted: bool = True,
    ) -> None:
        """Install the authentication and ACL functions every transport goes through.

        ``reads_restricted=False`` promises that ``authorize`` never denies a read, so
        the hub skips the per-delivery check.
        """
        self._authenticate = authenticate
        self._authorize = authorize
        self._read_check = authorize if reads_restricted else None

    def authenticate(self, client: ClientInfo, password: bytes | None) -> bool | Deferred[bool]:
        return self._authenticate(client, password)

    def authorize(self, client: ClientInfo, access: str, topic: str) -> bool:
        check = self._authorize
        return True if check is None else check(client, access, topic)

    def can_read(self, client: ClientInfo, topic: str) -> bool:
        """The per-delivery read check (retained messages sent after a subscribe too)."""
        check = self._read_check
        return True if check is None else check(client, "read", topic)

    # sessions --------------------------------------------------------------------

    def session(self, client_id: str) -> Session | None:
        return self.sessions.get(client_id)

    def connect(
        self,
        client: ClientInfo,
        endpoint: Endpoint,
        clean: bool,
        will: Message | None = None,
    ) -> tuple[Session, bool]:
        """Attach ``endpoint`` to the client id's session; returns (session, present).

        A live connection with the same id is taken over: it is closed without a clean
        DISCONNECT, so its will is published. The caller sends its acknowledgement and
        then calls ``session.resume(endpoint)`` to redeliver what is pending.
        """
        existing = self.sessions.get(client.client_id)
        if existing is not None and existing.endpoint is not None:
            old = existing.endpoint
            self.disconnect(existing, graceful=False)
            old.takeover()
            existing = self.sessions.get(client.client_id)
        if existing is not None and clean:
            self._discard(existing)
            existing = None
        present = existing is not None
        if existing is None:
            session = Session(client, clean, self.settings.limits, self.stats)
            self.sessions[client.client_id] = session
        else:
            session = existing
            session.client = client
            session.clean = clean
        session.will = will
        session.endpoint = endpoint
        session.disconnected_at = None
        stats = self.stats
        stats.clients_connected += 1
        if stats.clients_connected > stats.clients_maximum:
            stats.clients_maximum = stats.clients_connected
        return session, present

    def disconnect(
        self, session: Session, graceful: bool, endpoint: Endpoint | None = None
    ) -> None:
        """Detach the session's endpoint; publish the will unless ``graceful``.

        With ``endpoint`` given, nothing happens unless it is still the attached one, so
        a connection closed by a takeover cannot detach its successor.
        """
        if session.endpoint is None or (endpoint is not None and session.endpoint is not endpoint):
            return
        session.endpoint = None
        self.stats.clients_connected -= 1
        will, session.will = session.will, None
        if will is not None and not graceful:
            if self.authorize(session.client, "write", will.topic):
                self.publish(will)
        if session.clean:
            self._discard(session)
        else:
            session.disconnected_at = time.monotonic()

    def _discard(self, session: Session) -> None:
        for topic_filter in list(session.subscriptions):
            self.trie.remove(topic_filter, session)
        session.clear_state()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def expire_sessions(self, now: float | None = None) -> int:
        """Drop persistent sessions disconnected for longer than the configured expiration."""
        limit = self.settings.persistent_client_expiration
        if not limit:
            return 0
        now = time.monotonic() if now is None else now
        expired = [
            s
            for s in self.sessions.values()
            if s.endpoint is None and s.disconnected_at is not None and now - s.disconnected_at > limit
        ]
        for s in expired:
            self.log.info("expiring persistent session {client_id}", client_id=s.client_id)
            self._discard(s)
        return len(expired)

    def queued_messages(self) -> int:
        return sum(len(s.queue) + len(s.inflight) for s in self.sessions.values())

    # publish / subscribe -----------------------------------------------------------

    def publish(self, message: Message, sender: Session | None = None) -> int:
        """Store the retained copy and deliver to every matching session once."""
        if message.retain and self.settings.retain_available:
            self.retained_store.store(message)
        subs = self.trie.match(message.topic)
        if not subs:
            return 0
        max_qos = message.qos
        upgrade = self.settings.upgrade_outgoing_qos
        authorize = self._read_check
        topic = message.topic
        reached = 0
        # A copy: a delivery may detach a session, which edits the trie node's dict.
        for session, opts in list(subs.items()):
            if authorize is not None and not authorize(session.client, "read", topic):
                continue
            if opts & 0x04 and session is sender:
                continue
            reached += 1
            qos = opts & 3
            if qos > max_qos and not upgrade:
                qos = max_qos
            retain = message.retain if opts & 0x08 else False
            if qos == 0:
                endpoint = session.endpoint
                if endpoint is not None:
                    endpoint.send_publish(message, 0, None, False, retain)
            else:
                session.deliver(message, qos, retain)
        return reached

    def subscribe(self, session: Session, topic_filter: str, qos: int, options: int = 0) -> int:
        """Add a subscription (replacing one with the same filter); returns the granted QoS."""
        if qos > 2:
            return SUBSCRIBE_FAILED
        opts = (options & ~3) | qos
        self.trie.add(topic_filter, session, opts)
        session.subscriptions[topic_filter] = opts
        return qos

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        session.subscriptions.pop(topic_filter, None)
        return self.trie.remove(topic_filter, session)

    def retained(self, topic_filter: str) -> list[Message]:
        return self.retained_store.match(topic_filter)

    def retained_message(self, topic: str) -> Message | None:
        return self.retained_store.get(topic)

    def publish_sys(self) -> None:
        self.sys.publish()

    def extra_counter(self, name: str, fn: Callable[[], Any]) -> None:
        """Let a protocol add a value under ``$SYS/broker/``."""
        self.stats.extra[name] = fn
