"""TLS for listeners: Mosquitto's ``certfile``/``keyfile``/``cafile``... keys on pyOpenSSL.

A listener with ``certfile`` and ``keyfile``, or with ``psk_hint`` (TLS-PSK, keys from
``psk_file``: ``gateway.psk``), speaks TLS; a CoAP or MQTT-SN listener with them speaks
DTLS 1.2 (``gateway.dtls``), from a context built here too. ``ServerTLS.getContext()`` is
asked once per new connection (Twisted's ``listenSSL`` does so), so swapping the
context on SIGHUP serves the new certificates to new connections while established
ones keep theirs, as Mosquitto does.

Mosquitto semantics kept: ``require_certificate false`` does not ask for a client
certificate at all; ``tls_version`` is the *minimum* version (default: TLS 1.2);
``use_identity_as_username`` takes the certificate's CN (on a PSK listener: the PSK
identity) as the username and ``use_subject_as_username`` the certificate's whole
subject (RFC 2253 form); with either, the CONNECT's username and password are ignored.
Beyond Mosquitto, which ignores ``psk_hint`` on a listener with a certificate, a
listener with both accepts both kinds of client.

Problems with the files are reported at the config line that names them
(``gateway.conf:7: certfile: cannot load ...``) and stop startup or fail a reload.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.logger import Logger
from zope.interface import implementer

from gateway.errors import ConfigError
from gateway.psk import PskFile, psk_identity, use_psk

TLS_VERSIONS = {
    "tlsv1.1": SSL.TLS1_1_VERSION,
    "tlsv1.2": SSL.TLS1_2_VERSION,
    "tlsv1.3": SSL.TLS1_3_VERSION,
}
TLS_KEYS = ("cafile", "capath", "certfile", "keyfile", "tls_version", "ciphers",
            "require_certificate", "use_identity_as_username", "use_subject_as_username",
            "crlfile", "psk_hint")
#: Listener protocols that speak DTLS with the same keys.
DTLS_PROTOCOLS = frozenset({"coap", "mqttsn"})


def is_tls(listener: Any) -> bool:
    return bool(getattr(listener, "certfile", None) or getattr(listener, "keyfile", None)
                or getattr(listener, "psk_hint", None))


def is_dtls(listener: Any) -> bool:
    return is_tls(listener) and getattr(listener, "protocol", "mqtt") in DTLS_PROTOCOLS


@functools.lru_cache(maxsize=1)
def dtls_ciphers() -> str:
    """OpenSSL's default suites, then the AES-CCM ones it leaves out: constrained DTLS
    stacks often offer nothing else. (CCM_8, CoAP's mandatory suite, also needs a lower
    security level in OpenSSL 3.2 and later: a ``ciphers`` line with ``@SECLEVEL=0``.)
    Spelled out name by name: ``DEFAULT:AESCCM`` adds nothing, as DEFAULT's ``!``
    removes the CCM suites for good."""
    names = SSL.Connection(SSL.Context(SSL.DTLS_SERVER_METHOD)).get_cipher_list()
    ccm = SSL.Context(SSL.DTLS_SERVER_METHOD)
    ccm.set_cipher_list(b"AESCCM")
    names += SSL.Connection(ccm).get_cipher_list()
    return ":".join(dict.fromkeys(n for n in names if not n.startswith("TLS_")))


def _error(listener: Any, key: str, reason: str) -> ConfigError:
    lines = getattr(listener, "lines", None) or {}
    path, line = lines.get(key) or getattr(listener, "source", ("<config>", 0))
    return ConfigError(reason, path, line, key)


def _openssl_reason(e: Exception) -> str:
    if isinstance(e, SSL.Error) and e.args and isinstance(e.args[0], list):
        reasons = [str(item[2]) for item in e.args[0] if len(item) > 2]
        if reasons:
            return ", ".join(reasons)
    return str(e) or type(e).__name__


def _readable(listener: Any, key: str, path: str, directory: bool = False) -> None:
    ok = os.path.isdir(path) if directory else os.path.isfile(path)
    if not ok or not os.access(path, os.R_OK):
        what = "directory" if directory else "file"
        raise _error(listener, key, f"cannot read {what} {path!r}")


#: Listener protocols that speak TLS with certfile/keyfile (the HTTP API: HTTPS), and
#: those that may use a pre-shared key instead (psk_hint).
TLS_PROTOCOLS = frozenset({"mqtt", "websockets", "http_api"}) | DTLS_PROTOCOLS
PSK_PROTOCOLS = frozenset({"mqtt"}) | DTLS_PROTOCOLS


def check_settings(listener: Any) -> None:
    """Combinations Mosquitto refuses, reported at the offending line."""
    if not is_tls(listener):
        for key in TLS_KEYS:
            if getattr(listener, key, None) not in (None, False):
                raise _error(listener, key, "needs certfile and keyfile (or psk_hint) on the "
                                            "same listener")
        return
    protocol = getattr(listener, "protocol", "mqtt")
    psk = getattr(listener, "psk_hint", None)
    if protocol not in TLS_PROTOCOLS:
        raise _error(listener, "certfile", "TLS is for protocol mqtt, websockets, http_api, "
                                           "coap and mqttsn listeners only")
    if psk and protocol not in PSK_PROTOCOLS:
        raise _error(listener, "psk_hint", "TLS-PSK is for protocol mqtt, coap and mqttsn "
                                           "listeners only")
    if listener.keyfile and not listener.certfile:
        raise _error(listener, "keyfile", "keyfile without certfile")
    if listener.certfile and not listener.keyfile:
        raise _error(listener, "certfile", "certfile without keyfile")
    if protocol in DTLS_PROTOCOLS and listener.tls_version:
        raise _error(listener, "tls_version", "a CoAP or MQTT-SN listener speaks DTLS 1.2 only")
    if getattr(listener, "mqttsn_multicast", None):
        raise _error(listener, "mqttsn_multicast", "discovery cannot be encrypted: give it a "
                                                   "listener without DTLS")
    if not listener.certfile:
        for key in ("cafile", "capath", "crlfile", "require_certificate", "use_subject_as_username"):
            if getattr(listener, key, None) not in (None, False):
                raise _error(listener, key, "needs certfile and keyfile: a PSK handshake has no "
                                            "client certificate")
    if listener.require_certificate and not (listener.cafile or listener.capath):
        raise _error(listener, "require_certificate", "needs cafile or capath to verify clients")
    # use_identity_as_username without require_certificate is valid, as in Mosquitto:
    # a certificate is asked for, and a client without one is refused at CONNECT.


def build_context(listener: Any, psk: PskFile | None = None) -> SSL.Context:
    """A server context from the listener's TLS keys (DTLS for CoAP and MQTT-SN),
    serving the keys of ``psk`` if it has ``psk_hint``; ConfigError on any bad file."""
    check_settings(listener)
    dtls = is_dtls(listener)
    if dtls:
        from gateway.dtls.cookies import prepare_context

        ctx = prepare_context(SSL.Context(SSL.DTLS_SERVER_METHOD))
    else:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(TLS_VERSIONS.get(listener.tls_version or "tlsv1.2",
                                                   SSL.TLS1_2_VERSION))
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    if listener.certfile:
        _load_certificate(ctx, listener)
    if listener.psk_hint:
        if psk is None:
            raise _error(listener, "psk_hint", "needs a psk_file with the clients' keys")
        use_psk(ctx, listener.psk_hint, psk.key)
    ciphers = listener.ciphers or (dtls_ciphers() if dtls else None)
    if ciphers:
        try:
            ctx.set_cipher_list(ciphers.encode())
        except SSL.Error as e:
            raise _error(listener, "ciphers", f"no usable cipher in {ciphers!r}: "
                         f"{_openssl_reason(e)}") from None
    if listener.certfile:
        _load_verification(ctx, listener)
    return ctx


def _load_certificate(ctx: SSL.Context, listener: Any) -> None:
    _readable(listener, "certfile", listener.certfile)
    _readable(listener, "keyfile", listener.keyfile)
    try:
        ctx.use_certificate_chain_file(listener.certfile)
    except SSL.Error as e:
        raise _error(listener, "certfile", f"cannot load certificate {listener.certfile!r}: "
                     f"{_openssl_reason(e)}") from None
    try:
        ctx.use_privatekey_file(listener.keyfile)
        ctx.check_privatekey()
    except SSL.Error as e:
        raise _error(listener, "keyfile", f"cannot use private key {listener.keyfile!r}: "
                     f"{_openssl_reason(e)}") from None


def _load_verification(ctx: SSL.Context, listener: Any) -> None:
    """Client certificates: the CAs, the CRL, and whether one is required."""
    if listener.cafile or listener.capath:
        if listener.cafile:
            _readable(listener, "cafile", listener.cafile)
        if listener.capath:
            _readable(listener, "capath", listener.capath, directory=True)
        try:
            ctx.load_verify_locations(listener.cafile, listener.capath)
        except SSL.Error as e:
            key = "cafile" if listener.cafile else "capath"
            raise _error(listener, key, f"cannot load CA certificates: {_openssl_reason(e)}") from None
    if listener.crlfile:
        _readable(listener, "crlfile", listener.crlfile)
        try:
            with open(listener.crlfile, "rb") as fh:
                data = fh.read()
            crl = (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
                   else x509.load_der_x509_crl(data))
            store = ctx.get_cert_store()
            assert store is not None
            store.add_crl(crl)
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
        except (ValueError, crypto.Error) as e:
            raise _error(listener, "crlfile", f"cannot load CRL {listener.crlfile!r}: {e}") from None
    if listener.require_certificate:
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        ctx.set_session_id(b"mqttgateway")
    elif uses_certificate_identity(listener) and (listener.cafile or listener.capath):
        ctx.set_verify(SSL.VERIFY_PEER)  # asked for, checked if given, not required
        ctx.set_session_id(b"mqttgateway")


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """Twisted's context-factory interface around a context that reload() replaces."""

    log = Logger()

    def __init__(self, listener: Any, psk: PskFile | None = None) -> None:
        self.listener = listener
        self._context = build_context(listener, psk)

    def getContext(self) -> SSL.Context:
        return self._context

    def swap(self, context: SSL.Context, listener: Any) -> None:
        """Serve *context* (from ``build_context``) to connections from now on."""
        self._context = context
        self.listener = listener


def certificate_username(link: Any, listener: Any, username: str | None) -> str | None:
    """The username a CONNECT counts as: the CONNECT's, or the certificate's identity.

    With ``use_identity_as_username``/``use_subject_as_username`` the certificate
    decides (or, after a PSK handshake, the PSK identity); without a usable
    certificate the result is None and the client is refused. ``link`` is a TLS
    transport, or anything with its ``getHandle`` and ``getPeerCertificate``.
    """
    by_cn = getattr(listener, "use_identity_as_username", False)
    by_subject = getattr(listener, "use_subject_as_username", False)
    if not (by_cn or by_subject):
        return username
    if by_cn and getattr(listener, "psk_hint", None):
        handle = getattr(link, "getHandle", None)
        identity = psk_identity(handle()) if handle is not None else None
        if identity is not None:
            return identity if "\x00" not in identity else None
    get = getattr(link, "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return None
    subject = cert.to_cryptography().subject
    if by_subject:
        return subject.rfc4514_string()
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return text if "\x00" not in text else None


def uses_certificate_identity(listener: Any) -> bool:
    return bool(getattr(listener, "use_identity_as_username", False)
                or getattr(listener, "use_subject_as_username", False))


def client_options(hostname: str, cafile: str | None = None, certfile: str | None = None,
                   keyfile: str | None = None, *, capath: str | None = None,
                   insecure: bool = False, tls_version: str | None = None,
                   alpn: str | None = None) -> Any:
    """TLS options for the gateway as a client (bridges): the server's certificate must
    chain to *cafile*/*capath* (or the system's roots) and name *hostname*
    (service-identity checks DNS names and IP addresses) unless *insecure*, which
    still checks the chain, as Mosquitto's ``bridge_insecure``; *certfile*/*keyfile*
    present a client certificate; *tls_version* is the lowest version accepted (TLS
    1.2 by default) and *alpn* the protocol offered."""
    from twisted.internet import ssl

    cas = [ssl.Certificate.loadPEM(pem) for path in _ca_files(cafile, capath)
           for pem in _pem_certificates(path)]
    if (cafile or capath) and not cas:
        raise ValueError(f"no PEM certificate in {cafile or capath!r}")
    trust = ssl.trustRootFromCertificates(cas) if cas else ssl.platformTrust()
    client_cert = None
    if certfile:
        with open(certfile, "rb") as fh:
            cert_pem = fh.read()
        with open(keyfile or certfile, "rb") as fh:
            key_pem = fh.read()
        client_cert = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    versions = {"tlsv1.1": ssl.TLSVersion.TLSv1_1, "tlsv1.2": ssl.TLSVersion.TLSv1_2,
                "tlsv1.3": ssl.TLSVersion.TLSv1_3}
    extra: dict[str, Any] = {"raiseMinimumTo": versions[tls_version or "tlsv1.2"]}
    protocols = [alpn.encode()] if alpn else None
    if insecure:
        keys = {} if client_cert is None else {
            "privateKey": client_cert.privateKey.original, "certificate": client_cert.original}
        return ssl.CertificateOptions(trustRoot=trust, acceptableProtocols=protocols, **keys, **extra)
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client_cert,
                                   acceptableProtocols=protocols, extraCertificateOptions=extra)


def _ca_files(cafile: str | None, capath: str | None) -> list[str]:
    files = [cafile] if cafile else []
    if capath:
        files += sorted(os.path.join(capath, name) for name in os.listdir(capath)
                        if os.path.isfile(os.path.join(capath, name)))
    return files


def _pem_certificates(path: str) -> list[bytes]:
    """Every PEM certificate in a file (a CA file may hold several; a file in a CA
    directory that holds none, such as a CRL, gives none)."""
    with open(path, "rb") as fh:
        data = fh.read()
    end = b"-----END CERTIFICATE-----"
    return [chunk[chunk.index(b"-----BEGIN CERTIFICATE-----"):] + end
            for chunk in data.split(end) if b"-----BEGIN CERTIFICATE-----" in chunk]
