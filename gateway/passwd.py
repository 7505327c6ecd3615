"""``mqttgateway-passwd``: manage password files the way ``mosquitto_passwd`` does.

Same flags and same file format, so a file written here works in Mosquitto and the
other way round::

    mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I N] [-c | -D] FILE USERNAME
    mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I N] [-c] -b FILE USERNAME PASSWORD
    mqttgateway-passwd -U FILE

The file is rewritten through a temporary file and ``os.replace``, so a crash never
leaves half a file; a new file is created readable by its owner only.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile

from gateway.security.passwords import DEFAULT_ITERATIONS, PBKDF2, SHA512, make_hash, split_line

USAGE = """\
mqttgateway-passwd is a tool for managing password files for mqttgateway and mosquitto.

Usage: mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile username
       mqttgateway-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b passwordfile username password
       mqttgateway-passwd -U passwordfile
 -b : run in batch mode to allow passing passwords on the command line.
 -c : create a new password file. This will overwrite existing files.
 -D : delete the username rather than adding/updating its password.
 -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.
      Mosquitto 1.6 and earlier defaulted to sha512.
 -I : PBKDF2 iterations (default 101, as mosquitto_passwd).
 -U : update a plain text password file to use hashed passwords.
"""

HASHES = {"sha512": SHA512, "sha512-pbkdf2": PBKDF2}


class UsageError(Exception):
    pass


class CommandError(Exception):
    pass


def _parse(argv: list[str]) -> dict:
    opts: dict = {"batch": False, "create": False, "delete": False, "update": False,
                  "kind": PBKDF2, "iterations": DEFAULT_ITERATIONS}
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
        elif flag in ("-H", "-I"):
            if not args:
                raise UsageError(f"{flag} needs an argument")
            value = args.pop(0)
            if flag == "-H":
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


def _entries(lines: list[str]) -> list[tuple[str, str] | None]:
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(split_line(line))
        except ValueError:
            raise CommandError(f"Corrupt password file at line {number}.") from None
    return out


def set_password(path: str, username: str, password: str, create: bool,
                 kind: int = PBKDF2, iterations: int = DEFAULT_ITERATIONS) -> None:
    """Add or replace *username*'s entry (create a fresh file with ``create``)."""
    check_username(username)
    entry = f"{username}:{make_hash(password.encode(), kind, iterations)}"
    lines = [] if create else _read_lines(path)
    out, found = [], False
    for line, parsed in zip(lines, _entries(lines)):
        if parsed is not None and parsed[0] == username:
            if not found:
                out.append(entry)
            found = True
        else:
            out.append(line)
    if not found:
        out.append(entry)
    _write_lines(path, out, create)


def delete_user(path: str, username: str) -> None:
    lines = _read_lines(path)
    out = [line for line, parsed in zip(lines, _entries(lines))
           if parsed is None or parsed[0] != username]
    if len(out) == len(lines):
        raise CommandError(f"User {username} not found in password file.")
    _write_lines(path, out, False)


def update_file(path: str, kind: int = PBKDF2, iterations: int = DEFAULT_ITERATIONS) -> None:
    """Hash every plain-text password; lines already hashed are left as they are."""
    lines = _read_lines(path)
    out = []
    for line, parsed in zip(lines, _entries(lines)):
        if parsed is None or parsed[1].startswith(("$6$", "$7$")):
            out.append(line)
        else:
            out.append(f"{parsed[0]}:{make_hash(parsed[1].encode(), kind, iterations)}")
    _write_lines(path, out, False)


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
        if opts["update"]:
            update_file(args[0], opts["kind"], opts["iterations"])
        elif opts["delete"]:
            delete_user(args[0], args[1])
        else:
            path, username = args[0], args[1]
            check_username(username)
            if not opts["create"]:
                _read_lines(path)      # fail before prompting, as mosquitto_passwd does
            password = args[2] if opts["batch"] else prompt_password()
            set_password(path, username, password, opts["create"], opts["kind"], opts["iterations"])
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
