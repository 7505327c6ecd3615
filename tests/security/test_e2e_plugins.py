"""The shipped plugins inside a real gateway: SQLite answers in-line; the HTTP backend
is asked by a channel that holds SUBSCRIBE/PUBLISH until the answer is back."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.security.passwords import make_hash
from tests.conftest import free_port
from tests.security.helpers import Client


class AuthHandler(BaseHTTPRequestHandler):
    """alice/secret may log in and use users/alice/#; everything is logged."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        if body["action"] == "auth":
            ok = body.get("username") == "alice" and body.get("password") == "secret"
        else:
            ok = body["topic"].startswith("users/alice/")
        data = json.dumps({"result": "allow" if ok else "deny"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    AuthHandler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/mqtt"
    server.shutdown()
    server.server_close()


def test_http_plugin_in_the_gateway(http_service, gateway):
    gw = gateway(f"listener {free_port()} 127.0.0.1", "plugin plugins.http_auth",
                 f"plugin_opt_url {http_service}", listener=False)
    alice = Client(gw.port, "a1", "alice", "secret")
    assert alice.connect() == 0
    # The first SUBSCRIBE has no cached answer: the channel waits for the service.
    assert alice.subscribe("users/alice/#") == [1]
    assert alice.subscribe("users/bob/#") == [0x80]
    alice.publish("users/alice/x", b"allowed")              # write: asked, then allowed
    assert alice.next_message() == ("users/alice/x", b"allowed")
    alice.publish("users/bob/x", b"denied")                 # acknowledged, dropped
    alice.publish("users/alice/y", b"after")
    assert alice.next_message() == ("users/alice/y", b"after")
    assert alice.received() == []
    checks = [(b["access"], b["topic"]) for b in AuthHandler.seen if b["action"] == "acl"]
    assert ("subscribe", "users/alice/#") in checks and ("write", "users/bob/x") in checks
    wrong = Client(gw.port, "a2", "alice", "nope", bind="127.0.0.2")
    assert wrong.connect() == 135
    wrong.close()
    alice.close()


def test_sql_plugin_in_the_gateway_next_to_a_password_file(tmp_path, gateway):
    db_path = tmp_path / "auth.db"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL)")
    db.execute("CREATE TABLE acls (username TEXT NOT NULL, topic TEXT NOT NULL, access TEXT NOT NULL)")
    db.execute("INSERT INTO users VALUES ('dev1', ?)", (make_hash(b"pw1"),))
    db.execute("INSERT INTO acls VALUES ('dev1', 'devices/%c/#', 'readwrite')")
    db.commit()
    db.close()
    passwd = tmp_path / "passwd"
    passwd.write_text(f"admin:{make_hash(b'root')}\n")
    acl = tmp_path / "acl"
    acl.write_text("user admin\ntopic read devices/#\n")
    gw = gateway(f"listener {free_port()} 127.0.0.1", "plugin plugins.sql_auth",
                 f"plugin_opt_database {db_path}", f"password_file {passwd}", f"acl_file {acl}",
                 listener=False)
    admin = Client(gw.port, "admin", "admin", "root")        # not in SQL: the password file
    assert admin.connect() == 0
    assert admin.subscribe("devices/#") == [1]
    dev = Client(gw.port, "box-1", "dev1", "pw1")
    assert dev.connect() == 0
    assert dev.subscribe("devices/box-1/cmd") == [1]
    assert dev.subscribe("devices/box-2/cmd") == [0x80]
    dev.publish("devices/box-2/state", b"spoof")          # dropped
    dev.publish("devices/box-1/state", b"on")
    assert admin.next_message() == ("devices/box-1/state", b"on")
    assert admin.received() == []
    for c in (admin, dev):
        c.close()
