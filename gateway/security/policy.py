"""Builds the hub's security policies from the configuration (files, plugins).

The hub reads no configuration: this module loads what the config names, reporting
a file that cannot be used at the line that names it, and hands ``gateway.hub.auth``
finished ``Policy`` objects.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Config, Listener, anonymous_allowed
from gateway.errors import ConfigError
from gateway.hub.auth import Policies, Policy, Security, close_policies, listener_key
from gateway.psk import PskFile
from gateway.security.acl import AclFile
from gateway.security.passwords import PasswordFile
from gateway.security.plugins import LoadedPlugin, PluginSpec
from gateway.security.scram import ScramFile, ScramMethod


def _scope_settings(config: Config, listener: Listener | None) -> Any:
    return listener if (config.per_listener_settings and listener is not None) else config


def _load_named(scope: Any, key: str, load: Any) -> Any:
    """Load the file a key names; a file that cannot be read at all is reported at the
    config line that names it, a bad line inside it at its own line."""
    try:
        return load(getattr(scope, key))
    except ConfigError as e:
        where = getattr(scope, "lines", {}).get(key)
        if e.line or where is None:
            raise
        raise ConfigError(e.reason, where[0], where[1], key) from None


def build_policy(config: Config, listener: Listener | None, clock: Any) -> Policy:
    """Load the files and plugins of one scope; ConfigError (``file:line``) on bad input."""
    scope = _scope_settings(config, listener)
    password_file = getattr(scope, "password_file", None)
    acl_file = getattr(scope, "acl_file", None)
    scram_file = getattr(scope, "scram_file", None)
    specs: list[PluginSpec] = list(getattr(scope, "plugins", None) or [])
    passwords = _load_named(scope, "password_file", PasswordFile.load) if password_file else None
    acl = _load_named(scope, "acl_file", AclFile.load) if acl_file else None
    methods: dict[str, Any] = {}
    if scram_file:
        methods[ScramMethod.name] = ScramMethod(_load_named(scope, "scram_file", ScramFile.load))
    plugins: list[LoadedPlugin] = []
    try:
        for spec in specs:
            plugins.append(LoadedPlugin.load(spec, clock))
            _add_methods(methods, plugins[-1])
    except Exception:
        close_policies([Policy(False, plugins=plugins)])
        raise
    probe = listener if listener is not None else Listener(0)
    return Policy(anonymous_allowed(config, probe), passwords, acl, plugins, methods,
                  anonymous_overrides(config))


def _add_methods(methods: dict[str, Any], plugin: LoadedPlugin) -> None:
    """A plugin's enhanced authentication methods; a name offered twice is an error at
    the second one's ``plugin`` line."""
    for method in plugin.auth_methods():
        if method.name in methods:
            path, line = plugin.spec.source
            raise ConfigError(f"{plugin.spec.path}: authentication method {method.name!r} is already offered",
                              path, line, "plugin")
        methods[method.name] = method


def anonymous_overrides(config: Config) -> dict[Any, bool]:
    """Listeners whose own rule on anonymous clients beats allow_anonymous: those with
    ``listener_allow_anonymous``, and HTTP API listeners, closed unless they say so."""
    overrides = {}
    for listener in config.listeners:
        own = listener.listener_allow_anonymous
        if own is None and listener.protocol == "http_api":
            own = False
        if own is not None:
            overrides[listener_key(listener)] = own
    return overrides


def build_policies(config: Config, clock: Any) -> Policies:
    """Every scope's policy, all or nothing: plugins loaded before an error are closed."""
    built: list[Policy] = []
    try:
        if config.per_listener_settings:
            by_listener = {}
            for listener in config.listeners:
                built.append(build_policy(config, listener, clock))
                by_listener[listener_key(listener)] = built[-1]
            return Policies(True, None, by_listener)
        return Policies(False, build_policy(config, None, clock))
    except Exception:
        close_policies(built)
        raise


def psk_files(config: Config) -> dict[Any, PskFile]:
    """The ``psk_file`` of each ``psk_hint`` listener, by listener key (a file named by
    several scopes is read once); ConfigError at the line that names a bad file."""
    loaded: dict[str, PskFile] = {}
    found: dict[Any, PskFile] = {}
    for listener in config.listeners:
        if not listener.psk_hint:
            continue
        scope = _scope_settings(config, listener)
        path = getattr(scope, "psk_file", None)
        if not path:
            path_, line = listener.lines.get("psk_hint", listener.source)
            raise ConfigError("needs a psk_file with the clients' keys", path_, line, "psk_hint")
        if path not in loaded:
            loaded[path] = _load_named(scope, "psk_file", PskFile.load)
        found[listener_key(listener)] = loaded[path]
    return found


def load_security(config: Config, clock: Any = None) -> Security:
    """The ``Security`` the hub calls, with every policy of ``config`` loaded."""
    if clock is None:
        from twisted.internet import reactor as clock
    return Security(build_policies(config, clock), clock)
