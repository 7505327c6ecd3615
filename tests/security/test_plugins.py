"""Plugins: the loader, the real HTTP backend against a local twisted.web server, the
real SQL backend on an SQLite file, and the synchronous ACL cache in front of them."""

from __future__ import annotations

import json
import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.web import resource, server

from gateway.config import parse
from gateway.errors import ConfigError
from gateway.hub.api import ClientInfo, Subscription
from gateway.security.policy import load_security
from gateway.security.passwords import make_hash
from gateway.security.plugins import LoadedPlugin, PluginSpec, load_plugin


def who(username="alice", client_id="c1"):
    return ClientInfo(client_id, "mqtt", "127.0.0.1:5000", username)


# -- loader --------------------------------------------------------------------------

def test_plugin_from_a_file_with_options(tmp_path):
    path = tmp_path / "allow_named.py"
    path.write_text("class P:\n"
                    "    def __init__(self, o): self.o = o\n"
                    "    def authenticate(self, client, password):\n"
                    "        return client.username == self.o['who'] or None\n"
                    "def make_plugin(options): return P(options)\n")
    s = load_security(parse(f"listener 1883\nplugin {path}\nplugin_opt_who alice\n"), task.Clock())
    results = []
    s.authenticate(who("alice"), None).addCallback(lambda r: results.append(bool(r)))
    s.authenticate(who("bob"), None).addCallback(lambda r: results.append(bool(r)))
    assert results == [True, False]          # bob: deferred to nothing -> refused


@pytest.mark.parametrize("body, reason", [
    (None, "no such file"),
    ("x = 1\n", "has no make_plugin"),
    ("def make_plugin(o): raise ValueError('bad option')\n", "bad option"),
    ("syntax error here\n", "invalid syntax"),
])
def test_plugin_load_errors_name_the_config_line(tmp_path, body, reason):
    path = tmp_path / "p.py"
    if body is not None:
        path.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_plugin(PluginSpec(str(path), {}, ("gw.conf", 7)))
    assert str(e.value).startswith("gw.conf:7: plugin: ") and reason in str(e.value)


def test_plugin_module_name_and_missing_option():
    with pytest.raises(ConfigError) as e:
        load_plugin(PluginSpec("plugins.http_auth", {}, ("gw.conf", 3)))
    assert "needs plugin_opt_url" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_plugin(PluginSpec("plugins.no_such_plugin", {}, ("gw.conf", 3)))
    assert "No module named" in str(e.value)


# -- the ACL cache -----------------------------------------------------------------------

class SlowAcl:
    """Answers ACL checks later, when the test fires the pending Deferreds."""

    def __init__(self):
        self.pending = []

    def acl_check(self, client, access, topic):
        d = defer.Deferred()
        self.pending.append((topic, d))
        return d


def slow_acl_security(tmp_path, *lines):
    """``Security`` for ``listener 1883``, ``lines``, then a plugin file in ``tmp_path`` that
    makes a ``SlowAcl``; the plugin is ``.policy(None).plugins[0].obj``."""
    path = tmp_path / "slow.py"
    path.write_text("from tests.security.test_plugins import SlowAcl\n"
                    "def make_plugin(o): return SlowAcl()\n")
    return load_security(parse("\n".join(["listener 1883", *lines, f"plugin {path}"]) + "\n"), task.Clock())


def test_async_acl_answer_is_cached_and_a_miss_denies_meanwhile():
    clock = task.Clock()
    plugin = LoadedPlugin(PluginSpec("slow", {"acl_cache_seconds": "30"}), SlowAcl(), clock)
    assert plugin.acl_cached(who(), "read", "a") == (False, None)
    assert plugin.acl_cached(who(), "read", "a") == (False, None)      # one query in flight
    assert len(plugin.obj.pending) == 1
    later = plugin.acl_later(who(), "read", "a")
    plugin.obj.pending[0][1].callback(True)
    assert later.result is True
    assert plugin.acl_cached(who(), "read", "a") == (True, True)
    clock.advance(31)                                  # expired: used while it is refreshed
    assert plugin.acl_cached(who(), "read", "a") == (True, True)
    assert len(plugin.obj.pending) == 2
    plugin.obj.pending[1][1].callback(False)
    assert plugin.acl_cached(who(), "read", "a") == (True, False)


def test_authorize_later_waits_for_the_plugin(tmp_path):
    s = slow_acl_security(tmp_path)
    policy = s.policy(None)
    assert s.needs_wait(who(), "subscribe", "x/#")
    assert not s.authorize(who(), "subscribe", "x/#")
    d = s.authorize_later(who(), "subscribe", "x/#")
    policy.plugins[0].obj.pending[0][1].callback(True)
    assert d.result is True
    assert s.authorize(who(), "subscribe", "x/#") and not s.needs_wait(who(), "subscribe", "x/#")


# -- HTTP backend --------------------------------------------------------------------------

class AuthService(resource.Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []

    def render_POST(self, request):
        body = json.loads(request.content.read())
        self.requests.append((body, request.getHeader("authorization")))
        if body["action"] == "auth":
            if body.get("username") == "ghost":
                request.setResponseCode(404)
                return b""
            ok = body.get("username") == "alice" and body.get("password") == "secret"
            if not ok:
                request.setResponseCode(403)
                return b""
            return json.dumps({"result": "allow"}).encode()
        if body["topic"] == "broken":
            request.setResponseCode(500)
            return b""
        allowed = body["topic"].startswith(f"users/{body['username']}/")
        return json.dumps({"result": "allow" if allowed else "deny"}).encode()


@pytest.fixture
def auth_service():
    site = AuthService()
    port = reactor.listenTCP(0, server.Site(site), interface="127.0.0.1")
    site.url = f"http://127.0.0.1:{port.getHost().port}/mqtt"
    yield site
    port.stopListening()


@pytest_twisted.ensureDeferred
async def test_http_backend_authenticates_and_caches(auth_service):
    s = load_security(parse(f"listener 1883\nplugin plugins.http_auth\nplugin_opt_url {auth_service.url}\n"
                       "plugin_opt_header_Authorization Bearer t0ken\n"), reactor)
    try:
        assert bool(await s.authenticate(who("alice"), b"secret")) is True
        assert bool(await s.authenticate(who("alice", "c2"), b"wrong")) is False
        assert bool(await s.authenticate(who("ghost", "c3"), b"x")) is False        # 404: ignored
        asked = len(auth_service.requests)
        assert bool(await s.authenticate(who("alice"), b"secret")) is True          # from the cache
        assert len(auth_service.requests) == asked
        first, header = auth_service.requests[0]
        assert first == {"action": "auth", "clientid": "c1", "username": "alice", "password": "secret",
                         "protocol": "mqtt", "peer": "127.0.0.1:5000"}
        assert header == "Bearer t0ken"
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_http_backend_acl(auth_service):
    s = load_security(parse(f"listener 1883\nplugin plugins.http_auth\nplugin_opt_url {auth_service.url}\n"),
                 reactor)
    try:
        alice = who("alice")
        assert await s.authorize_later(alice, "write", "users/alice/x") is True
        assert await s.authorize_later(alice, "read", "users/bob/x") is False
        assert await s.authorize_later(alice, "read", "broken") is False       # HTTP 500
        asked = len(auth_service.requests)
        assert s.authorize(alice, "write", "users/alice/x")                     # synchronous, cached
        assert not s.authorize(alice, "read", "users/bob/x")
        assert len(auth_service.requests) == asked
        acl_body = auth_service.requests[0][0]
        assert (acl_body["action"], acl_body["access"], acl_body["topic"]) == ("acl", "write", "users/alice/x")
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_http_backend_unreachable_denies():
    s = load_security(parse("listener 1883\nplugin plugins.http_auth\nplugin_opt_url http://127.0.0.1:1/x\n"
                       "plugin_opt_timeout 2\n"), reactor)
    assert bool(await s.authenticate(who("alice"), b"secret")) is False


# -- SQL backend ---------------------------------------------------------------------------

@pytest.fixture
def database(tmp_path):
    path = tmp_path / "auth.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL)")
    db.execute("CREATE TABLE acls (username TEXT NOT NULL, topic TEXT NOT NULL, access TEXT NOT NULL)")
    db.execute("INSERT INTO users VALUES ('alice', ?), ('broken', 'plain')", (make_hash(b"secret"),))
    db.executemany("INSERT INTO acls VALUES (?, ?, ?)", [
        ("alice", "users/%u/#", "readwrite"), ("alice", "users/alice/private", "deny"),
        ("alice", "devices/%c/state", "1"),
    ])
    db.commit()
    db.close()
    return path


def test_sqlite_backend_answers_in_line(database, tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text(f"bob:{make_hash(b'hunter2')}\n")
    s = load_security(parse(f"listener 1883\nplugin plugins.sql_auth\nplugin_opt_database {database}\n"
                       f"password_file {pw}\n"), task.Clock())

    def now(result):
        out = []
        result.addBoth(out.append)
        return bool(out[0])

    assert now(s.authenticate(who("alice"), b"secret")) is True
    assert now(s.authenticate(who("alice"), b"wrong")) is False
    assert now(s.authenticate(who("bob"), b"hunter2")) is True       # not in SQL: password file
    assert now(s.authenticate(who("broken"), b"plain")) is False     # bad hash in the table
    alice = who("alice", "dev1")
    assert s.authorize(alice, "write", "users/alice/x")              # answered without waiting
    assert not s.authorize(alice, "read", "users/alice/private")
    assert s.authorize(alice, "read", "devices/dev1/state")
    assert not s.authorize(alice, "write", "devices/dev1/state")
    assert s.authorize(alice, "subscribe", "users/alice/#")
    assert not s.authorize(who("bob"), "read", "users/bob/x")        # no rows: deferred -> denied
    s.close()


@pytest_twisted.ensureDeferred
async def test_sql_backend_through_the_thread_pool(database):
    s = load_security(parse(f"listener 1883\nplugin plugins.sql_auth\nplugin_opt_database {database}\n"
                       "plugin_opt_threaded true\n"), reactor)
    try:
        assert bool(await s.authenticate(who("alice"), b"secret")) is True
        assert bool(await s.authenticate(who("alice"), b"nope")) is False
        assert await s.authorize_later(who("alice"), "write", "users/alice/x") is True
        assert s.authorize(who("alice"), "write", "users/alice/x")
    finally:
        await s.close()


def test_sqlite_backend_can_create_its_tables(tmp_path):
    path = tmp_path / "new.db"
    plugin = load_plugin(PluginSpec("plugins.sql_auth", {"database": str(path), "create_tables": "true"}))
    plugin.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"users", "acls"} <= tables


def test_hub_level_authorize_later(tmp_path):
    from gateway.hub.auth import authorize_later
    from gateway.hub.hub import Hub

    s = slow_acl_security(tmp_path)
    hub = Hub()
    assert authorize_later(hub, who(), "write", "t") is None          # nothing installed: final
    s.install(hub)
    d = authorize_later(hub, who(), "write", "t")
    assert d is not None and not d.called
    assert not hub.authorize(who(), "write", "t")                      # meanwhile: denied
    s.policy(None).plugins[0].obj.pending[0][1].callback(True)
    assert d.called
    assert authorize_later(hub, who(), "write", "t") is None           # cached now
    assert hub.authorize(who(), "write", "t")


def test_authorize_later_asks_read_for_the_subscribers_of_a_published_topic(tmp_path):
    from gateway.hub.api import Message
    from gateway.hub.auth import authorize_later
    from gateway.hub.hub import Hub

    s = slow_acl_security(tmp_path)
    hub = Hub()
    s.install(hub)
    slow = s.policy(None).plugins[0].obj

    class Endpoint:
        got: list = []

        def send_publish(self, message, qos, packet_id, dup, retain, sub_ids=()):
            self.got.append(message.topic)

    reader, _ = hub.connect(who("bob", "reader"), Endpoint(), True)
    assert not hub.subscribe(reader, "t/#", Subscription(0))            # being asked: refused
    [(asked, pending)] = slow.pending
    assert asked == "t/#"
    pending.callback(True)
    slow.pending.clear()
    assert hub.subscribe(reader, "t/#", Subscription(0))                 # answered from the cache
    d = authorize_later(hub, who("alice", "writer"), "write", "t/1")
    assert [t for t, _ in slow.pending] == ["t/1", "t/1"]              # alice's write, bob's read
    for _, pending in slow.pending:
        pending.callback(True)
    assert d.called
    hub.publish(Message("t/1", b"x"))
    assert Endpoint.got == ["t/1"]                                      # read answer was cached
