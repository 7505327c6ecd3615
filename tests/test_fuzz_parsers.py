"""Arbitrary text into the configuration, password-file and ACL parsers: either it
parses, or a ConfigError names the file and the line, never another exception."""

from __future__ import annotations

from hypothesis import given

from gateway.config import parse
from gateway.errors import ConfigError
from gateway.security.acl import AclFile
from gateway.security.passwords import PasswordFile
from tests.strategies import ACL_FILE, CONFIG_TEXT, PASSWORD_FILE, budget


def _located(e: ConfigError, path: str, lines: int) -> None:
    assert e.path == path, str(e)
    assert 1 <= e.line <= lines, str(e)
    assert str(e).startswith(f"{path}:{e.line}: ")


@budget(300)
@given(text=CONFIG_TEXT)
def test_config_text_raises_only_config_error(text: str) -> None:
    try:
        parse(text, "fuzz.conf")
    except ConfigError as e:
        _located(e, "fuzz.conf", text.count("\n") + 1)


@budget(200)
@given(data=PASSWORD_FILE)
def test_password_file_raises_only_config_error(data: bytes) -> None:
    try:
        PasswordFile.parse(data, "fuzz.passwd")
    except ConfigError as e:
        _located(e, "fuzz.passwd", data.count(b"\n") + 1)


@budget(200)
@given(data=ACL_FILE)
def test_acl_file_raises_only_config_error(data: bytes) -> None:
    try:
        AclFile.parse(data, "fuzz.acl")
    except ConfigError as e:
        _located(e, "fuzz.acl", data.count(b"\n") + 1)
