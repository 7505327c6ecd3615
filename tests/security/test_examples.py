"""The shipped example files load, and mean what their comments say."""

from __future__ import annotations

from gateway.security.acl import AclFile
from gateway.hub.api import ClientInfo
from gateway.security.passwords import PasswordFile
from tests.conftest import REPO


def test_passwd_example():
    pw = PasswordFile.load(str(REPO / "etc" / "passwd.example"))
    assert pw.check("alice", b"alice-pw") and pw.check("ingest", b"ingest-pw")


def test_acl_example():
    acl = AclFile.load(str(REPO / "etc" / "acl.example"))
    alice = ClientInfo("phone", username="alice")
    assert acl.check(alice, "read", "dashboard/temp")
    assert not acl.check(alice, "read", "dashboard/alarm/codes")
    assert acl.check(ClientInfo("d1"), "write", "devices/d1/state")
    assert acl.check(ClientInfo("d1"), "read", "public/x")
    assert not acl.check(ClientInfo("d1"), "read", "devices/d2/command")
