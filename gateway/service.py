"""``Options`` and ``makeService()`` for twistd, and the service that wires listeners to one hub."""

from __future__ import annotations

import gc
import signal
import sys
from dataclasses import fields
from typing import Any, NoReturn

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import ILogObserver, Logger
from twisted.python import usage

from gateway import __version__
from gateway.bridge.service import BridgeService
from gateway.config import Config, Listener, default_config, load
from gateway.errors import ConfigError, StartupFailed, StoreError
from gateway.hub.api import Message
from gateway.hub.auth import close_policies, listener_key
from gateway.hub.hub import Hub, HubSettings
from gateway.hub.sessions import Limits
from gateway.listeners import ListenerService
from gateway.logs import make_observer, report_startup_failure, wants_own_observer
from gateway.mqtt.channel import MQTTSettings
from gateway.pidfile import PidFile
from gateway.sdnotify import SystemdNotify
from gateway.security.policy import build_policies, load_security, psk_files
from gateway.tls import ServerTLS, build_context, check_settings, is_tls


class Options(usage.Options):
    """The plugin's options; the ``mqttgateway`` command adds Mosquitto's ``-d``."""

    synopsis = "[-c FILE] [-p PORT] [-v]"
    longdesc = "Runs the gateway. With no config file: MQTT on 127.0.0.1:1883, anonymous allowed."
    optParameters = [
        ["config", "c", None, "configuration file (Mosquitto syntax)"],
        ["port", "p", None, "MQTT port (replaces the default listener's port)"],
    ]
    optFlags = [["verbose", "v", "log every connection event"]]

    opt_h = usage.Options.opt_help

    def postOptions(self) -> None:
        port = self["port"]
        if port is not None:
            try:
                value = int(port)
            except ValueError:
                raise usage.UsageError(f"--port: expected an integer, got {port!r}") from None
            if not 1 <= value <= 65535:
                raise usage.UsageError(f"--port: {value} is not between 1 and 65535")
            self["port"] = value


def read_config(options: Options) -> Config:
    """Load the file (or the embedded defaults) and apply ``-p``; exit 1 on error."""
    path = options["config"]
    try:
        config = load(path) if path else default_config()
    except ConfigError as e:
        raise SystemExit(f"mqttgateway: {e}") from None
    except OSError as e:
        raise SystemExit(f"mqttgateway: {path}: {e.strerror}") from None
    port = options["port"]
    if port is not None:
        mqtt = [listener for listener in config.listeners if listener.protocol == "mqtt"]
        if path and mqtt and not config.explicit_listeners:
            mqtt[0].port = port
        elif not path:
            config.listeners[0].port = port
        else:
            config.listeners.append(Listener(port=port, bind_address="127.0.0.1", source=("-p", 0)))
    return config


def hub_settings(config: Config) -> HubSettings:
    return HubSettings(
        limits=Limits(
            max_inflight=config.max_inflight_messages,
            max_inflight_bytes=config.max_inflight_bytes,
            max_queued=config.max_queued_messages,
            max_queued_bytes=config.max_queued_bytes,
        ),
        retain_available=config.retain_available,
        upgrade_outgoing_qos=config.upgrade_outgoing_qos,
        persistent_client_expiration=config.persistent_client_expiration,
        check_retain_source=config.check_retain_source,
    )


def mqtt_settings(config: Config, verbose: bool, listener: Listener | None = None) -> MQTTSettings:
    """The MQTT settings of ``listener`` (its own keys over the global ones)."""
    settings = MQTTSettings(
        max_keepalive=config.max_keepalive,
        allow_zero_length_clientid=config.allow_zero_length_clientid,
        auto_id_prefix=config.auto_id_prefix,
        message_size_limit=config.message_size_limit,
        max_packet_size=config.max_packet_size,
        max_subscriptions=config.max_subscriptions,
        retain_available=config.retain_available,
        receive_maximum=config.max_inflight_messages,
        verbose=verbose or "all" in config.log_type or "debug" in config.log_type,
    )
    if listener is not None:
        if config.per_listener_settings:
            if listener.allow_zero_length_clientid is not None:
                settings.allow_zero_length_clientid = listener.allow_zero_length_clientid
            if listener.auto_id_prefix is not None:
                settings.auto_id_prefix = listener.auto_id_prefix
        if listener.max_keepalive is not None:
            settings.max_keepalive = listener.max_keepalive
        settings.max_qos = listener.max_qos
        settings.max_topic_alias = listener.max_topic_alias
        settings.mount_point = listener.mount_point
        settings.protocol_levels = listener.accept_protocol_versions
    return settings


def _update(target: Any, source: Any) -> None:
    """Copy dataclass fields in place, so every holder of ``target`` sees the change."""
    for f in fields(source):
        setattr(target, f.name, getattr(source, f.name))


class GatewayService(service.MultiService):
    """The hub, its listeners and its timers; SIGHUP reloads the config."""

    log = Logger()

    def __init__(self, config: Config, verbose: bool = False) -> None:
        super().__init__()
        self.config = config
        self.verbose = verbose
        self.hub = Hub(hub_settings(config))
        self.mqtt_settings = mqtt_settings(config, verbose)
        # Password/ACL files, plugins and certificates load here, so a bad one stops
        # startup with its file:line (makeService turns ConfigError into exit 1).
        self.security = load_security(config)
        self.security.install(self.hub)
        for listener in config.listeners:
            check_settings(listener)       # TLS keys on a listener without certfile, ...
        keys = psk_files(config)
        self.tls = {listener_key(x): ServerTLS(x, keys.get(listener_key(x)))
                    for x in config.listeners if is_tls(x)}
        self.listener_settings: dict[object, MQTTSettings] = {}
        self.listeners = ListenerService(self.hub, config, self.mqtt_settings, self.tls,
                                         self._settings_for)
        self.listeners.setServiceParent(self)
        # After the listeners: started once they are, stopped (DISCONNECT) before them.
        self.bridges: BridgeService | None = None
        if config.bridges:
            self.bridges = BridgeService(self.hub, config.bridges, config.max_inflight_messages)
            self.bridges.setServiceParent(self)
        self.sys_timer: TimerService | None = None
        self._configure_sys_timer()
        self.pid_file = PidFile(config.pid_file)
        self.store: Any = None
        # Last child: started once the listeners are, stopped (STOPPING=1) first.
        SystemdNotify().setServiceParent(self)

    def _settings_for(self, listener: Listener) -> MQTTSettings:
        """The shared settings, or a listener's own copy when its keys differ (kept
        and updated in place on reload, since its connections hold it)."""
        wanted = mqtt_settings(self.config, self.verbose, listener)
        key = listener_key(listener)
        own = self.listener_settings.get(key)
        if own is None:
            if wanted == self.mqtt_settings:
                return self.mqtt_settings
            own = self.listener_settings[key] = wanted
        else:
            _update(own, wanted)
        return own

    def _reload_security(self, new: Config) -> None:
        """Certificates, PSK files, password/ACL files and plugins, all or nothing."""
        by_key = {listener_key(x): x for x in new.listeners}
        for listener in new.listeners:
            check_settings(listener)
        keys = psk_files(new)
        contexts = {key: build_context(by_key.get(key, tls.listener), keys.get(key))
                    for key, tls in self.tls.items()}
        old_policies = self.security.snapshot()
        replaced = self.security.replace(build_policies(new, self.security.clock))
        for key, context in contexts.items():
            self.tls[key].swap(context, by_key.get(key, self.tls[key].listener))
        self.security.install(self.hub)
        self.security.recheck(self.hub, old_policies)
        close_policies(replaced)

    def _configure_sys_timer(self) -> None:
        if self.sys_timer is not None:
            self.sys_timer.disownServiceParent()
            self.sys_timer = None
        if self.config.sys_interval > 0:
            self.sys_timer = TimerService(self.config.sys_interval, self.hub.publish_sys)
            self.sys_timer.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        """twistd hands us its Application first: log where the config says, by default stderr."""
        if hasattr(parent, "setComponent") and wants_own_observer(self.config):
            try:
                observer = make_observer(self.config, self.verbose, self._publish_log)
            except ConfigError as e:
                raise SystemExit(f"mqttgateway: {e}") from None
            parent.setComponent(ILogObserver, observer)
        super().setServiceParent(parent)

    def _publish_log(self, topic: str, payload: bytes) -> None:
        """``log_dest topic``: QoS 2, not retained, as Mosquitto publishes its log."""
        self.hub.publish(Message(topic, payload, 2))

    def privilegedStartService(self) -> None:
        """Before twistd drops privileges (--uid): the reactor check, the pid file, the ports."""
        from gateway.reactor import require_asyncio_reactor

        try:
            require_asyncio_reactor()
            self._write_pid_file()
            self._open_store()
            super().privilegedStartService()
            if self.store is not None:
                lost = self.hub.lose_sleepers()
                if lost:
                    self.log.info("{count} sleeping clients without their listener: lost",
                                  count=lost)
        except SystemExit as e:
            self._startup_failed(e)
        except Exception:
            self.pid_file.remove()
            raise

    def _open_store(self) -> None:
        """With ``persistence true``: open the store (after twistd has daemonized, so
        the lock belongs to the process that serves), rebuild the hub from it, and
        report every change to it from now on."""
        if not self.config.persistence:
            return
        from gateway.hub.persistence import restore
        from gateway.store.startup import open_configured

        listeners = {listener_key(x): x for x in self.config.listeners}
        try:
            store, snapshot = open_configured(self.config, list(listeners), self.log)
        except StoreError as e:
            raise SystemExit(f"mqttgateway: {e}") from None
        self.store = store
        self.hub.journal = store
        found = restore(self.hub, snapshot, listeners)
        store.attach(self.hub)
        self.log.info("store {path}: {retained} retained messages, {sessions} sessions, "
                      "{queued} queued messages", path=store.path, **found)

    def _write_pid_file(self) -> None:
        try:
            self.pid_file.write()
        except OSError as e:
            path, line = self.config.lines.get("pid_file", ("", 0))
            error = ConfigError(f"cannot write {e.filename}: {e.strerror}", path, line, "pid_file")
            raise SystemExit(f"mqttgateway: {error}") from None

    def _startup_failed(self, exc: SystemExit) -> NoReturn:
        """Exit 1 with the reason on stderr as well as in the log (see report_startup_failure)."""
        reason = exc.code if isinstance(exc.code, str) else "mqttgateway: startup failed"
        report_startup_failure(reason, self.config)
        self.pid_file.remove()
        sys.excepthook = _quiet_about_startup_failure(sys.excepthook)
        raise StartupFailed(reason.removeprefix("mqttgateway: ")) from None

    def startService(self) -> None:
        from gateway.reactor import event_loop_name

        self.log.info(
            "mqttgateway {version} starting (config: {path}, event loop: {loop})",
            version=__version__,
            path=self.config.path or "embedded defaults",
            loop=event_loop_name(),
        )
        super().startService()
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_sighup)
        # What startup created (~50k modules, classes, functions) lives until exit;
        # freezing it keeps every full collection from rescanning it. Under a CoAP flood
        # the longest GC pause, and so the worst MQTT round trip, fell from 66 to 15 ms.
        gc.collect()
        gc.freeze()

    def _on_sighup(self, signum: int, frame: Any) -> None:
        """Reload in the event loop's next turn, ahead of its timers: straight to the
        loop rather than through ``callFromThread``, which added a reactor timer, so a
        client that connects once the signal is sent meets the new files more often
        (Mosquitto's 04-retain-check-source)."""
        from twisted.internet import reactor

        reactor._asyncioEventloop.call_soon_threadsafe(self.reload)  # type: ignore[attr-defined]

    def reload(self) -> bool:
        """Reread the config file and apply what a running service can apply."""
        path = self.config.path
        if not path:
            self.log.info("SIGHUP: no config file to reload")
            return False
        try:
            new = load(path)
        except (ConfigError, OSError) as e:
            self.log.error("reload failed, keeping the running config: {error}", error=str(e))
            return False
        old_listeners = [(x.port, x.bind_address, x.protocol) for x in self.config.listeners]
        new_listeners = [(x.port, x.bind_address, x.protocol) for x in new.listeners]
        if old_listeners != new_listeners:
            self.log.warn("listener changes take effect after a restart")
            new.listeners = self.config.listeners
        if new.bridges != self.config.bridges:
            self.log.warn("bridge changes take effect after a restart")
            new.bridges = self.config.bridges
        try:
            self._reload_security(new)
        except ConfigError as e:
            self.log.error("reload failed, keeping the running config: {error}", error=str(e))
            return False
        self.config = new
        settings = hub_settings(new)
        # Field by field: every session holds the Limits object itself.
        _update(self.hub.settings.limits, settings.limits)
        self.hub.settings.retain_available = settings.retain_available
        self.hub.settings.upgrade_outgoing_qos = settings.upgrade_outgoing_qos
        self.hub.settings.persistent_client_expiration = settings.persistent_client_expiration
        self.hub.refresh_expiries()
        _update(self.mqtt_settings, mqtt_settings(new, self.verbose))
        for listener in new.listeners:
            if listener_key(listener) in self.listener_settings:
                self._settings_for(listener)
        for handle in self.listeners.handles:
            apply = getattr(handle, "reload", None)  # listeners with settings of their own
            if apply is not None:
                apply(new)
        self._configure_sys_timer()
        self.log.info("configuration reloaded from {path}", path=path)
        return True

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        self.log.info("mqttgateway shutting down")
        yield super().stopService()
        self.hub.stop()
        from twisted.internet import reactor

        # twistd re-raises the signal that stopped the reactor once it is done; after
        # a complete shutdown we exit 0 instead, as Mosquitto does (and systemd expects).
        if getattr(reactor, "_exitSignal", None) is not None:
            reactor._exitSignal = None  # type: ignore[attr-defined]
        yield self.security.close()
        if self.store is not None:
            # Every change made until now (the connections just closed) is committed.
            yield self.store.close()
        self.pid_file.remove()
        self.log.info("mqttgateway stopped")


def _quiet_about_startup_failure(previous: Any) -> Any:
    """An excepthook that ends the process (status 1) without a traceback for
    ``StartupFailed``, whose reason is already reported, and defers to ``previous``."""

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not issubclass(kind, StartupFailed):
            previous(kind, value, tb)

    return hook


def makeService(options: Options) -> GatewayService:
    config = read_config(options)
    try:
        return GatewayService(config, verbose=bool(options["verbose"]))
    except ConfigError as e:
        raise SystemExit(f"mqttgateway: {e}") from None


__all__ = ["GatewayService", "Options", "makeService", "read_config"]
