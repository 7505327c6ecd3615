"""The Hub: the one in-process pub/sub core behind every protocol (see ``api.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from gateway.hub.api import (
    ALLOWED, READ, SUBSCRIBE, WRITE, AuthMethod, AuthResult, ClientInfo, Denied, Endpoint, Message, Reason,
    RetainHandling, Subscribed, Subscription, as_result,
)
from gateway.hub.deadlines import Deadlines
from gateway.hub.persistence import Journal
from gateway.hub.denials import DenialLog
from gateway.hub.retained import RetainedStore
from gateway.hub.sessions import SLEEP_KEY, Limits, Outgoing, Session
from gateway.hub.sysinfo import Sample, Stats, SysTopics, TopicMeter
from gateway.hub.topics import TopicError, split_shared
from gateway.hub.trie import ShareGroup, SubscriptionTrie


@dataclass(slots=True)
class HubSettings:
    """The hub-side part of the configuration, built by the service layer."""

    limits: Limits = field(default_factory=Limits)
    retain_available: bool = True
    upgrade_outgoing_qos: bool = False
    #: Seconds a session that asked to be kept forever (MQTT 3.1.1's clean session
    #: false) is kept once disconnected; None: forever.
    persistent_client_expiration: int | None = None
    #: Drop a retained message when its publisher may no longer write its topic.
    check_retain_source: bool = False


Authenticator = Callable[[ClientInfo, "bytes | None"], "AuthResult | Deferred[AuthResult]"]
Authorizer = Callable[[ClientInfo, str, str], bool]


def allow_all_authenticate(client: ClientInfo, password: bytes | None) -> AuthResult:
    return ALLOWED


class Hub:
    """Routes messages between sessions; owns sessions, subscriptions and retained messages."""

    log = Logger()

    def __init__(self, settings: HubSettings | None = None, clock: IReactorTime | None = None,
                 journal: Journal | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        self.clock = clock
        self.settings = settings or HubSettings()
        self.stats = Stats()
        self.trie = SubscriptionTrie()
        self.retained_store = RetainedStore()
        self.sessions: dict[str, Session] = {}
        self.sys = SysTopics(self)
        self.deadlines = Deadlines(clock)  # type: ignore[arg-type]
        #: Where durable state changes are reported (gateway.hub.persistence); None:
        #: nothing survives a restart.
        self.journal = journal
        self.denials = DenialLog(self.stats, clock)
        #: Enhanced authentication methods by name (MQTT 5's Authentication Method).
        self.auth_methods: dict[str, AuthMethod] = {}
        self._authenticate: Authenticator = allow_all_authenticate
        self._authorize: Authorizer | None = None
        # None when no rule can deny a read, which keeps deliveries free of calls.
        self._read_check: Authorizer | None = None
        #: Messages per topic while the status page watches (see ``TopicMeter``).
        self.topic_meter: TopicMeter | None = None

    def now(self) -> float:
        """Wall-clock seconds (the reactor's clock), for expiry of sessions and messages."""
        return self.clock.seconds()

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

    def authenticate(self, client: ClientInfo, password: bytes | None) -> AuthResult | Deferred[AuthResult]:
        """``Allowed`` or ``Denied``, or a Deferred firing with one (an authenticator
        answering True/False is read as allowed/``NOT_AUTHORIZED``)."""
        result = self._authenticate(client, password)
        if isinstance(result, Deferred):
            return result.addCallback(as_result)
        return as_result(result)

    def authorize(self, client: ClientInfo, access: str, topic: str) -> bool:
        check = self._authorize
        return True if check is None else check(client, access, topic)

    def can_read(self, client: ClientInfo, topic: str) -> bool:
        """The per-delivery read check (retained messages sent after a subscribe too)."""
        check = self._read_check
        return True if check is None else check(client, READ, topic)

    # sessions --------------------------------------------------------------------

    def session(self, client_id: str) -> Session | None:
        return self.sessions.get(client_id)

    def connect(
        self,
        client: ClientInfo,
        endpoint: Endpoint,
        clean_start: bool,
        expiry: int | None = 0,
        will: Message | None = None,
        will_delay: int = 0,
        will_expiry: int | None = None,
    ) -> tuple[Session, bool]:
        """Attach ``endpoint`` to the client id's session; returns (session, present).

        ``expiry`` is how long the session outlives the connection (0: not at all,
        None: until ``persistent_client_expiration``). A live connection with the same
        id is taken over (closed with ``SESSION_TAKEN_OVER``); as in Mosquitto, its will
        is published only if its session ends or the new connection starts clean. The
        caller acknowledges and then calls ``session.resume(endpoint)``.
        """
        client_id = client.client_id
        journal = self.journal
        # A new connection before the will delay passed: no will (MQTT-3.1.2-8).
        if self.deadlines.cancel(("will", client_id)) and journal is not None:
            journal.will(client_id, None, 0.0, None)
        existing = self.sessions.get(client_id)
        if existing is not None and existing.endpoint is not None:
            old = existing.endpoint
            keep_will = existing.expiry != 0 and not clean_start
            if keep_will:
                existing.will = None
            self.disconnect(existing, graceful=False)
            old.close(Reason.SESSION_TAKEN_OVER)
            existing = self.sessions.get(client_id)
        if existing is not None:
            self.deadlines.cancel(("expiry", existing))
            existing.will = None
            if clean_start:
                self._discard(existing)
                existing = None
        present = existing is not None
        if existing is None:
            session = Session(client, expiry, self)
            self.sessions[client_id] = session
        else:
            session = existing
            session.client = client
            session.expiry = expiry
        session.will = will
        session.will_delay = will_delay
        session.will_expiry = will_expiry
        session.receive_maximum = 0
        session.endpoint = endpoint
        session.disconnected_at = None
        session.connected_at = self.now()
        session.clean_start = clean_start
        if session.extra:
            session.extra.pop(SLEEP_KEY, None)
        if journal is not None:
            self._journal_session(session)
        stats = self.stats
        stats.clients_connected += 1
        if stats.clients_connected > stats.clients_maximum:
            stats.clients_maximum = stats.clients_connected
        return session, present

    def _journal_session(self, session: Session) -> None:
        """Report a session's own fields, starting or stopping its journal as its
        expiry makes it persistent or not."""
        journal = self.journal
        if journal is None:
            return
        if session.expiry != 0:
            if session._journal is None:
                session._journal = journal
                journal.session(session)
                session.journal_all()
            else:
                journal.session(session)
        elif session._journal is not None:
            session._journal = None
            journal.session_ended(session.client_id)

    def set_expiry(self, session: Session, expiry: int | None) -> None:
        """A new session expiry interval (MQTT 5's DISCONNECT may change it)."""
        session.expiry = expiry
        self._journal_session(session)

    def disconnect(self, session: Session, graceful: bool, endpoint: Endpoint | None = None) -> None:
        """Detach the session's endpoint; publish the will unless ``graceful``.

        With ``endpoint`` given, nothing happens unless it is still the attached one, so
        a connection closed by a takeover cannot detach its successor. A will with a
        delay waits for it (or for the end of the session, if sooner).
        """
        if session.endpoint is None or (endpoint is not None and session.endpoint is not endpoint):
            return
        session.endpoint = None
        if session.extra:
            session.extra.pop(SLEEP_KEY, None)
        self.stats.clients_connected -= 1
        self._redistribute_shared(session)
        expiry = self._expiry_of(session)
        will, session.will = session.will, None
        if will is not None and not graceful:
            delay = session.will_delay
            will_expiry = session.will_expiry
            if expiry == 0 and session.clean_start:
                delay = 0  # the session ends now, and with it the delay (MQTT-3.1.3-9)
            elif expiry:
                delay = min(delay, expiry)
            if delay:
                # A session ending now, but started with Clean Start 0, keeps the delay
                # as in Mosquitto: its client means to come back, and may do so in time.
                self.deadlines.schedule(("will", session.client_id), self.now() + delay,
                                        lambda: self._publish_will(session, will, will_expiry))
                if self.journal is not None:
                    will.source = session.client     # whose ACL applies when it goes out
                    self.journal.will(session.client_id, will, self.now() + delay, will_expiry)
            else:
                self._publish_will(session, will, will_expiry)
        if expiry == 0:
            self._discard(session, fire_will=False)
            return
        session.disconnected_at = self.now()
        if session._journal is not None:
            session._journal.session(session)
        if expiry is not None:
            self.deadlines.schedule(("expiry", session), session.disconnected_at + expiry,
                                    lambda: self._expire(session))

    def _expiry_of(self, session: Session) -> int | None:
        if session.expiry is None:
            return self.settings.persistent_client_expiration
        return session.expiry

    def _publish_will(self, session: Session, will: Message, expiry: int | None) -> None:
        if self.deadlines.cancel(("will", session.client_id)) or will.store_id:
            if self.journal is not None:
                self.journal.will(session.client_id, None, 0.0, None)
        if self.authorize(session.client, WRITE, will.topic):
            will.source = session.client
            if expiry is not None:
                will.expires_at = self.now() + expiry  # counted from publication
            self.publish(will)

    def _expire(self, session: Session) -> None:
        if session.endpoint is not None or self.sessions.get(session.client_id) is not session:
            return
        self.log.info("session {client_id} expired", client_id=session.client_id)
        self.stats.clients_expired += 1
        self._discard(session)

    def _discard(self, session: Session, fire_will: bool = True) -> None:
        """End a session: its delayed will goes out now, its state is dropped."""
        if fire_will:
            self.deadlines.fire_now(("will", session.client_id))
        self.deadlines.cancel(("expiry", session))
        if session._journal is not None:
            session._journal.session_ended(session.client_id)
            session._journal = None
        for topic_filter in list(session.subscriptions):
            self._remove_subscription(session, topic_filter)
        session.clear_state()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def end_session(self, session: Session) -> None:
        """Remove an offline session now (administrative action)."""
        if session.endpoint is None:
            self._discard(session)

    def refresh_expiries(self) -> None:
        """Reschedule offline sessions after ``persistent_client_expiration`` changed."""
        for session in list(self.sessions.values()):
            if session.endpoint is not None or session.disconnected_at is None:
                continue
            expiry = self._expiry_of(session)
            if expiry is None:
                self.deadlines.cancel(("expiry", session))
            else:
                self.deadlines.schedule(("expiry", session), session.disconnected_at + expiry,
                                        lambda s=session: self._expire(s))

    def queued_messages(self) -> int:
        return sum(len(s.queue) + len(s.inflight) for s in self.sessions.values())

    # publish ---------------------------------------------------------------------

    def publish_from(self, session: Session, message: Message) -> int | Denied:
        """A client's PUBLISH: ``check_publish``, then ``publish``.

        Returns the number of sessions reached, or why it was refused.
        """
        denied = self.check_publish(session.client, message)
        if denied is not None:
            return denied
        return self.publish(message, session)

    def check_publish(self, client: ClientInfo, message: Message) -> Denied | None:
        """May this client publish this message (ACL, retain availability)? A refusal
        is counted and logged once per client and topic. For channels that publish
        later (a QoS 2 message waits for its PUBREL) or without a session."""
        if message.retain and not self.settings.retain_available:
            return Denied(Reason.RETAIN_NOT_SUPPORTED)
        if not self.authorize(client, WRITE, message.topic):
            self.denials.denied(client, WRITE, message.topic)
            return Denied(Reason.NOT_AUTHORIZED)
        message.source = client
        return None

    def has_subscribers(self, topic: str) -> bool:
        """Whether any subscription matches ``topic`` (MQTT 5's 0x10 is its absence)."""
        subs, groups = self.trie.match(topic)
        return bool(subs or groups)

    def publish(self, message: Message, sender: Session | None = None) -> int:
        """Store the retained copy and deliver to every matching session once."""
        if message.retain and self.settings.retain_available:
            self.retained_store.store(message)
            journal = self.journal
            if journal is not None:
                if message.payload:
                    journal.retained(message)
                else:
                    journal.retained_cleared(message.topic)
        meter = self.topic_meter
        if meter is not None:
            meter.count(message.topic)
        subs, groups = self.trie.deliveries(message.topic)
        reached = 0
        if subs:
            max_qos = message.qos
            upgrade = self.settings.upgrade_outgoing_qos
            authorize = self._read_check
            topic = message.topic
            retained = message.retain
            for session, sub in subs:
                if authorize is not None and not authorize(session.client, READ, topic):
                    continue
                if sub.no_local and session is sender:
                    continue
                reached += 1
                qos = sub.qos
                if qos > max_qos and not upgrade:
                    qos = max_qos
                retain = retained and sub.retain_as_published
                if qos == 0:
                    endpoint = session.endpoint
                    if endpoint is not None:
                        endpoint.send_publish(message, 0, None, False, retain, sub.ids)
                else:
                    session.deliver(message, qos, retain, sub.ids)
        for group in groups:
            if self._deliver_shared(group, message, None):
                reached += 1
        return reached

    def _deliver_shared(self, group: ShareGroup, message: Message, exclude: Session | None) -> bool:
        """Give the message to one member: the next in turn that is online with room in
        its window, else any online member, else a member that will come back."""
        upgrade = self.settings.upgrade_outgoing_qos
        candidates = [(s, sub) for s, sub in group.rotation()
                      if s is not exclude and self.can_read(s.client, message.topic)]
        if not candidates:
            return False
        chosen = next((c for c in candidates if c[0].endpoint is not None
                       and (min(c[1].qos, message.qos) == 0 or c[0].window_open())), None)
        if chosen is None:
            chosen = next((c for c in candidates if c[0].endpoint is not None), candidates[0])
        session, sub = chosen
        qos = sub.qos if upgrade else min(sub.qos, message.qos)
        retain = message.retain and sub.retain_as_published
        session.deliver(message, qos, retain, sub.ids, group if qos else None)
        return True

    def _redistribute_shared(self, session: Session) -> None:
        """Messages of shared subscriptions that a leaving member had not received go
        to another member of their group, if one is online."""
        if not session.inflight and not session.queue:
            return
        for out in session.take_shared():
            group = out.share
            assert group is not None
            others = any(s is not session and s.endpoint is not None for s in group.members)
            if others and self._deliver_shared(group, out.message, session):
                continue
            session.enqueue(out)

    # subscribe -------------------------------------------------------------------

    def subscribe(self, session: Session, topic_filter: str, sub: Subscription) -> Subscribed | Denied:
        """Add a subscription (replacing one with the same filter), after the ACL."""
        try:
            group, inner = split_shared(topic_filter)
        except TopicError as e:
            return Denied(Reason.TOPIC_INVALID, str(e))
        if not 0 <= sub.qos <= 2:
            return Denied(Reason.UNSPECIFIED, "QoS out of range")
        if not self.authorize(session.client, SUBSCRIBE, inner):
            self.denials.denied(session.client, SUBSCRIBE, topic_filter)
            return Denied(Reason.NOT_AUTHORIZED)
        existed = topic_filter in session.subscriptions
        self.trie.add(inner, session, sub, group)
        session.subscribed(topic_filter, sub)
        if session._journal is not None:
            session._journal.subscription(session, topic_filter, sub)
        return Subscribed(topic_filter, sub, existed)

    def subscribe_restored(self, session: Session, topic_filter: str, sub: Subscription) -> None:
        """A subscription read back from the store (no ACL check, nothing journaled)."""
        group, inner = split_shared(topic_filter)
        self.trie.add(inner, session, sub, group)
        session.subscribed(topic_filter, sub)

    def deliver_retained(self, session: Session, subscribed: Subscribed) -> int:
        """Send the retained messages a new subscription matches, as its retain
        handling asks (none for a shared subscription); returns how many."""
        sub = subscribed.subscription
        handling = sub.retain_handling
        if handling is RetainHandling.NEVER or (
            handling is RetainHandling.SEND_IF_NEW and subscribed.existed
        ):
            return 0
        group, inner = split_shared(subscribed.topic_filter)
        if group is not None:
            return 0
        now = self.now()
        upgrade = self.settings.upgrade_outgoing_qos
        check_source = self.settings.check_retain_source
        sent = 0
        for message in self.retained_store.match(inner, now):
            if not self.can_read(session.client, message.topic):
                continue
            source = message.source
            if check_source and source is not None and not self.authorize(source, WRITE, message.topic):
                self.retained_store.clear(message.topic)
                if self.journal is not None:
                    self.journal.retained_cleared(message.topic)
                continue
            qos = sub.qos if upgrade else min(sub.qos, message.qos)
            session.deliver(message, qos, True, sub.ids)
            sent += 1
        return sent

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        """Remove a subscription; False when there was none."""
        if topic_filter not in session.subscriptions:
            return False
        self._remove_subscription(session, topic_filter)
        return True

    def _remove_subscription(self, session: Session, topic_filter: str) -> None:
        session.subscriptions.pop(topic_filter, None)
        if session._journal is not None:
            session._journal.subscription(session, topic_filter, None)
        try:
            group, inner = split_shared(topic_filter)
        except TopicError:
            return
        self.trie.remove(inner, session, group)

    # persistence ---------------------------------------------------------------------

    def durable(self) -> Deferred[None] | None:
        """None when everything reported to the journal is durable, else a Deferred of
        the caller's own, firing once it is (CoAP holds its answers behind it;
        channels with a window of acknowledgements use ``DurableAcks``)."""
        journal = self.journal
        batch = None if journal is None else journal.barrier()
        if batch is None:
            return None
        d: Deferred[None] = Deferred()
        batch.then(lambda: d.callback(None))
        return d

    def restore_will(self, client_id: str, will: Message, client: ClientInfo,
                     publish_at: float, expiry: int | None) -> None:
        """A will that was waiting for its delay when the process stopped."""
        from gateway.hub.sessions import Session

        holder = self.sessions.get(client_id) or Session(client, 0, self)
        self.deadlines.schedule(("will", client_id), publish_at,
                                lambda: self._publish_will(holder, will, expiry))

    def restore_expiry(self, session: Session, crashed: bool) -> None:
        """Timers of a session read back from the store; one that was connected when
        the process stopped lost its connection then (its will goes as for a loss)."""
        if crashed and session.will is not None:
            session.endpoint = _GONE
            self.stats.clients_connected += 1
            self.disconnect(session, graceful=False)
            return
        expiry = self._expiry_of(session)
        if expiry is not None and session.disconnected_at is not None:
            self.deadlines.schedule(("expiry", session), session.disconnected_at + expiry,
                                    lambda: self._expire(session))

    def lose_sleepers(self) -> int:
        """Once the listeners started: sessions restored asleep (``SLEEP_KEY``) that no
        protocol took up, as when their listeners left the config, lost their client
        now (their wills go out). Returns how many."""
        lost = [s for s in self.sessions.values() if s.endpoint is None and s.extra.get(SLEEP_KEY)]
        for session in lost:
            session.endpoint = _GONE
            self.stats.clients_connected += 1
            self.disconnect(session, graceful=False)
        return len(lost)

    # retained ----------------------------------------------------------------------

    def retained(self, topic_filter: str) -> list[Message]:
        return self.retained_store.match(topic_filter, self.now())

    def retained_message(self, topic: str) -> Message | None:
        return self.retained_store.get(topic, self.now())

    # $SYS --------------------------------------------------------------------------

    def publish_sys(self) -> None:
        self.sys.publish()

    def extra_counter(self, name: str, fn: Callable[[], Any]) -> None:
        """Let a protocol add a value under ``$SYS/broker/``."""
        self.stats.extra[name] = fn

    def probe(self, name: str, kind: str, help: str, labels: tuple[str, ...],
              read: Callable[[], Any], source: str = "") -> None:
        """Let a protocol or service offer a family of samples (see ``Stats.probe``)."""
        self.stats.probe(name, kind, help, labels, read, source)

    def status_section(self, name: str, read: Callable[[], Any], source: str = "") -> None:
        """Let a protocol add an item to a section of the status page."""
        self.stats.section(name, read, source)

    def stop(self) -> None:
        """Cancel the hub's timers (at shutdown)."""
        self.deadlines.stop()


class _Gone:
    """The endpoint of a session that was connected when the process stopped."""

    def send_publish(self, *args: Any) -> bool:
        return True

    def send_pubrel(self, packet_id: int) -> None:
        pass

    def close(self, reason: Reason) -> None:
        pass


_GONE = _Gone()

__all__ = ["Hub", "HubSettings", "allow_all_authenticate", "Outgoing", "Sample"]
