"""SCRAM-SHA-256 on its own: the RFC 7677 test vector, stored entries checked against
scramp (an independent implementation), malformed messages, the scram_file parser."""

from __future__ import annotations

import base64

import pytest
from scramp import ScramClient, ScramMechanism

from gateway.errors import ConfigError
from gateway.hub.api import Allowed, AuthContinue, ClientInfo, Denied, Reason
from gateway.security.scram import ScramFile, ScramMethod, derive, make_entry, parse_entry, saslprep

# RFC 7677, section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

CLIENT = ClientInfo("c1")


def method_for(users: dict[str, str], nonce: str = RFC_SERVER_NONCE, salt: bytes | None = None) -> ScramMethod:
    text = "".join(f"{name}:{make_entry(pw, salt=salt)}\n" for name, pw in users.items())
    return ScramMethod(ScramFile.parse(text.encode()), nonce=lambda: nonce)


def test_rfc_7677_test_vector():
    method = method_for({"user": "pencil"}, salt=RFC_SALT)
    first = method.start(CLIENT, RFC_CLIENT_FIRST)
    assert isinstance(first, AuthContinue) and first.data == RFC_SERVER_FIRST
    final = method.step(CLIENT, first.state, RFC_CLIENT_FINAL)
    assert final == Allowed(auth_data=RFC_SERVER_FINAL, username="user")


def test_entries_match_scramp():
    salt, stored, server, iterations = ScramMechanism().make_auth_info("pencil", 4096, RFC_SALT)
    assert derive("pencil", salt, iterations) == (stored, server)
    entry = parse_entry(make_entry("pencil", 4096, RFC_SALT))
    assert (entry.iterations, entry.salt, entry.stored_key, entry.server_key) == (4096, salt, stored, server)


def exchange(method: ScramMethod, username: str, password: str, client: ClientInfo = CLIENT):
    """A whole exchange with scramp's client; the method's last answer."""
    scram = ScramClient(["SCRAM-SHA-256"], username, password)
    first = method.start(client, scram.get_client_first().encode())
    if not isinstance(first, AuthContinue):
        return first
    scram.set_server_first(first.data.decode())
    final = method.step(client, first.state, scram.get_client_final().encode())
    if final:
        scram.set_server_final(final.auth_data.decode())     # raises if the server is wrong
    return final


@pytest.mark.parametrize("username", ["alice", "a,b=c", "jürgen"])
def test_scramp_client_logs_in(username):
    result = exchange(method_for({username: "pässword"}, nonce="servernonce"), username, "pässword")
    assert isinstance(result, Allowed) and result.username == username   # scramp checked v=


def test_wrong_password_and_unknown_user_fail_alike():
    method = method_for({"alice": "secret"})
    assert exchange(method, "alice", "wrong") == Denied(Reason.NOT_AUTHORIZED, "invalid proof for user 'alice'")
    assert exchange(method, "bob", "secret") == Denied(Reason.NOT_AUTHORIZED, "invalid proof for user 'bob'")


def test_unknown_user_gets_a_stable_salt_and_the_usual_iteration_count():
    method = method_for({"alice": "secret"})
    known = method.start(CLIENT, b"n,,n=alice,r=abc").data.split(b",")[1:]
    one = method.start(CLIENT, b"n,,n=mallory,r=abc").data.split(b",")[1:]
    two = method.start(CLIENT, b"n,,n=mallory,r=xyz").data.split(b",")[1:]
    other = method.start(CLIENT, b"n,,n=eve,r=abc").data.split(b",")[1:]
    assert one == two and one != other and one[1] == known[1] == b"i=4096"
    assert len(base64.b64decode(one[0][2:])) == len(base64.b64decode(known[0][2:]))


def test_gs2_header_variants():
    method = method_for({"alice": "secret"})
    assert isinstance(method.start(CLIENT, b"y,,n=alice,r=abc"), AuthContinue)
    assert isinstance(method.start(CLIENT, b"n,a=alice,n=alice,r=abc"), AuthContinue)


@pytest.mark.parametrize("message, reason", [
    (None, "no client-first-message"),
    (b"\xff", "client-first-message is not UTF-8"),
    (b"n=alice,r=abc", "client-first-message: no GS2 header"),
    (b"p=tls-unique,,n=alice,r=abc", "channel binding is not supported"),
    (b"x,,n=alice,r=abc", "client-first-message: bad channel binding flag"),
    (b"n,,m=ext,n=alice,r=abc", "mandatory extension not supported"),
    (b"n,,n=alice", "client-first-message: expected n= and r="),
    (b"n,,r=abc,n=alice", "client-first-message: expected n="),
    (b"n,,n=,r=abc", "empty username"),
    (b"n,,n=al=ice,r=abc", "invalid '=' escape in a name"),
    (b"n,,n=alice,r=a\x7fc", "client-first-message: bad nonce"),
    (b"n,a=bob,n=alice,r=abc", "authorization identity differs from the username"),
])
def test_malformed_client_first_message(message, reason):
    assert method_for({"alice": "secret"}).start(CLIENT, message) == Denied(Reason.NOT_AUTHORIZED, reason)


@pytest.mark.parametrize("final, reason", [
    (None, "no client-final-message"),
    (b"c=biws,r=NONCE", "client-final-message: expected c=, r= and p="),
    (b"r=NONCE,c=biws,p=AAAA", "client-final-message: expected c="),
    (b"c=eSws,r=NONCE,p=AAAA", "channel binding data differs from the GS2 header"),
    (b"c=biws,r=other,p=AAAA", "nonce mismatch"),
    (b"c=biws,r=NONCE,p=!!", "client-final-message: proof is not base64"),
    (b"c=biws,r=NONCE,p=AAAA", "invalid proof for user 'alice'"),
])
def test_malformed_client_final_message(final, reason):
    method = method_for({"alice": "secret"}, nonce="srv")
    first = method.start(CLIENT, b"n,,n=alice,r=cli")
    if final is not None:
        final = final.replace(b"NONCE", b"clisrv")
    assert method.step(CLIENT, first.state, final) == Denied(Reason.NOT_AUTHORIZED, reason)


def test_the_connect_username_must_be_the_scram_username():
    method = method_for({"alice": "secret"})
    assert exchange(method, "alice", "secret", ClientInfo("c1", username="alice"))
    assert exchange(method, "alice", "secret", ClientInfo("c1", username="bob")) == Denied(
        Reason.NOT_AUTHORIZED, "username differs from the CONNECT's")


def test_saslprep():
    assert saslprep("I\u00adX") == "IX"                  # soft hyphen: mapped to nothing
    assert saslprep("a\u00a0b") == "a b"                  # non-ASCII space: mapped to space
    assert saslprep("\u2168") == "IX"                     # NFKC
    with pytest.raises(ValueError):
        saslprep("a\x07b")                                # control character
    # A password SASLprep refuses is used as it is (as PostgreSQL does).
    assert derive("a\x07b", RFC_SALT, 1) != derive("ab", RFC_SALT, 1)


def test_scram_file_parser():
    good = make_entry("pw")
    data = f"# users\n\nalice:{good}\n  bob : {good}\n".encode()
    assert sorted(ScramFile.parse(data).users) == ["alice", "bob"]
    assert ScramFile.parse(data).entry_text("alice") == good


@pytest.mark.parametrize("line, reason", [
    ("alice", "expected username:SCRAM-SHA-256$..."),
    (":SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA", "expected username:SCRAM-SHA-256$..."),
    ("alice:$7$101$abc$def", "expected SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY"),
    ("alice:SCRAM-SHA-1$4096:c2FsdA==$AAAA:AAAA", "expected SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY"),
    ("alice:SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA", "invalid iteration count '0'"),
    ("alice:SCRAM-SHA-256$4096:!!$AAAA:AAAA", "salt is not valid base64"),
    ("alice:SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA", "StoredKey and ServerKey must be 32 bytes"),
])
def test_scram_file_errors_name_the_line(line, reason):
    with pytest.raises(ConfigError) as e:
        ScramFile.parse(f"# users\n{line}\n".encode(), "scram")
    assert str(e.value) == f"scram:2: {reason}"
