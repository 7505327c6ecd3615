"""Mosquitto password files (``password_file``): parse, verify, write.

Each line is ``username:hash``. Two hash forms exist, both with a 12-byte salt and
a 64-byte digest, base64-encoded:

``$7$ITERATIONS$SALT$HASH``  PBKDF2-HMAC-SHA512, written by ``mosquitto_passwd`` 2.x
``$6$SALT$HASH``             SHA-512 of password + salt, written by 1.x

Mosquitto silently skips lines it cannot use; here a malformed line is an error
(``file:line: reason``) so a typo cannot lock a user out unnoticed. Lines starting
with ``#`` and blank lines are skipped, as Mosquitto does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from gateway.errors import ConfigError, read_file

SALT_LEN = 12
HASH_LEN = 64
DEFAULT_ITERATIONS = 101          # mosquitto_passwd 2.0's PW_DEFAULT_ITERATIONS
SHA512 = 6
PBKDF2 = 7


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One decoded entry; ``text`` is the line's hash as written (used to spot changes)."""

    kind: int
    salt: bytes
    digest: bytes
    iterations: int = 0
    text: str = ""

    def verify(self, password: bytes) -> bool:
        """Constant-time comparison, so response timing says nothing about the hash."""
        return hmac.compare_digest(digest(password, self.salt, self.kind, self.iterations), self.digest)


def digest(password: bytes, salt: bytes, kind: int, iterations: int) -> bytes:
    if kind == PBKDF2:
        return hashlib.pbkdf2_hmac("sha512", password, salt, iterations, HASH_LEN)
    return hashlib.sha512(password + salt).digest()


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def parse_hash(text: str) -> PasswordHash:
    """Decode ``$6$...`` or ``$7$...``; ValueError says what is wrong."""
    parts = text.split("$")
    if len(parts) < 2 or parts[0] != "":
        raise ValueError("password is not hashed (convert the file with mqttgateway-passwd -U)")
    if parts[1] == "6" and len(parts) == 4:
        kind, iterations, salt64, hash64 = SHA512, 0, parts[2], parts[3]
    elif parts[1] == "7" and len(parts) == 5:
        kind, salt64, hash64 = PBKDF2, parts[3], parts[4]
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise ValueError(f"invalid iteration count {parts[2]!r}")
        iterations = int(parts[2])
    else:
        raise ValueError("unknown password hash type (expected $6$ or $7$)")
    salt = _b64(salt64)
    if len(salt) != SALT_LEN:
        raise ValueError(f"salt must be {SALT_LEN} bytes, got {len(salt)}")
    value = _b64(hash64)
    if len(value) != HASH_LEN:
        raise ValueError(f"hash must be {HASH_LEN} bytes, got {len(value)}")
    return PasswordHash(kind, salt, value, iterations, text)


def make_hash(password: bytes, kind: int = PBKDF2, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The text ``mosquitto_passwd`` would write for *password* (a fresh random salt)."""
    salt = os.urandom(SALT_LEN)
    value = base64.b64encode(digest(password, salt, kind, iterations)).decode()
    salt64 = base64.b64encode(salt).decode()
    if kind == PBKDF2:
        return f"$7${iterations}${salt64}${value}"
    return f"$6${salt64}${value}"


def split_line(line: str) -> tuple[str, str] | None:
    """``username:password`` as mosquitto_passwd splits it; None for comments and blanks."""
    if line.startswith("#") or not line.strip():
        return None
    username, sep, rest = line.partition(":")
    if not sep:
        raise ValueError("expected username:hash")
    # Mosquitto takes the text up to the next ':' as the password.
    password = rest.split(":", 1)[0].strip()
    username = username.strip()
    if not username:
        raise ValueError("empty username")
    if not password:
        raise ValueError(f"no password for user {username!r}")
    return username, password


# A valid hash of a random password: unknown users cost the same time as known ones.
_DUMMY = parse_hash(make_hash(os.urandom(16)))


class PasswordFile:
    """The users of one password file, checked in constant time."""

    def __init__(self, users: dict[str, PasswordHash], path: str = "") -> None:
        self.users = users
        self.path = path

    @classmethod
    def load(cls, path: str) -> PasswordFile:
        """Read and validate *path*; ConfigError(``path:line: reason``) on any bad line."""
        return cls.parse(read_file(path, "password file"), path)

    @classmethod
    def parse(cls, data: bytes, path: str = "<string>") -> PasswordFile:
        users: dict[str, PasswordHash] = {}
        for number, raw in enumerate(data.split(b"\n"), 1):
            try:
                line = raw.decode("utf-8").rstrip("\r")
                entry = split_line(line)
                if entry is None:
                    continue
                username, text = entry
                users[username] = parse_hash(text)
            except UnicodeDecodeError:
                raise ConfigError("not valid UTF-8", path, number) from None
            except ValueError as e:
                raise ConfigError(str(e), path, number) from None
        return cls(users, path)

    def check(self, username: str, password: bytes | None) -> bool | None:
        """True/False for a known user, None for an unknown one (after the same work)."""
        entry = self.users.get(username)
        if entry is None:
            _DUMMY.verify(password or b"")
            return None
        if password is None:
            return False
        return entry.verify(password)

    def entry_text(self, username: str | None) -> str | None:
        """The stored hash text; a changed value on reload means the password changed."""
        if username is None:
            return None
        entry = self.users.get(username)
        return entry.text if entry is not None else None
