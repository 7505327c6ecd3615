"""SQL authentication/ACL backend: users and ACL rows in a database (SQLite by default).

Configuration::

    plugin plugins.sql_auth
    plugin_opt_database /var/lib/mqttgateway/auth.db   # SQLite file
    plugin_opt_auth_query SELECT password_hash FROM users WHERE username = ?
    plugin_opt_acl_query SELECT topic, access FROM acls WHERE username = ?
    plugin_opt_create_tables true        # create the two default tables if missing

``password_hash`` holds a Mosquitto hash (``$7$...`` or ``$6$...``), so a line of a
password file can be copied into the table as is. ``access`` is ``read``, ``write``,
``readwrite`` or ``deny`` (or 1, 2, 3, 0); ``topic`` may use ``%c`` and ``%u``. A user
without a row defers to the next backend (the password file, the ACL file); a user
with ACL rows is judged by them alone, like a ``user`` section of an ACL file.

SQLite is queried in-line: a look-up on a local file takes microseconds, and an
in-line answer never misses the gateway's ACL cache. For a server database, name a
DB-API module and its connect arguments; queries then run in Twisted's thread pool
(``twisted.enterprise.adbapi``) and use that module's parameter style::

    plugin_opt_dbapi_module psycopg2
    plugin_opt_connect dbname=mqtt user=mqtt host=db.example
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from gateway.errors import ConfigError
from gateway.security.acl import ACCESS, AclFile, Rule
from gateway.security.passwords import parse_hash

AUTH_QUERY = "SELECT password_hash FROM users WHERE username = ?"
ACL_QUERY = "SELECT topic, access FROM acls WHERE username = ?"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS acls (username TEXT NOT NULL, topic TEXT NOT NULL, "
    "access TEXT NOT NULL DEFAULT 'readwrite')",
)
NUMERIC_ACCESS = {"0": "deny", "1": "read", "2": "write", "3": "readwrite"}


class SQLAuth:
    """The plugin object (see ``gateway.security.plugins`` for the interface)."""

    log = Logger()

    def __init__(self, options: dict[str, str]) -> None:
        self.auth_query = options.get("auth_query", AUTH_QUERY)
        self.acl_query = options.get("acl_query", ACL_QUERY)
        module = options.get("dbapi_module", "sqlite3")
        self.pool: Any = None
        self.db: sqlite3.Connection | None = None
        if module == "sqlite3" and options.get("threaded", "false") != "true":
            path = options.get("database")
            if not path:
                raise ConfigError("needs plugin_opt_database (an SQLite file)")
            try:
                self.db = sqlite3.connect(path, isolation_level=None)
                if options.get("create_tables") == "true":
                    for statement in SCHEMA:
                        self.db.execute(statement)
            except sqlite3.Error as e:
                raise ConfigError(f"cannot open SQLite database {path!r}: {e}") from None
        else:
            from twisted.enterprise import adbapi

            if module == "sqlite3":
                self.pool = adbapi.ConnectionPool("sqlite3", options.get("database", ""),
                                                  check_same_thread=False, cp_min=1, cp_max=1)
            else:
                self.pool = adbapi.ConnectionPool(module, options.get("connect", ""))

    def _rows(self, query: str, args: tuple[Any, ...]) -> Deferred[list[tuple[Any, ...]]]:
        if self.db is not None:
            try:
                return succeed(self.db.execute(query, args).fetchall())
            except sqlite3.Error as e:
                self.log.error("SQL auth query failed: {error}", error=str(e))
                raise
        return self.pool.runQuery(query, args)

    def authenticate(self, client: Any, password: bytes | None) -> Deferred[bool | None] | None:
        if client.username is None:
            return None

        def judge(rows: list[tuple[Any, ...]]) -> bool | None:
            if not rows:
                return None
            try:
                entry = parse_hash(str(rows[0][0]))
            except ValueError as e:
                self.log.warn("bad password hash for {username} in the database: {error}",
                              username=client.username, error=str(e))
                return False
            return password is not None and entry.verify(password)

        return self._rows(self.auth_query, (client.username,)).addCallback(judge)

    def acl_check(self, client: Any, access: str, topic: str) -> Deferred[bool | None] | None:
        if client.username is None:
            return None

        def judge(rows: list[tuple[Any, ...]]) -> bool | None:
            if not rows:
                return None
            rules = []
            for filter_text, access_text in rows:
                name = NUMERIC_ACCESS.get(str(access_text), str(access_text))
                if name not in ACCESS:
                    self.log.warn("ignoring ACL row with access {access!r}", access=access_text)
                    continue
                rules.append(Rule.make(ACCESS[name], str(filter_text)))
            # Topic rows behave as the user's section of an ACL file, %c/%u included.
            acl = AclFile(patterns=[Rule.make(r.access, r.filter, True) for r in rules])
            return acl.check(client, access, topic)

        return self._rows(self.acl_query, (client.username,)).addCallback(judge)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def make_plugin(options: dict[str, str]) -> SQLAuth:
    return SQLAuth(options)
