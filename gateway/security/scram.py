"""SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication.

The exchange, as EMQX and the SASL libraries carry it over MQTT 5::

    CONNECT  Authentication Method "SCRAM-SHA-256", Data client-first-message
    AUTH 0x18                                       server-first-message
    AUTH 0x18                                       client-final-message
    CONNACK 0 (or AUTH 0x00 when re-authenticating) server-final-message (v=...)

Why a file of its own (``scram_file``)
--------------------------------------
The server needs, per user, the salt, iteration count, StoredKey and ServerKey, all
derived from the password with PBKDF2-HMAC-SHA-256. Mosquitto's ``$7$`` hashes are
PBKDF2-HMAC-SHA-512 of the same password: nothing SCRAM needs can be computed from
them, and the password file must stay readable by Mosquitto. So the entries live in a
second file, one ``username:SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY`` line
per user (RFC 5803, the form PostgreSQL stores), written by ``mqttgateway-passwd -s``
when the password is set. Knowing a line does not let one log in (the proof needs the
ClientKey, which only the password gives), but it allows an offline guessing attack,
so the file is kept as private as the password file.

Unknown users get a salt made from a per-process secret and their name, and the
exchange fails only at the proof, so it does not tell which users exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from gateway.errors import ConfigError, read_file
from gateway.hub.api import Allowed, AuthContinue, ClientInfo, Denied, Reason

NAME = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096     # RFC 7677's minimum, PostgreSQL's default
SALT_LEN = 16
KEY_LEN = 32                  # SHA-256
_FAKE_SALT_KEY = secrets.token_bytes(32)
_SASLNAME_ESCAPE = re.compile(r"=(?!2C|3D)")
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")


# -- credentials -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScramEntry:
    """One user's stored credentials; ``text`` as written (to spot changes on reload)."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes
    text: str = ""


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_entry(text: str) -> ScramEntry:
    """Decode ``SCRAM-SHA-256$I:SALT$STOREDKEY:SERVERKEY``; ValueError says what is wrong."""
    parts = text.split("$")
    if len(parts) != 3 or parts[0] != NAME:
        raise ValueError(f"expected {NAME}$ITERATIONS:SALT$STOREDKEY:SERVERKEY")
    count, sep1, salt64 = parts[1].partition(":")
    stored64, sep2, server64 = parts[2].partition(":")
    if not sep1 or not sep2:
        raise ValueError(f"expected {NAME}$ITERATIONS:SALT$STOREDKEY:SERVERKEY")
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"invalid iteration count {count!r}")
    salt = _b64(salt64, "salt")
    if not salt:
        raise ValueError("empty salt")
    stored, server = _b64(stored64, "StoredKey"), _b64(server64, "ServerKey")
    if len(stored) != KEY_LEN or len(server) != KEY_LEN:
        raise ValueError(f"StoredKey and ServerKey must be {KEY_LEN} bytes")
    return ScramEntry(int(count), salt, stored, server, text)


def split_line(line: str) -> tuple[str, str] | None:
    """``username:entry``; None for comments and blank lines."""
    if line.startswith("#") or not line.strip():
        return None
    username, sep, entry = line.partition(":")
    username = username.strip()
    if not sep or not username:
        raise ValueError("expected username:SCRAM-SHA-256$...")
    return username, entry.strip()


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep, which RFC 5802 applies to passwords; ValueError when the
    string holds a character it prohibits."""
    mapped = "".join(" " if stringprep.in_table_c12(c) else c
                     for c in text if not stringprep.in_table_b1(c))
    out = unicodedata.normalize("NFKC", mapped)
    for c in out:
        if (stringprep.in_table_c12(c) or stringprep.in_table_c21_c22(c) or stringprep.in_table_c3(c)
                or stringprep.in_table_c4(c) or stringprep.in_table_c5(c) or stringprep.in_table_c6(c)
                or stringprep.in_table_c7(c) or stringprep.in_table_c8(c) or stringprep.in_table_c9(c)
                or stringprep.in_table_a1(c)):
            raise ValueError(f"character U+{ord(c):04X} not allowed")
    if any(stringprep.in_table_d1(c) for c in out):
        if any(stringprep.in_table_d2(c) for c in out) or not (
                stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ValueError("mixed right-to-left and left-to-right text")
    return out


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def derive(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of a password. A password SASLprep refuses is used as
    its UTF-8 bytes, as PostgreSQL and libpq do."""
    try:
        prepared = saslprep(password)
    except ValueError:
        prepared = password
    salted = hashlib.pbkdf2_hmac("sha256", prepared.encode(), salt, iterations)
    stored = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    return stored, _hmac(salted, b"Server Key")


def make_entry(password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """The ``scram_file`` text for a password (a fresh random salt unless given)."""
    salt = secrets.token_bytes(SALT_LEN) if salt is None else salt
    stored, server = derive(password, salt, iterations)
    return f"{NAME}${iterations}:{_b64e(salt)}${_b64e(stored)}:{_b64e(server)}"


class ScramFile:
    """The users of one ``scram_file``."""

    def __init__(self, users: dict[str, ScramEntry], path: str = "") -> None:
        self.users = users
        self.path = path
        counts = Counter(e.iterations for e in users.values())
        # Unknown users are offered the count most users have.
        self.usual_iterations = counts.most_common(1)[0][0] if counts else DEFAULT_ITERATIONS

    @classmethod
    def load(cls, path: str) -> ScramFile:
        """Read and validate *path*; ConfigError(``path:line: reason``) on any bad line."""
        return cls.parse(read_file(path, "SCRAM file"), path)

    @classmethod
    def parse(cls, data: bytes, path: str = "<string>") -> ScramFile:
        users: dict[str, ScramEntry] = {}
        for number, raw in enumerate(data.split(b"\n"), 1):
            try:
                entry = split_line(raw.decode("utf-8").rstrip("\r"))
                if entry is not None:
                    users[entry[0]] = parse_entry(entry[1])
            except UnicodeDecodeError:
                raise ConfigError("not valid UTF-8", path, number) from None
            except ValueError as e:
                raise ConfigError(str(e), path, number) from None
        return cls(users, path)

    def entry_text(self, username: str | None) -> str | None:
        entry = self.users.get(username) if username is not None else None
        return entry.text if entry is not None else None


# -- the server side of the exchange ---------------------------------------------------


class ScramError(ValueError):
    """A malformed or refused message; the text is safe to show the client."""


@dataclass(frozen=True, slots=True)
class _Exchange:
    """What the second step needs from the first."""

    username: str
    entry: ScramEntry | None
    gs2_header: str
    client_first_bare: str
    server_first: str
    nonce: str


def _saslname(text: str) -> str:
    if _SASLNAME_ESCAPE.search(text):
        raise ScramError("invalid '=' escape in a name")
    return text.replace("=2C", ",").replace("=3D", "=")


def _attribute(part: str, name: str, what: str) -> str:
    if not part.startswith(name + "="):
        raise ScramError(f"{what}: expected {name}=")
    return part[2:]


class ScramMethod:
    """SCRAM-SHA-256 against one ``scram_file`` (``gateway.hub.api.AuthMethod``)."""

    name = NAME

    def __init__(self, credentials: ScramFile, nonce: Callable[[], str] | None = None) -> None:
        self.credentials = credentials
        self._nonce = nonce or (lambda: secrets.token_urlsafe(18))

    def entry_text(self, username: str | None) -> str | None:
        """The stored entry (reload disconnects a user whose entry changed)."""
        return self.credentials.entry_text(username)

    def start(self, client: ClientInfo, data: bytes | None) -> AuthContinue | Denied:
        try:
            exchange = self._first(client, data)
        except ScramError as e:
            return Denied(Reason.NOT_AUTHORIZED, str(e))
        return AuthContinue(exchange.server_first.encode(), exchange)

    def step(self, client: ClientInfo, state: Any, data: bytes | None) -> Allowed | Denied:
        try:
            return self._final(state, data)
        except ScramError as e:
            return Denied(Reason.NOT_AUTHORIZED, str(e))

    def _first(self, client: ClientInfo, data: bytes | None) -> _Exchange:
        text = _text(data, "client-first-message")
        flag, sep1, rest = text.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not sep1 or not sep2:
            raise ScramError("client-first-message: no GS2 header")
        if flag.startswith("p="):
            raise ScramError("channel binding is not supported")
        if flag not in ("n", "y"):
            raise ScramError("client-first-message: bad channel binding flag")
        parts = bare.split(",")
        if parts[0].startswith("m="):
            raise ScramError("mandatory extension not supported")
        if len(parts) < 2:
            raise ScramError("client-first-message: expected n= and r=")
        username = _saslname(_attribute(parts[0], "n", "client-first-message"))
        client_nonce = _attribute(parts[1], "r", "client-first-message")
        if not username:
            raise ScramError("empty username")
        if not _PRINTABLE.fullmatch(client_nonce):
            raise ScramError("client-first-message: bad nonce")
        if authzid and _saslname(_attribute(authzid, "a", "authorization identity")) != username:
            raise ScramError("authorization identity differs from the username")
        if client.username is not None and client.username != username:
            raise ScramError("username differs from the CONNECT's")
        entry = self.credentials.users.get(username)
        if entry is None:
            salt = _hmac(_FAKE_SALT_KEY, username.encode())[:SALT_LEN]
            iterations = self.credentials.usual_iterations
        else:
            salt, iterations = entry.salt, entry.iterations
        nonce = client_nonce + self._nonce()
        server_first = f"r={nonce},s={_b64e(salt)},i={iterations}"
        return _Exchange(username, entry, flag + "," + authzid + ",", bare, server_first, nonce)

    def _final(self, exchange: _Exchange, data: bytes | None) -> Allowed:
        text = _text(data, "client-final-message")
        without_proof, sep, proof64 = text.rpartition(",p=")
        parts = without_proof.split(",")
        if not sep or len(parts) < 2:
            raise ScramError("client-final-message: expected c=, r= and p=")
        binding = _attribute(parts[0], "c", "client-final-message")
        if binding != _b64e(exchange.gs2_header.encode()):
            raise ScramError("channel binding data differs from the GS2 header")
        if _attribute(parts[1], "r", "client-final-message") != exchange.nonce:
            raise ScramError("nonce mismatch")
        try:
            proof = base64.b64decode(proof64, validate=True)
        except (binascii.Error, ValueError):
            raise ScramError("client-final-message: proof is not base64") from None
        entry = exchange.entry
        stored = entry.stored_key if entry is not None else _hmac(_FAKE_SALT_KEY, b"stored")
        auth_message = f"{exchange.client_first_bare},{exchange.server_first},{without_proof}".encode()
        signature = _hmac(stored, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature)) if len(proof) == KEY_LEN else b""
        valid = hmac.compare_digest(hashlib.sha256(client_key).digest(), stored)
        if not valid or entry is None:
            raise ScramError(f"invalid proof for user {exchange.username!r}")
        server_signature = _hmac(entry.server_key, auth_message)
        return Allowed(auth_data=b"v=" + base64.b64encode(server_signature), username=exchange.username)


def _text(data: bytes | None, what: str) -> str:
    if not data:
        raise ScramError(f"no {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError(f"{what} is not UTF-8") from None
