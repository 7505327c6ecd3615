"""``mqttgateway-passwd``: manage password files the way ``mosquitto_passwd`` does.

Same flags and same file format, so a file written here works in Mosquitto and the
other way round::

    mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I N] [-s SCRAMFILE] [-c | -D] FILE USERNAME
    mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I N] [-s SCRAMFILE] [-c] -b FILE USERNAME PASSWORD
    mqttgateway-passwd [-s SCRAMFILE] -U FILE

``-s`` (a letter ``mosquitto_passwd`` does not use) also writes the user's SCRAM-SHA-256
entry to SCRAMFILE, the gateway's ``scram_file`` (see ``gateway.security.scram``):
SCRAM's stored keys come from the password itself, so they are written whenever a
password is set, and ``-D`` deletes the user from both files. Each file is rewritten
through a temporary file and ``os.replace``, so a crash never leaves half a file; a
new file is created readable by its owner only.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile

from gateway.security import scram
from gateway.security.passwords import DEFAULT_ITERATIONS, PBKDF2, SHA512, make_hash, split_line

USAGE = """\
mqttgateway-passwd is a tool for managing password files for mqttgateway and mosquitto.

Usage: mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-s scramfile] [-c | -D] passwordfile username
       mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-s scramfile] [-c] -b passwordfile username password
       mqttgateway-passwd [-s scramfile] -U passwordfile
 -b : run in batch mode to allow passing passwords on the command line.
 -c : create a new password file. This will overwrite existing files.
 -D : delete the username rather than adding/updating its password.
 -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.
      Mosquitto 1.6 and earlier defaulted to sha512.
 -I : PBKDF2 iterations (default 101, as mosquitto_passwd).
 -s : also write the user's SCRAM-SHA-256 entry to scramfile (MQTT 5 enhanced
      authentication; created if missing, 4096 iterations or -I if higher);
      with -D, delete the user from it too; with -U, add every converted user.
 -U : update a plain text password file to use hashed passwords.
"""

HASHES = {"sha512": SHA512, "sha512-pbkdf2": PBKDF2}


class UsageError(Exception):
    pass


class CommandError(Exception):
    pass


def _parse(argv: list[str]) -> dict:
    opts: dict = {"batch": False, "create": False, "delete": False, "update": False,
                  "kind": PBKDF2, "iterations": DEFAULT_ITERATIONS, "scram": None}
    args = list(argv)
    while args and args[0].startswith("-") and len(args[0]) > 1:
        flag = args.pop(0)
        if flag == "-b":
            opts["batch"] = True
        elif flag == "-c":
            opts["create"] = True
        elif flag == "-D":
            opts["delete"] = True
        elif flag == "-U":
            opts["update"] = True
        elif flag in ("-H", "-I", "-s"):
            if not args:
                raise UsageError(f"{flag} needs an argument")
            value = args.pop(0)
            if flag == "-s":
                opts["scram"] = value
            elif flag == "-H":
                if value not in HASHES:
                    raise UsageError(f"unknown hash type {value!r}")
                opts["kind"] = HASHES[value]
            else:
                if not value.isdigit() or int(value) < 1:
                    raise UsageError(f"invalid iteration count {value!r}")
                opts["iterations"] = int(value)
        elif flag in ("-h", "--help"):
            raise UsageError("")
        else:
            raise UsageError(f"unknown option {flag}")
    if opts["create"] and opts["delete"]:
        raise UsageError("-c and -D cannot be used together")
    if opts["update"]:
        if opts["create"] or opts["delete"] or opts["batch"] or len(args) != 1:
            raise UsageError("-U takes only a password file")
    elif opts["batch"]:
        if opts["delete"] or len(args) != 3:
            raise UsageError("-b needs a password file, a username and a password")
    elif len(args) != 2:
        raise UsageError("expected a password file and a username")
    opts["args"] = args
    return opts


def check_username(username: str) -> None:
    """Mosquitto's rules: no ':' (the separator), no control characters, < 64 KiB."""
    if len(username.encode()) > 65535:
        raise CommandError("Username must be less than 65536 characters long.")
    if any(ord(c) < 32 or ord(c) == 127 for c in username):
        raise CommandError("Username must not contain control characters.")
    if ":" in username:
        raise CommandError("Username must not contain the ':' character.")


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except FileNotFoundError:
        raise CommandError(f"Unable to open file {path} for reading. No such file or directory.") from None
    except OSError as e:
        raise CommandError(f"Unable to open file {path}: {e.strerror}.") from None


def _write_lines(path: str, lines: list[str], create: bool) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    mode = 0o600
    if not create:
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=".mqttgateway-passwd-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_optional(path: str) -> list[str]:
    """A SCRAM file's lines; one that does not exist yet is empty."""
    return _read_lines(path) if os.path.exists(path) else []


def _entries(lines: list[str], scram_file: bool = False) -> list[tuple[str, str] | None]:
    out = []
    for number, line in enumerate(lines, 1):
        try:
            if scram_file:
                entry = scram.split_line(line)
                if entry is not None:
                    scram.parse_entry(entry[1])
            else:
                entry = split_line(line)
            out.append(entry)
        except ValueError:
            what = "SCRAM" if scram_file else "password"
            raise CommandError(f"Corrupt {what} file at line {number}.") from None
    return out


def _put(lines: list[str], entries: dict[str, str], scram_file: bool = False) -> list[str]:
    """``lines`` with each user's line replaced by ``entries[user]`` (at its first
    place; later duplicates dropped), new users appended."""
    out, done = [], set()
    for line, parsed in zip(lines, _entries(lines, scram_file)):
        if parsed is None or parsed[0] not in entries:
            out.append(line)
        elif parsed[0] not in done:
            out.append(entries[parsed[0]])
            done.add(parsed[0])
    return out + [text for user, text in entries.items() if user not in done]


def _without(lines: list[str], username: str, scram_file: bool = False) -> list[str]:
    return [line for line, parsed in zip(lines, _entries(lines, scram_file))
            if parsed is None or parsed[0] != username]


def scram_entry(username: str, password: str, iterations: int) -> str:
    """The ``scram_file`` line; at least RFC 7677's 4096 iterations."""
    return f"{username}:{scram.make_entry(password, max(iterations, scram.DEFAULT_ITERATIONS))}"


def set_password(path: str, username: str, password: str, create: bool,
                 kind: int = PBKDF2, iterations: int = DEFAULT_ITERATIONS,
                 scram_path: str | None = None) -> None:
    """Add or replace *username*'s entry (create a fresh file with ``create``), and
    its SCRAM entry in *scram_path* when given."""
    check_username(username)
    lines = [] if create else _read_lines(path)
    out = _put(lines, {username: f"{username}:{make_hash(password.encode(), kind, iterations)}"})
    if scram_path:
        scram_lines = [] if create else _read_optional(scram_path)
        scram_out = _put(scram_lines, {username: scram_entry(username, password, iterations)}, True)
        _write_lines(scram_path, scram_out, create)
    _write_lines(path, out, create)


def delete_user(path: str, username: str, scram_path: str | None = None) -> None:
    """Remove *username* from the password file and the SCRAM file (from either one
    if it is only there)."""
    lines = _read_lines(path)
    out = _without(lines, username)
    scram_lines = _read_optional(scram_path) if scram_path else []
    scram_out = _without(scram_lines, username, True)
    if len(out) == len(lines) and len(scram_out) == len(scram_lines):
        raise CommandError(f"User {username} not found in password file.")
    if scram_path and len(scram_out) != len(scram_lines):
        _write_lines(scram_path, scram_out, False)
    if len(out) != len(lines):
        _write_lines(path, out, False)


def update_file(path: str, kind: int = PBKDF2, iterations: int = DEFAULT_ITERATIONS,
                scram_path: str | None = None) -> list[str]:
    """Hash every plain-text password; lines already hashed are left as they are. With
    *scram_path*, each converted user gets a SCRAM entry; returns the users that could
    not (their password was already hashed)."""
    lines = _read_lines(path)
    out, scram_entries, skipped = [], {}, []
    for number, (line, parsed) in enumerate(zip(lines, _entries(lines)), 1):
        if parsed is None:
            out.append(line)
        elif parsed[1].startswith(("$6$", "$7$")):
            out.append(line)
            skipped.append(parsed[0])
        elif parsed[1].startswith(scram.NAME + "$"):
            raise CommandError(f"Line {number} is a SCRAM entry: {path} is not a password file.")
        else:
            username, password = parsed
            out.append(f"{username}:{make_hash(password.encode(), kind, iterations)}")
            if scram_path:
                scram_entries[username] = scram_entry(username, password, iterations)
    if scram_path:
        _write_lines(scram_path, _put(_read_optional(scram_path), scram_entries, True), False)
    _write_lines(path, out, False)
    return skipped if scram_path else []


def prompt_password() -> str:
    first = getpass.getpass("Password: ")
    if not first:
        raise CommandError("Empty password.")
    second = getpass.getpass("Reenter password: ")
    if first != second:
        raise CommandError("Passwords do not match.")
    return first


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 success, 1 error, as mosquitto_passwd)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = _parse(argv)
    except UsageError as e:
        if str(e):
            sys.stderr.write(f"Error: {e}\n\n")
        sys.stderr.write(USAGE)
        return 1
    args = opts["args"]
    try:
        scram_path = opts["scram"]
        if opts["update"]:
            for username in update_file(args[0], opts["kind"], opts["iterations"], scram_path):
                sys.stderr.write(f"Warning: {username}'s password was already hashed; "
                                 "no SCRAM entry written (set it again with -s).\n")
        elif opts["delete"]:
            delete_user(args[0], args[1], scram_path)
        else:
            path, username = args[0], args[1]
            check_username(username)
            if not opts["create"]:
                # Fail before prompting, as mosquitto_passwd does.
                _entries(_read_lines(path))
                if scram_path:
                    _entries(_read_optional(scram_path), True)
            password = args[2] if opts["batch"] else prompt_password()
            set_password(path, username, password, opts["create"], opts["kind"], opts["iterations"],
                         scram_path)
    except CommandError as e:
        sys.stderr.write(f"Error: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"Error: {e.filename}: {e.strerror}\n")
        return 1
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write("\n")
        return 1
    return 0


def run() -> None:
    """Console-script wrapper."""
    raise SystemExit(main())


if __name__ == "__main__":
    run()
