"""Password files: Mosquitto's formats, both directions, and file:line errors."""

from __future__ import annotations

import subprocess

import pytest

from gateway.errors import ConfigError
from gateway.security.passwords import PBKDF2, SHA512, PasswordFile, make_hash, parse_hash


def mosquitto_passwd(*args: str) -> None:
    subprocess.run(["mosquitto_passwd", *args], check=True, capture_output=True, timeout=30)


def test_file_written_by_mosquitto_passwd_verifies(tmp_path):
    path = str(tmp_path / "pw")
    mosquitto_passwd("-c", "-b", path, "alice", "secret")                  # $7$, 2.x default
    mosquitto_passwd("-H", "sha512", "-b", path, "bob", "hunter2")          # $6$, 1.x format
    pw = PasswordFile.load(path)
    assert pw.users["alice"].kind == PBKDF2 and pw.users["bob"].kind == SHA512
    assert pw.check("alice", b"secret") is True
    assert pw.check("bob", b"hunter2") is True
    assert pw.check("alice", b"hunter2") is False
    assert pw.check("alice", None) is False
    assert pw.check("mallory", b"secret") is None          # unknown user


@pytest.mark.parametrize("kind", [PBKDF2, SHA512])
def test_make_hash_roundtrip(kind):
    entry = parse_hash(make_hash(b"pw", kind))
    assert entry.verify(b"pw") and not entry.verify(b"pW")


def test_hash_text_is_kept_to_spot_changes():
    text = make_hash(b"x")
    pw = PasswordFile.parse(f"u:{text}\n".encode())
    assert pw.entry_text("u") == text and pw.entry_text("v") is None and pw.entry_text(None) is None


def test_comments_blank_lines_and_crlf_are_accepted():
    text = make_hash(b"x")
    pw = PasswordFile.parse(f"# users\n\nu:{text}\r\n".encode())
    assert pw.check("u", b"x")


@pytest.mark.parametrize("line, reason", [
    ("alice", "expected username:hash"),
    ("alice:", "no password for user 'alice'"),
    (":$6$abc$def", "empty username"),
    ("alice:plaintext", "password is not hashed"),
    ("alice:$5$abc$def", "unknown password hash type"),
    ("alice:$7$0$AAAAAAAAAAAAAAAA$" + "A" * 88, "invalid iteration count"),
    ("alice:$6$AAAA$" + "A" * 88, "salt must be 12 bytes"),
    ("alice:$6$AAAAAAAAAAAAAAAA$AAAA", "hash must be 64 bytes"),
    ("alice:$6$!!!!$AAAA", "not valid base64"),
])
def test_malformed_line_is_reported_with_file_and_line(tmp_path, line, reason):
    path = tmp_path / "pw"
    path.write_text(f"ok:{make_hash(b'x')}\n# comment\n{line}\n")
    with pytest.raises(ConfigError) as e:
        PasswordFile.load(str(path))
    assert (e.value.path, e.value.line) == (str(path), 3)
    assert str(e.value).startswith(f"{path}:3: {reason}")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        PasswordFile.load(str(tmp_path / "none"))
    assert "cannot read password file" in str(e.value)
