"""The gateway as a TLS client (for bridges): service-identity checks the server's name."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import SSL4ClientEndpoint
from OpenSSL import SSL
from service_identity import VerificationError

from gateway.config import Listener
from gateway.tls import ServerTLS, client_options
from tests.security.pki import make_pki

# Twisted's own client-certificate path still hands pyOpenSSL X509/PKey objects (NOTES.md §6).
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


class Greeter(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello")


class Reader(protocol.Protocol):
    def __init__(self) -> None:
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.data == b"hello" and not self.done.called:
            self.done.callback(self.data)
            self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        if not self.done.called:
            self.done.errback(reason)


@pytest.fixture
def server(tmp_path):
    pki = make_pki(tmp_path)
    tls = ServerTLS(Listener(0, certfile=pki["server"], keyfile=pki["server_key"],
                             cafile=pki["ca"], require_certificate=True))
    port = reactor.listenSSL(0, protocol.Factory.forProtocol(Greeter), tls, interface="127.0.0.1")
    yield pki, port.getHost().port
    port.stopListening()


async def talk(port: int, options) -> bytes:
    reader = Reader()
    endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, options)
    await endpoint.connect(protocol.Factory.forProtocol(lambda: reader))
    return await reader.done


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
async def test_verified_server_name(server, hostname):
    pki, port = server
    options = client_options(hostname, pki["ca"], pki["client"], pki["client_key"])
    assert await talk(port, options) == b"hello"


@pytest_twisted.ensureDeferred
async def test_wrong_name_is_refused(server):
    pki, port = server
    with pytest.raises(VerificationError) as e:
        await talk(port, client_options("wronghost", pki["ca"], pki["client"], pki["client_key"]))
    assert "DNSMismatch" in repr(e.value)


@pytest_twisted.ensureDeferred
async def test_unknown_ca_is_refused(server):
    pki, port = server
    with pytest.raises(SSL.Error) as e:
        await talk(port, client_options("localhost", pki["other_ca"], pki["client"], pki["client_key"]))
    assert "certificate verify failed" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_ca_directory(server, tmp_path):
    pki, port = server
    cas = tmp_path / "cas"
    cas.mkdir()
    (cas / "ca.pem").write_bytes(open(pki["ca"], "rb").read())
    (cas / "ca.crl").write_bytes(open(pki["crl"], "rb").read())   # no certificate: skipped
    options = client_options("localhost", None, pki["client"], pki["client_key"], capath=str(cas))
    assert await talk(port, options) == b"hello"


@pytest_twisted.ensureDeferred
async def test_insecure_skips_the_name_not_the_chain(server):
    pki, port = server
    insecure = client_options("wronghost", pki["ca"], pki["client"], pki["client_key"], insecure=True)
    assert await talk(port, insecure) == b"hello"
    with pytest.raises(SSL.Error):
        await talk(port, client_options("wronghost", pki["other_ca"], pki["client"], pki["client_key"],
                                        insecure=True))


@pytest_twisted.ensureDeferred
async def test_lowest_version(server):
    pki, port = server
    options = client_options("localhost", pki["ca"], pki["client"], pki["client_key"],
                             tls_version="tlsv1.3", alpn="mqtt")
    assert await talk(port, options) == b"hello"


def test_a_ca_file_without_certificates_is_an_error(tmp_path):
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ValueError):
        client_options("localhost", str(tmp_path / "empty.pem"))
