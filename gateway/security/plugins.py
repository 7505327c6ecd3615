"""Authentication/ACL plugins: ``plugin PATH_OR_MODULE`` and ``plugin_opt_NAME VALUE``.

The interface
-------------
A plugin is a Python module (``plugins.http_auth``) or file (``/etc/x/auth.py``)
with a factory::

    def make_plugin(options: dict[str, str]) -> plugin

``options`` holds the ``plugin_opt_*`` lines that follow the ``plugin`` line, without
the prefix. The returned object may define any of these methods; a missing one means
"no opinion" (the next backend decides):

``authenticate(client, password) -> answer | Deferred[answer]``
    ``client`` is a ``gateway.hub.api.ClientInfo`` (client_id, protocol, peer,
    username), ``password`` bytes or None. True (or ``Allowed(user_properties=...)``)
    lets the client in, False (or ``Denied(Reason.X, text, user_properties)``) refuses
    it, None defers to the next plugin, then to the password file, then to
    ``allow_anonymous`` for clients without a username. Each protocol turns the
    ``Reason`` into its own code; MQTT 5 clients also get the text as Reason String and
    the user properties.
``auth_methods() -> list of gateway.hub.api.AuthMethod``
    Enhanced authentication methods (MQTT 5 AUTH) this plugin offers, asked once at
    load; a name may be offered by one backend of a scope only.
``acl_check(client, access, topic) -> bool | None | Deferred[bool | None]``
    ``access`` is ``"read"``, ``"write"`` or ``"subscribe"`` (then ``topic`` is a
    filter). None defers to the next plugin, then to the ACL file.
``close() -> None | Deferred``
    Called when the plugin is replaced (reload) or the gateway stops.

Errors raised (or failed Deferreds) count as a refusal, are logged and are not cached.

Why ACL answers are cached
--------------------------
The hub checks READ for every message it delivers and must answer synchronously: a
slow backend cannot hold up a fan-out to thousands of sessions. So ``PluginAcl``
keeps every answer for ``acl_cache_seconds`` (a ``plugin_opt_``, default 30):

* a cached answer is returned at once;
* a plugin that answers synchronously (a bool, or an already-fired Deferred, as the
  SQLite backend does) is used and cached at once, so it never misses;
* otherwise the query is started, the check answers *deny* while it runs, and the
  answer is cached when it arrives. ``gateway.hub.auth.authorize_later`` waits for it
  instead; channels use it where waiting is possible. Before a PUBLISH goes to the
  hub it also asks READ for every session subscribed to the topic, and before a
  SUBSCRIBE is answered READ for the retained messages it will receive, so deliveries
  find their answers cached and nothing is dropped for want of one;
* an expired answer is still used while a refresh query runs, so a busy topic never
  falls back to the miss path (a revoked right can thus last one refresh longer).

Queries in flight are shared, so a burst of messages on one topic asks the backend once.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.errors import ConfigError

DEFAULT_ACL_CACHE_SECONDS = 30.0
MAX_CACHED = 100_000


@dataclass
class PluginSpec:
    """One ``plugin`` line and its options, as the config parser records them."""

    path: str
    options: dict[str, str] = field(default_factory=dict)
    source: tuple[str, int] = ("<config>", 0)


def _import(path: str) -> Any:
    if path.endswith(".py") or os.sep in path:
        if not os.path.exists(path):
            raise ImportError(f"no such file {path!r}")
        name = "mqttgateway_plugin_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(path)


def load_plugin(spec: PluginSpec) -> Any:
    """Import and instantiate; ConfigError at the ``plugin`` line on any failure."""
    path, line = spec.source
    try:
        module = _import(spec.path)
        factory = getattr(module, "make_plugin", None)
        if factory is None:
            raise ImportError(f"{spec.path} has no make_plugin(options)")
        return factory(dict(spec.options))
    except ConfigError as e:
        raise ConfigError(f"{spec.path}: {e.reason}", path, line, "plugin") from None
    except Exception as e:  # a plugin may fail in any way; report it at its line
        raise ConfigError(f"cannot load {spec.path}: {e}", path, line, "plugin") from None


def _cache_seconds(options: dict[str, str], source: tuple[str, int]) -> float:
    text = options.get("acl_cache_seconds")
    if text is None:
        return DEFAULT_ACL_CACHE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(f"expected a number of seconds, got {text!r}", source[0], source[1],
                          "plugin_opt_acl_cache_seconds")
    return value


class LoadedPlugin:
    """A plugin object plus the synchronous ACL cache in front of it."""

    log = Logger()

    def __init__(self, spec: PluginSpec, obj: Any, clock: Any) -> None:
        self.spec = spec
        self.obj = obj
        self.clock = clock
        self.has_auth = callable(getattr(obj, "authenticate", None))
        self.has_acl = callable(getattr(obj, "acl_check", None))
        self.ttl = _cache_seconds(spec.options, spec.source)
        self._answers: dict[tuple[Any, ...], tuple[bool | None, float]] = {}
        self._inflight: dict[tuple[Any, ...], Deferred[bool | None]] = {}
        self._last_report = float("-inf")
        self._unreported = 0

    @classmethod
    def load(cls, spec: PluginSpec, clock: Any) -> LoadedPlugin:
        return cls(spec, load_plugin(spec), clock)

    def authenticate(self, client: Any, password: bytes | None) -> Deferred[bool | None]:
        return _as_deferred(self.obj.authenticate, client, password)

    def auth_methods(self) -> list[Any]:
        """The plugin's enhanced authentication methods, checked for the interface;
        ConfigError at the ``plugin`` line otherwise."""
        offer = getattr(self.obj, "auth_methods", None)
        if offer is None:
            return []
        path, line = self.spec.source
        try:
            methods = list(offer())
        except Exception as e:  # a plugin may fail in any way; report it at its line
            raise ConfigError(f"{self.spec.path}: auth_methods() failed: {e}", path, line, "plugin") from None
        for method in methods:
            if not (isinstance(getattr(method, "name", None), str) and callable(getattr(method, "start", None))
                    and callable(getattr(method, "step", None))):
                raise ConfigError(f"{self.spec.path}: auth_methods() must return objects with "
                                  "name, start() and step()", path, line, "plugin")
        return methods

    # -- ACL -------------------------------------------------------------------------

    def acl_cached(self, client: Any, access: str, topic: str) -> tuple[bool, bool | None]:
        """(known, answer): a synchronous look-up that starts a query on a miss."""
        key = (client.username, client.client_id, access, topic)
        hit = self._answers.get(key)
        if hit is not None and hit[1] > self.clock.seconds():
            return True, hit[0]
        d = self._query(key, client, access, topic)
        if d.called:
            result: list[Any] = []
            d.addBoth(result.append)
            value = result[0]
            if not isinstance(value, Failure):
                return True, value
            return True, False
        if hit is not None:
            return True, hit[0]       # expired: still used while the refresh runs
        return False, None

    def acl_later(self, client: Any, access: str, topic: str) -> Deferred[bool | None]:
        """The answer, waiting for the backend on a miss."""
        known, answer = self.acl_cached(client, access, topic)
        if known:
            return succeed(answer)
        key = (client.username, client.client_id, access, topic)
        d: Deferred[bool | None] = Deferred()
        self._inflight[key].addBoth(lambda r: (d.callback(r if not isinstance(r, Failure) else False), r)[1])
        return d

    def _query(self, key: tuple[Any, ...], client: Any, access: str, topic: str) -> Deferred[bool | None]:
        pending = self._inflight.get(key)
        if pending is not None:
            return pending
        d = _as_deferred(self.obj.acl_check, client, access, topic)

        def store(answer: Any) -> Any:
            self._inflight.pop(key, None)
            if isinstance(answer, Failure):
                self._report(answer)
                return False
            if len(self._answers) >= MAX_CACHED:
                self._answers.clear()
            if self.ttl > 0:
                self._answers[key] = (answer, self.clock.seconds() + self.ttl)
            return answer

        if not d.called:
            self._inflight[key] = d
        d.addBoth(store)
        return d

    def _report(self, failure: Failure) -> None:
        """A failed check is refused and not cached; logged at most every 10 seconds,
        since with a backend down it would otherwise be logged per message."""
        now = self.clock.seconds()
        if now - self._last_report < 10.0:
            self._unreported += 1
            return
        self.log.warn("ACL plugin {plugin} failed: {error} ({more} more since the last report)",
                      plugin=self.spec.path, error=failure.getErrorMessage(), more=self._unreported)
        self._last_report, self._unreported = now, 0

    def forget(self) -> None:
        self._answers.clear()

    def close(self) -> Deferred[Any]:
        closer: Callable[[], Any] | None = getattr(self.obj, "close", None)
        if closer is None:
            return succeed(None)
        return _as_deferred(closer)


def _as_deferred(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    from twisted.internet.defer import maybeDeferred

    return maybeDeferred(fn, *args)
