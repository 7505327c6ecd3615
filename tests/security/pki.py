"""Test certificates made at run time with ``cryptography`` (EC P-256, as NOTES.md §6).

``make_pki(directory)`` writes a CA, a server certificate for localhost/127.0.0.1, one
for ``broker.example`` only (the wrong name for a server on 127.0.0.1), a client
certificate (CN ``device-42``), one from a foreign CA, an expired one, a revoked one and
the CA's CRL listing it, and returns their paths.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> str:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return str(path)


def _write_cert(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


LOCAL_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: x509.Name, server: bool,
          days: tuple[int, int] = (-1, 30), names: tuple[x509.GeneralName, ...] = LOCAL_NAMES,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=days[0]))
        .not_valid_after(NOW + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> dict[str, str]:
    ca, ca_key = _ca("Test CA")
    other, other_key = _ca("Other CA")
    out = {"ca": _write_cert(directory / "ca.pem", ca), "other_ca": _write_cert(directory / "other-ca.pem", other)}
    leaves = {
        "server": (ca, ca_key, _name("localhost"), True, (-1, 30)),
        "elsewhere": (ca, ca_key, _name("broker.example"), True, (-1, 30)),
        "client": (ca, ca_key, _name("device-42", "Acme"), False, (-1, 30)),
        "foreign": (other, other_key, _name("intruder"), False, (-1, 30)),
        "expired": (ca, ca_key, _name("old-device"), False, (-30, -1)),
        "revoked": (ca, ca_key, _name("stolen-device"), False, (-1, 30)),
    }
    serials = {}
    for label, (issuer, issuer_key, name, server, days) in leaves.items():
        names = (x509.DNSName("broker.example"),) if label == "elsewhere" else LOCAL_NAMES
        cert, key = _leaf(issuer, issuer_key, name, server, days, names)
        serials[label] = cert.serial_number
        out[label] = _write_cert(directory / f"{label}.pem", cert)
        out[f"{label}_key"] = _write_key(directory / f"{label}.key", key)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(NOW - datetime.timedelta(days=1))
        .next_update(NOW + datetime.timedelta(days=30))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serials["revoked"])
            .revocation_date(NOW - datetime.timedelta(hours=1)).build())
        .sign(ca_key, hashes.SHA256())
    )
    crl_path = directory / "ca.crl"
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    out["crl"] = str(crl_path)
    return out
