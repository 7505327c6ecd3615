"""HTTP authentication/ACL backend: asks a web service, caches its answers briefly.

Configuration::

    plugin plugins.http_auth
    plugin_opt_url http://127.0.0.1:8080/mqtt/auth    # both checks (or auth_url / acl_url)
    plugin_opt_timeout 5                              # seconds per request
    plugin_opt_cache_seconds 10                       # login answers kept (0: none)
    plugin_opt_acl_cache_seconds 30                   # topic answers kept (gateway-side)
    plugin_opt_header_Authorization Bearer s3cr3t     # any header_NAME is sent as NAME

Each check is a POST with a JSON body::

    {"action": "auth", "clientid": "...", "username": "...", "password": "...",
     "protocol": "mqtt", "peer": "10.0.0.5:51234"}
    {"action": "acl", "clientid": "...", "username": "...", "access": "read",
     "topic": "a/b", "protocol": "mqtt", "peer": "..."}

(a password that is not UTF-8 goes as ``password_base64``). The answer:

* 2xx with ``{"result": "allow"}`` / ``{"result": "deny"}`` / ``{"result": "ignore"}``
  (ignore: let the next backend decide), or an empty 2xx body for allow;
* 401 or 403: deny; 404: ignore;
* anything else, a timeout or a refused connection: deny, logged, and not cached
  (the next check asks again).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import treq
from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool, RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.client import _HTTP11ClientFactory

from gateway.errors import ConfigError


class BackendUnavailable(Exception):
    """No usable answer: the check is refused and, unlike a "deny", not cached."""


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False          # no "Starting factory" line per connection


def _number(options: dict[str, str], name: str, default: float) -> float:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"plugin_opt_{name}: expected a number of seconds, got {text!r}")
    return value


class HTTPAuth:
    """The plugin object (see ``gateway.security.plugins`` for the interface)."""

    log = Logger()

    def __init__(self, options: dict[str, str], reactor: Any = None) -> None:
        url = options.get("url")
        self.auth_url = options.get("auth_url", url)
        self.acl_url = options.get("acl_url", url)
        if not self.auth_url and not self.acl_url:
            raise ConfigError("needs plugin_opt_url (or plugin_opt_auth_url / plugin_opt_acl_url)")
        self.timeout = _number(options, "timeout", 5.0) or 5.0
        self.cache_seconds = _number(options, "cache_seconds", 10.0)
        self.headers = {k[len("header_"):]: [v] for k, v in options.items() if k.startswith("header_")}
        self.reactor = reactor or default_reactor
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool._factory = _QuietFactory
        self._logins: dict[tuple[Any, ...], tuple[bool | None, float]] = {}
        if not self.auth_url:
            self.authenticate = None  # type: ignore[assignment]
        if not self.acl_url:
            self.acl_check = None  # type: ignore[assignment]

    def _base(self, client: Any) -> dict[str, Any]:
        return {"clientid": client.client_id, "username": client.username,
                "protocol": client.protocol, "peer": client.peer}

    def authenticate(self, client: Any, password: bytes | None) -> Deferred[bool | None]:
        body = {"action": "auth", **self._base(client)}
        if password is not None:
            try:
                body["password"] = password.decode("utf-8")
            except UnicodeDecodeError:
                body["password_base64"] = base64.b64encode(password).decode()
        digest = hashlib.sha256(password).hexdigest() if password is not None else None
        key = (client.username, client.client_id, digest)
        now = self.reactor.seconds()
        hit = self._logins.get(key)
        if hit is not None and hit[1] > now:
            return succeed(hit[0])

        def remember(answer: bool | None) -> bool | None:
            if self.cache_seconds > 0:
                if len(self._logins) > 10_000:
                    self._logins.clear()
                self._logins[key] = (answer, self.reactor.seconds() + self.cache_seconds)
            return answer

        return self._ask(self.auth_url, body).addCallback(remember)

    def acl_check(self, client: Any, access: str, topic: str) -> Deferred[bool | None]:
        body = {"action": "acl", "access": access, "topic": topic, **self._base(client)}
        return self._ask(self.acl_url, body)

    def _ask(self, url: str, body: dict[str, Any]) -> Deferred[bool | None]:
        return Deferred.fromCoroutine(self._post(url, body))

    async def _post(self, url: str, body: dict[str, Any]) -> bool | None:
        for attempt in (1, 2):
            try:
                response = await treq.post(url, json=body, headers=self.headers or None,
                                           timeout=self.timeout, reactor=self.reactor, pool=self.pool)
                content = await treq.content(response)
                break
            except (RequestTransmissionFailed, ResponseNeverReceived) as e:
                # A kept-alive connection the server had closed: once more on a new one.
                if attempt == 2:
                    raise BackendUnavailable(f"{url}: {e!r}") from None
            except Exception as e:
                raise BackendUnavailable(f"{url}: {e!r}") from None
        code = response.code
        if code in (401, 403):
            return False
        if code == 404:
            return None
        if not 200 <= code < 300:
            raise BackendUnavailable(f"{url} answered HTTP {code}")
        if not content.strip():
            return True
        try:
            result = json.loads(content).get("result")
        except (ValueError, AttributeError):
            result = "invalid"
        if result == "allow":
            return True
        if result == "ignore":
            return None
        if result != "deny":
            raise BackendUnavailable(f"{url} gave an unreadable answer")
        return False

    def close(self) -> Deferred[None]:
        self._logins.clear()
        return self.pool.closeCachedConnections()


def make_plugin(options: dict[str, str]) -> HTTPAuth:
    return HTTPAuth(options)
