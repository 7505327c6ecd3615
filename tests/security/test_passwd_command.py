"""``mqttgateway-passwd``, used like ``mosquitto_passwd``, and its files in a real Mosquitto."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from gateway.security.passwords import PBKDF2, SHA512, PasswordFile, make_hash
from gateway.security.scram import ScramFile, ScramMethod, make_entry
from tests.conftest import free_port, gateway_env
from tests.security.helpers import WAIT
from tests.security.test_scram import exchange


def passwd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.passwd", *args], env=gateway_env(), input=stdin,
                          capture_output=True, text=True, timeout=WAIT)


def test_create_batch_update_and_delete(tmp_path):
    path = str(tmp_path / "pw")
    assert passwd("-c", "-b", path, "alice", "secret").returncode == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert passwd("-b", path, "bob", "hunter2").returncode == 0
    assert passwd("-H", "sha512", "-b", path, "carol", "pw").returncode == 0
    assert passwd("-b", path, "alice", "changed").returncode == 0       # replaces, keeps order
    pw = PasswordFile.load(path)
    assert list(pw.users) == ["alice", "bob", "carol"]
    assert pw.users["carol"].kind == SHA512 and pw.users["alice"].kind == PBKDF2
    assert pw.check("alice", b"changed") and pw.check("bob", b"hunter2") and pw.check("carol", b"pw")
    assert passwd("-D", path, "bob").returncode == 0
    assert "bob" not in PasswordFile.load(path).users
    missing = passwd("-D", path, "bob")
    assert missing.returncode == 1 and "User bob not found" in missing.stderr


def test_interactive_prompt(tmp_path):
    path = str(tmp_path / "pw")
    done = passwd("-c", path, "alice", stdin="s3cret\ns3cret\n")
    assert done.returncode == 0, done.stderr
    assert PasswordFile.load(path).check("alice", b"s3cret")
    mismatch = passwd(path, "alice", stdin="one\ntwo\n")
    assert mismatch.returncode == 1 and "Passwords do not match" in mismatch.stderr
    assert PasswordFile.load(path).check("alice", b"s3cret")          # file untouched


def test_upgrade_plain_text_file(tmp_path):
    path = tmp_path / "pw"
    path.write_text("# users\nalice:secret\nbob:hunter2\n")
    assert passwd("-U", str(path)).returncode == 0
    pw = PasswordFile.load(str(path))
    assert pw.check("alice", b"secret") and pw.check("bob", b"hunter2")
    assert path.read_text().startswith("# users\n")
    before = path.read_text()
    assert passwd("-U", str(path)).returncode == 0                    # hashed lines stay
    assert path.read_text() == before


@pytest.mark.parametrize("args, message", [
    ([], "expected a password file and a username"),
    (["-c", "-D", "f", "u"], "-c and -D cannot be used together"),
    (["-b", "f", "u"], "-b needs"),
    (["-H", "md5", "f", "u"], "unknown hash type"),
    (["-U", "f", "extra"], "-U takes only a password file"),
])
def test_usage_errors(args, message):
    done = passwd(*args)
    assert done.returncode == 1 and message in done.stderr and "Usage:" in done.stderr


def test_bad_username_and_missing_file(tmp_path):
    path = str(tmp_path / "pw")
    assert "':' character" in passwd("-c", "-b", path, "a:b", "pw").stderr
    done = passwd("-b", path, "alice", "pw")
    assert done.returncode == 1 and "No such file" in done.stderr


# -- -s: the SCRAM file next to the password file ------------------------------------


def scram_logs_in(path, username: str, password: str) -> bool:
    """A whole SCRAM exchange (scramp's client) against the file at ``path``."""
    return bool(exchange(ScramMethod(ScramFile.load(str(path))), username, password))


def test_scram_entries_follow_create_batch_and_delete(tmp_path):
    pw, scram = str(tmp_path / "pw"), tmp_path / "scram"
    assert passwd("-s", str(scram), "-c", "-b", pw, "alice", "secret").returncode == 0
    assert stat.S_IMODE(os.stat(scram).st_mode) == 0o600
    assert passwd("-s", str(scram), "-b", pw, "bob", "hunter2").returncode == 0
    assert passwd("-b", pw, "carol", "pw").returncode == 0               # no -s: password file only
    assert passwd("-s", str(scram), "-b", pw, "alice", "changed").returncode == 0
    assert list(ScramFile.load(str(scram)).users) == ["alice", "bob"]
    assert scram_logs_in(scram, "alice", "changed") and not scram_logs_in(scram, "alice", "secret")
    assert scram_logs_in(scram, "bob", "hunter2")
    assert PasswordFile.load(pw).check("alice", b"changed")
    assert passwd("-s", str(scram), "-D", pw, "bob").returncode == 0
    assert "bob" not in PasswordFile.load(pw).users and "bob" not in ScramFile.load(str(scram)).users
    assert passwd("-s", str(scram), "-D", pw, "carol").returncode == 0   # only in the password file
    missing = passwd("-s", str(scram), "-D", pw, "carol")
    assert missing.returncode == 1 and "User carol not found" in missing.stderr


def test_scram_file_is_created_beside_an_existing_password_file(tmp_path):
    pw, scram = str(tmp_path / "pw"), tmp_path / "scram"
    assert passwd("-c", "-b", pw, "alice", "secret").returncode == 0
    done = passwd("-s", str(scram), pw, "bob", stdin="s3cret\ns3cret\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(scram).st_mode) == 0o600
    assert list(PasswordFile.load(pw).users) == ["alice", "bob"]
    assert scram_logs_in(scram, "bob", "s3cret")


def test_create_starts_both_files_afresh(tmp_path):
    pw, scram = str(tmp_path / "pw"), tmp_path / "scram"
    assert passwd("-s", str(scram), "-c", "-b", pw, "alice", "secret").returncode == 0
    assert passwd("-s", str(scram), "-c", "-b", pw, "bob", "pw").returncode == 0
    assert list(ScramFile.load(str(scram)).users) == ["bob"]


def test_scram_iterations_are_at_least_4096(tmp_path):
    pw, scram = str(tmp_path / "pw"), str(tmp_path / "scram")
    assert passwd("-s", scram, "-c", "-b", pw, "alice", "pw").returncode == 0
    assert passwd("-s", scram, "-I", "5000", "-b", pw, "bob", "pw").returncode == 0
    users = ScramFile.load(scram).users
    assert (users["alice"].iterations, users["bob"].iterations) == (4096, 5000)
    assert PasswordFile.load(pw).users["bob"].iterations == 5000


def test_corrupt_scram_file_is_reported_before_the_prompt(tmp_path):
    pw, scram = str(tmp_path / "pw"), tmp_path / "scram"
    assert passwd("-c", "-b", pw, "alice", "secret").returncode == 0
    scram.write_text("alice:$7$101$abc$def\n")
    before = (tmp_path / "pw").read_text()
    done = passwd("-s", str(scram), pw, "bob")            # no stdin: it must not prompt
    assert done.returncode == 1 and "Corrupt SCRAM file at line 1." in done.stderr
    assert (tmp_path / "pw").read_text() == before


def test_update_writes_scram_entries_for_plain_text_passwords(tmp_path):
    plain, scram = tmp_path / "pw", tmp_path / "scram"
    plain.write_text(f"alice:secret\nbob:{make_hash(b'hunter2')}\ncarol:pw\n")
    done = passwd("-s", str(scram), "-U", str(plain))
    assert done.returncode == 0
    assert "bob's password was already hashed" in done.stderr
    assert list(ScramFile.load(str(scram)).users) == ["alice", "carol"]
    assert scram_logs_in(scram, "alice", "secret") and scram_logs_in(scram, "carol", "pw")
    assert PasswordFile.load(str(plain)).check("alice", b"secret")


def test_update_refuses_a_scram_file(tmp_path):
    path = tmp_path / "scram"
    path.write_text(f"alice:{make_entry('pw')}\n")
    done = passwd("-U", str(path))
    assert done.returncode == 1 and "Line 1 is a SCRAM entry" in done.stderr


def test_usage_mentions_the_scram_option():
    done = passwd("-s")
    assert done.returncode == 1 and "-s needs an argument" in done.stderr and " -s : " in done.stderr


def test_file_from_mosquitto_passwd_is_edited_in_place(tmp_path):
    path = str(tmp_path / "pw")
    subprocess.run(["mosquitto_passwd", "-c", "-b", path, "alice", "secret"], check=True, timeout=WAIT)
    assert passwd("-b", path, "bob", "pw").returncode == 0
    pw = PasswordFile.load(path)
    assert pw.check("alice", b"secret") and pw.check("bob", b"pw")


def test_file_from_mqttgateway_passwd_works_in_mosquitto(tmp_path):
    path = tmp_path / "pw"
    assert passwd("-c", "-b", str(path), "alice", "secret").returncode == 0
    assert passwd("-H", "sha512", "-b", str(path), "bob", "hunter2").returncode == 0
    broker, port = start_mosquitto(tmp_path, f"allow_anonymous false\npassword_file {path}\n")
    try:
        def pub(user: str, password: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                   "-u", user, "-P", password, "-t", "t", "-m", "x"],
                                  capture_output=True, timeout=WAIT)

        assert pub("alice", "secret").returncode == 0
        assert pub("bob", "hunter2").returncode == 0
        refused = pub("alice", "wrong")
        assert refused.returncode != 0 and b"not authori" in refused.stderr
    finally:
        broker.terminate()
        broker.wait(WAIT)


def start_mosquitto(directory, settings: str) -> tuple[subprocess.Popen[bytes], int]:
    """A real Mosquitto on a free port; a port taken meanwhile is replaced by another."""
    # As root, Mosquitto would switch to the "mosquitto" user and lose access to tmp_path.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf = directory / "mosquitto.conf"
    for _ in range(5):
        port = free_port()
        conf.write_text(f"{user}listener {port} 127.0.0.1\n{settings}")
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT
        while broker.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return broker, port
            except OSError:
                time.sleep(0.05)
        broker.kill()
        broker.wait()
    raise AssertionError("mosquitto did not start")
