"""Authentication and authorization for every transport: the hub-level security chain.

``Security`` is installed once with ``hub.set_security(security.authenticate,
security.authorize)``; the MQTT, MQTT-SN and CoAP channels all reach it through
``hub.authenticate`` and ``hub.authorize``, so one password file and one ACL hold for
every protocol.

Authentication follows Mosquitto 2.0's ``mosquitto_unpwd_check``:

1. listeners with ``use_identity_as_username``/``use_subject_as_username``: the TLS
   client certificate is the credential (the channel put its CN/subject in
   ``client.username``); no certificate, no entry;
2. plugins, in config order; each may accept, refuse or defer (None);
3. the password file: a known user with the right password is accepted, anything
   else given a username is refused; clients without a username defer;
4. if every backend deferred, a client without a username gets in when
   ``allow_anonymous`` allows it; with no backend at all, ``allow_anonymous``
   decides for every client (Mosquitto 2.0 refuses usernames too then).

Failed logins are logged with the peer address, and an address that keeps failing
is answered more and more slowly (``LoginThrottle``).

Enhanced authentication (MQTT 5's AUTH exchange): each policy lists the methods it
offers (``Policy.auth_methods``, built by the service layer: SCRAM from a
``scram_file``, methods from plugins); ``install`` gives the hub one ``OfferedMethod``
per name, which runs the method of the client's listener, so a listener whose scope
lacks a method answers as for an unknown one. Failures count towards the same login
throttle and are logged the same way.

Authorization (``authorize(client, access, topic) -> bool``, synchronous because the
hub calls it per delivered message): a trusted client (a bridge) may do anything, as
Mosquitto lets its bridges; other clients never publish to ``$SYS`` or ``$share``;
then plugins (through their answer cache, see ``gateway.security.plugins``), then the ACL
file; with neither, everything is allowed. With ``per_listener_settings true`` each
listener has its own files and plugins.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

from gateway.hub.api import ALLOWED, AuthContinue, AuthResult, Denied, Reason, as_result
from gateway.logtext import clip

FREE_FAILURES = 3          # failures from one address before answers slow down
BASE_DELAY = 0.5           # seconds, doubled for each further failure
MAX_DELAY = 10.0
FORGET_AFTER = 300.0       # seconds without a failure before an address is forgiven
MAX_TRACKED = 100_000


def listener_key(listener: Any) -> tuple[Any, ...] | None:
    """Listeners are matched across reloads by what they bind, not by object identity."""
    if listener is None:
        return None
    return (getattr(listener, "protocol", "mqtt"), listener.port, listener.bind_address)


def peer_host(peer: str) -> str:
    """``"127.0.0.1:5000"`` -> ``"127.0.0.1"``; ``"::1:5000"`` -> ``"::1"``."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


def _dollar_denied(access: str, topic: str) -> bool:
    """Mosquitto's ``acl__check_dollar``: nobody publishes to ``$SYS`` but a bridge to
    its own ``$SYS/broker/connection/NAME/state``; ``$share/`` is only a subscription
    prefix."""
    if access == "subscribe":
        return False
    if topic.startswith("$share/"):
        return True
    if access != "write" or not topic.startswith("$SYS"):
        return False
    levels = topic.split("/")
    return not (len(levels) == 5 and levels[1] == "broker" and levels[2] == "connection"
                and levels[4] == "state" and levels[3] not in ("+", "#"))


def _dollar_guard(client: Any, access: str, topic: str) -> bool:
    return topic[:1] != "$" or client.trusted or not _dollar_denied(access, topic)


class LoginThrottle:
    """Spaces out login attempts from an address after repeated failures.

    Past ``FREE_FAILURES`` failures, each attempt from that address gets its own slot,
    ``BASE_DELAY`` doubled per further failure (at most ``MAX_DELAY``) after the previous
    one, so parallel connections cannot raise the rate of guesses. A success does not
    reset the count (an attacker with one good account could); time does.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.failures: dict[str, tuple[int, float]] = {}     # host -> (count, last failure)
        self.next_slot: dict[str, float] = {}
        self.delayed = 0                                     # attempts made to wait

    def interval(self, host: str) -> float:
        entry = self.failures.get(host)
        if entry is None:
            return 0.0
        count, last = entry
        if self.clock.seconds() - last > FORGET_AFTER:
            del self.failures[host]
            self.next_slot.pop(host, None)
            return 0.0
        if count < FREE_FAILURES:
            return 0.0
        return min(BASE_DELAY * 2 ** (count - FREE_FAILURES), MAX_DELAY)

    def delay(self, host: str) -> float:
        """Seconds this attempt must wait; reserves its slot."""
        interval = self.interval(host)
        if not interval:
            return 0.0
        self.delayed += 1
        now = self.clock.seconds()
        slot = max(now + interval, self.next_slot.get(host, 0.0))
        self.next_slot[host] = slot + interval
        return slot - now

    def failed(self, host: str) -> None:
        now = self.clock.seconds()
        if len(self.failures) >= MAX_TRACKED:
            self.failures = {h: e for h, e in self.failures.items() if now - e[1] <= FORGET_AFTER}
            self.next_slot = {h: t for h, t in self.next_slot.items() if h in self.failures}
            if len(self.failures) >= MAX_TRACKED:
                self.failures.clear()
                self.next_slot.clear()
        count = self.failures.get(host, (0, now))[0]
        self.failures[host] = (count + 1, now)


@dataclass
class Policy:
    """The security settings of one scope (the whole broker, or one listener), as the
    service layer built them: a password check, an ACL, plugins, enhanced
    authentication methods by name (duck-typed objects from ``gateway.security``)."""

    allow_anonymous: bool
    passwords: Any = None
    acl: Any = None
    plugins: list[Any] = field(default_factory=list)
    auth_methods: dict[str, Any] = field(default_factory=dict)
    #: Listener key -> its own allow_anonymous (Mosquitto 2.1's listener_allow_anonymous;
    #: an HTTP API listener is closed to anonymous clients unless it says otherwise).
    anonymous_by_listener: dict[Any, bool] = field(default_factory=dict)

    def anonymous(self, listener: Any) -> bool:
        """Whether clients without a username get in through ``listener``."""
        if self.anonymous_by_listener:
            return self.anonymous_by_listener.get(listener_key(listener), self.allow_anonymous)
        return self.allow_anonymous

    def __post_init__(self) -> None:
        self.auth_plugins = [p for p in self.plugins if p.has_auth]
        self.acl_plugins = [p for p in self.plugins if p.has_acl]

    @property
    def restricts(self) -> bool:
        return self.acl is not None or bool(self.acl_plugins)


@dataclass
class Policies:
    """Every scope's policy: one for the broker, or one per listener key."""

    per_listener: bool = False
    default: Policy | None = None
    by_listener: dict[Any, Policy] = field(default_factory=dict)

    def all(self) -> list[Policy]:
        return list(self.by_listener.values()) if self.per_listener else [p for p in [self.default] if p]


class Security:
    """The authenticate/authorize pair the hub calls, for every transport."""

    log = Logger()

    def __init__(self, policies: Policies, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.throttle = LoginThrottle(clock)
        self.current = policies
        self.failed: dict[str, int] = {}   # protocol -> failed logins

    @property
    def per_listener(self) -> bool:
        return self.current.per_listener

    @property
    def default(self) -> Policy | None:
        return self.current.default

    def policies(self) -> list[Policy]:
        return self.current.all()

    def policy(self, listener: Any) -> Policy | None:
        if not self.current.per_listener:
            return self.current.default
        return self.current.by_listener.get(listener_key(listener))

    @property
    def restricts(self) -> bool:
        """Whether any ACL or ACL plugin is configured (else every topic is allowed)."""
        return any(p.restricts for p in self.policies())

    def install(self, hub: Any) -> None:
        """Hand the hub the functions and methods it calls; again after each reload."""
        hub.set_security(self.authenticate, self.fast_authorizer(), self.restricts)
        names = sorted({name for policy in self.policies() for name in policy.auth_methods})
        hub.auth_methods = {name: OfferedMethod(self, name) for name in names}
        _installed[hub] = self
        failed = self.failed
        hub.probe("auth_failures", "counter", "Failed logins (MQTT, MQTT-SN, CoAP, HTTP)",
                  ("protocol",), lambda: [((p,), failed.get(p, 0))
                                          for p in sorted({*failed, *hub.stats.traffic, "http"})],
                  "security")
        hub.probe("rate_limited", "counter", "Answers delayed or refused by a rate limit",
                  ("protocol", "limit"), lambda: [(("any", "login_throttle"), self.throttle.delayed)],
                  "security")

    def allows_anonymous(self, listener: Any) -> bool:
        """Whether ``listener`` takes clients without credentials (plugins aside), so a
        transport can ask for credentials first instead of failing a login."""
        policy = self.policy(listener)
        return policy is not None and policy.anonymous(listener)

    def fast_authorizer(self) -> Any:
        """``authorize`` specialised for the common shapes, because the hub calls it for
        every delivery: no ACL at all costs one short call, an ACL file alone skips the
        policy look-up."""
        if self.per_listener:
            return self.authorize
        policy = self.default
        assert policy is not None
        if policy.acl_plugins:
            return self.authorize
        if policy.acl is None:
            return _dollar_guard
        check = policy.acl.check

        def authorize(client: Any, access: str, topic: str) -> bool:
            if client.trusted:
                return True
            if topic[:1] == "$" and _dollar_denied(access, topic):
                return False
            return check(client, access, topic)

        return authorize

    # -- authentication ----------------------------------------------------------------

    def authenticate(self, client: Any, password: bytes | None) -> AuthResult | Deferred[AuthResult]:
        host = peer_host(client.peer)
        delay = self.throttle.delay(host)
        if delay:
            d = task.deferLater(self.clock, delay, self._decide, client, password)
            d.addCallback(lambda result: result if isinstance(result, Deferred) else succeed(result))
            return d.addCallback(self._outcome, client, host)
        result = self._decide(client, password)
        if isinstance(result, Deferred):
            return result.addCallback(self._outcome, client, host)
        return self._outcome(result, client, host)

    def _outcome(self, result: tuple[AuthResult, str], client: Any, host: str) -> AuthResult:
        answer, why = result
        if not answer:
            self.throttle.failed(host)
            self.failed[client.protocol] = self.failed.get(client.protocol, 0) + 1
            self.log.warn(
                "authentication failed for {client_id} (username {username}) from {peer}: {reason}",
                client_id=clip(client.client_id), username=clip(client.username),
                peer=client.peer, reason=why,
            )
        return answer

    def _decide(self, client: Any, password: bytes | None) -> tuple[AuthResult, str] | Deferred[tuple[AuthResult, str]]:
        policy = self.policy(client.listener)
        if policy is None:
            return Denied(Reason.NOT_AUTHORIZED), "no security settings for this listener"
        if client.certificate:
            if client.username is None:
                return Denied(Reason.BAD_CREDENTIALS), "no usable client certificate"
            return ALLOWED, ""
        if password is not None and not password:
            password = None        # Mosquitto reads an empty password as none at all
        if policy.auth_plugins:
            return self._ask_plugins(policy, list(policy.auth_plugins), client, password)
        return self._after_plugins(policy, client, password, used=False)

    def _ask_plugins(self, policy: Policy, remaining: list[Any], client: Any,
                     password: bytes | None) -> Deferred[tuple[AuthResult, str]]:
        plugin = remaining.pop(0)

        def answered(answer: Any) -> Any:
            if answer is None:
                if remaining:
                    return self._ask_plugins(policy, remaining, client, password)
                return self._after_plugins(policy, client, password, used=True)
            result = as_result(answer)
            return result, "" if result else (result.text or f"refused by plugin {plugin.spec.path}")

        def failed(failure: Any) -> tuple[AuthResult, str]:
            self.log.failure("authentication plugin {plugin} failed", failure, plugin=plugin.spec.path)
            return Denied(Reason.SERVER_UNAVAILABLE), f"plugin {plugin.spec.path} failed"

        return plugin.authenticate(client, password).addCallbacks(answered, failed)

    @staticmethod
    def _after_plugins(policy: Policy, client: Any, password: bytes | None, used: bool) -> tuple[AuthResult, str]:
        # Refusals are NOT_AUTHORIZED, as Mosquitto answers them (CONNACK 5 / 0x87).
        refused = Denied(Reason.NOT_AUTHORIZED)
        username = client.username
        if policy.passwords is not None and username is not None:
            verdict = policy.passwords.check(username, password)
            if verdict:
                return ALLOWED, ""
            return refused, "unknown user" if verdict is None else "wrong password"
        anonymous = policy.anonymous(client.listener)
        if policy.passwords is not None or used:
            if username is None:
                return (ALLOWED, "") if anonymous else (refused, "anonymous clients not allowed")
            return refused, "no backend accepted the username"
        if anonymous:
            return ALLOWED, ""
        if username is None:
            return refused, "anonymous clients not allowed"
        return refused, "allow_anonymous is false and there is no password_file or plugin"

    # -- authorization -----------------------------------------------------------------

    def authorize(self, client: Any, access: str, topic: str) -> bool:
        if client.trusted:
            return True
        if topic[:1] == "$" and _dollar_denied(access, topic):
            return False
        policy = self.policy(client.listener)
        if policy is None:
            return False
        for plugin in policy.acl_plugins:
            known, answer = plugin.acl_cached(client, access, topic)
            if not known:
                return False      # being asked; see gateway.security.plugins
            if answer is not None:
                return bool(answer)
        acl = policy.acl
        if acl is None:
            return not policy.acl_plugins
        return acl.check(client, access, topic)

    def authorize_later(self, client: Any, access: str, topic: str) -> Deferred[bool]:
        """The exact answer, waiting for plugins on a cache miss (for SUBSCRIBE/PUBLISH)."""
        policy = self.policy(client.listener)
        if policy is None or not policy.acl_plugins or client.trusted or _dollar_denied(access, topic):
            return succeed(self.authorize(client, access, topic))
        waits = [p.acl_later(client, access, topic) for p in policy.acl_plugins]
        return DeferredList(waits, consumeErrors=True).addCallback(
            lambda _: self.authorize(client, access, topic))

    def needs_wait(self, client: Any, access: str, topic: str) -> bool:
        """True when an ACL plugin has no cached answer yet (use authorize_later)."""
        policy = self.policy(client.listener)
        if policy is None or client.trusted:
            return False
        return any(not p.acl_cached(client, access, topic)[0] for p in policy.acl_plugins)

    # -- reload ------------------------------------------------------------------------

    def replace(self, policies: Policies) -> list[Policy]:
        """Put reloaded policies in force; returns the replaced ones, whose plugins the
        caller closes."""
        old = self.policies()
        self.current = policies
        return old

    def still_allowed(self, client: Any, old: Policy | None) -> bool:
        """Would this connected client still get in? Passwords are not kept, so a user
        whose password file entry changed or vanished is treated as refused; a username
        the password file never vouched for (plugin, certificate, MQTT-SN client list)
        is kept."""
        if client.trusted:
            return True
        policy = self.policy(client.listener)
        if policy is None:
            return False
        if client.certificate:
            return client.username is not None
        if client.auth_method is not None:
            return self._method_still_allows(client, old, policy)
        username = client.username
        if username is None:
            return policy.anonymous(client.listener)
        if client.protocol == "mqttsn":
            return True            # the username comes from mqttsn_client, not credentials
        before = old.passwords.entry_text(username) if old and old.passwords else None
        after = policy.passwords.entry_text(username) if policy.passwords else None
        if before is not None:
            return before == after
        if not policy.passwords and not policy.auth_plugins:
            return policy.anonymous(client.listener)
        return True

    @staticmethod
    def _method_still_allows(client: Any, old: Policy | None, policy: Policy) -> bool:
        """A client of an enhanced method stays while its scope offers the method and,
        for a method with stored entries (SCRAM), its entry is unchanged."""
        name = client.auth_method
        method = policy.auth_methods.get(name)
        if method is None:
            return False
        if not hasattr(method, "entry_text"):
            return True        # a plugin's method: nothing stored to compare
        before = old.auth_methods.get(name) if old else None
        if before is None or not hasattr(before, "entry_text"):
            return False
        entry = before.entry_text(client.username)
        return entry is not None and entry == method.entry_text(client.username)

    def recheck(self, hub: Any, old_policies: dict[Any, Policy | None]) -> int:
        """Disconnect connected clients the reloaded rules no longer let in."""
        kicked = 0
        for session in list(hub.sessions.values()):
            endpoint = session.endpoint
            if endpoint is None:
                continue
            client = session.client
            key = listener_key(client.listener) if self.per_listener else None
            if not self.still_allowed(client, old_policies.get(key)):
                self.log.info(
                    "disconnecting {client_id} from {peer}: no longer authorized after reload",
                    client_id=clip(client.client_id), peer=client.peer,
                )
                hub.disconnect(session, False, endpoint)
                endpoint.close(Reason.NOT_AUTHORIZED)
                kicked += 1
        return kicked

    def snapshot(self) -> dict[Any, Policy | None]:
        """The current policies keyed as ``recheck`` expects."""
        if self.per_listener:
            return dict(self.current.by_listener)
        return {None: self.default}

    def close(self) -> Deferred[Any]:
        return close_policies(self.policies())


class OfferedMethod:
    """An enhanced authentication method as the hub offers it (``hub.auth_methods``):
    each exchange runs the method of the client's scope, found when it starts and kept
    in the state until it ends, so a reload cannot switch methods midway."""

    def __init__(self, security: Security, name: str) -> None:
        self.security = security
        self.name = name

    def start(self, client: Any, data: bytes | None) -> Any:
        policy = self.security.policy(client.listener)
        method = policy.auth_methods.get(self.name) if policy is not None else None
        if method is None:
            return Denied(Reason.BAD_AUTHENTICATION_METHOD, f"{self.name} is not offered here")
        host = peer_host(client.peer)
        delay = self.security.throttle.delay(host)
        if delay:
            d = task.deferLater(self.security.clock, delay, maybeDeferred, method.start, client, data)
        else:
            d = maybeDeferred(method.start, client, data)
        return d.addCallback(self._outcome, method, client)

    def step(self, client: Any, state: Any, data: bytes | None) -> Any:
        method, inner = state
        return maybeDeferred(method.step, client, inner, data).addCallback(self._outcome, method, client)

    def _outcome(self, result: Any, method: Any, client: Any) -> Any:
        if isinstance(result, AuthContinue):
            return AuthContinue(result.data, (method, result.state))
        result = as_result(result)
        if not result:
            self.security.throttle.failed(peer_host(client.peer))
            self.security.log.warn(
                "{method} authentication failed for {client_id} from {peer}: {reason}",
                method=self.name, client_id=clip(client.client_id), peer=client.peer,
                reason=clip(result.text) or "refused",
            )
        return result


_installed: weakref.WeakKeyDictionary[Any, Security] = weakref.WeakKeyDictionary()


def security_of(hub: Any) -> Security | None:
    """The ``Security`` installed in ``hub``, if any (for transports outside the
    protocols, such as the HTTP API, that ask it more than the hub's two calls)."""
    return _installed.get(hub)


def has_acl_plugins(hub: Any) -> bool:
    """Whether ``authorize_later`` can ever return a Deferred for this hub; a channel
    asks once per connection so its per-packet path stays free of the call otherwise."""
    security = _installed.get(hub)
    return security is not None and any(p.acl_plugins for p in security.policies() if p)


def authorize_later(hub: Any, client: Any, access: str, topic: str) -> Deferred[Any] | None:
    """For channels that can hold a packet (SUBSCRIBE, PUBLISH) while a plugin is asked.

    None when every answer the packet needs is cached; otherwise a Deferred that fires
    once they are, after which ``hub.authorize`` answers synchronously. For a WRITE
    that includes READ for each session the message will reach; for a SUBSCRIBE, READ
    for the retained messages it brings. Per-delivery checks never wait.
    """
    security = _installed.get(hub)
    if security is None:
        return None
    needed = [(client, access, topic)]
    if access == "write":
        subs, groups = hub.trie.match(topic)
        readers = [*subs, *(s for group in groups for s in group.members)]
        needed += [(session.client, "read", topic) for session in readers]
    elif access == "subscribe":
        needed += [(client, "read", m.topic) for m in hub.retained(topic)]
    waits = [security.authorize_later(c, a, t) for c, a, t in needed if security.needs_wait(c, a, t)]
    if not waits:
        return None
    return DeferredList(waits, consumeErrors=True)


def close_policies(policies: list[Policy | None]) -> Deferred[Any]:
    return DeferredList([p.close() for policy in policies if policy for p in policy.plugins],
                        consumeErrors=True)
