"""Pre-shared keys for TLS and DTLS: Mosquitto's ``psk_file`` and OpenSSL's PSK hook.

``psk_file`` has one ``identity:key`` per line, the key in hexadecimal (no ``0x``);
lines starting with ``#`` and lines without ``:`` are skipped, as Mosquitto's parser
does. A listener with ``psk_hint`` offers TLS-PSK (DTLS-PSK on CoAP and MQTT-SN
listeners): a client that presents an identity from the file and proves it has the
key completes the handshake; with ``use_identity_as_username`` the identity is its
username.

pyOpenSSL has no public PSK API. The OpenSSL binding under it (``OpenSSL._util``,
cryptography's cffi module) exposes ``SSL_CTX_set_psk_server_callback`` and
``SSL_CTX_use_psk_identity_hint``: ``use_psk`` installs a callback made with its
``ffi`` and keeps it alive with the context. These are private names of pyOpenSSL,
so setup.cfg bounds the versions and tests/security/test_psk.py covers the hook on
both TLS and DTLS. The identity a connection authenticated with is recorded for
``psk_identity`` (OpenSSL's ``SSL_get_psk_identity`` is not in the binding).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from OpenSSL import SSL
from OpenSSL._util import ffi, lib

from gateway.errors import ConfigError

#: Longest key accepted, in bytes (OpenSSL's PSK_MAX_PSK_LEN).
MAX_KEY = 512
_SERVER_CALLBACK = "unsigned int(SSL *, const char *, unsigned char *, unsigned int)"

_identities: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()


class PskFile:
    """The identities and keys of one ``psk_file``."""

    def __init__(self, keys: dict[str, bytes], path: str = "") -> None:
        self.keys = keys
        self.path = path

    def key(self, identity: str) -> bytes | None:
        return self.keys.get(identity)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def parse(cls, text: str, path: str = "<psk_file>") -> PskFile:
        keys: dict[str, bytes] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if line.startswith("#") or ":" not in line:
                continue
            identity, _, rest = line.partition(":")
            identity = identity.strip()
            hexkey = rest.split(":", 1)[0].strip()
            if not identity:
                raise ConfigError("empty identity", path, number)
            if not hexkey:
                raise ConfigError(f"empty key for identity {identity!r}", path, number)
            if len(hexkey) % 2:
                hexkey = "0" + hexkey      # Mosquitto reads the key as one big number
            try:
                key = bytes.fromhex(hexkey)
            except ValueError:
                raise ConfigError(f"the key for identity {identity!r} is not hexadecimal",
                                  path, number) from None
            if len(key) > MAX_KEY:
                raise ConfigError(f"the key for identity {identity!r} is longer than "
                                  f"{MAX_KEY} bytes", path, number)
            keys[identity] = key
        return cls(keys, path)

    @classmethod
    def load(cls, path: str) -> PskFile:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not valid UTF-8"
            raise ConfigError(f"cannot read {path!r}: {reason}", path, 0) from None
        return cls.parse(text, path)


def use_psk(ctx: SSL.Context, hint: str | None, lookup: Callable[[str], bytes | None]) -> None:
    """Serve TLS/DTLS-PSK on ``ctx``: ``lookup(identity)`` gives the key or None."""

    def callback(ssl: Any, identity: Any, psk: Any, max_len: int) -> int:
        try:
            if identity == ffi.NULL:
                return 0
            name = ffi.string(identity).decode("utf-8")
            key = lookup(name)
            if not key or len(key) > max_len:
                return 0
            ffi.memmove(psk, key, len(key))
            conn = SSL.Connection._reverse_mapping.get(ssl)
            if conn is not None:
                _identities[conn] = name
            return len(key)
        except Exception:  # noqa: BLE001 - an exception must not cross into OpenSSL
            return 0

    handle = ffi.callback(_SERVER_CALLBACK, callback)
    lib.SSL_CTX_set_psk_server_callback(ctx._context, handle)
    if hint and not lib.SSL_CTX_use_psk_identity_hint(ctx._context, hint.encode("utf-8")):
        raise ValueError(f"OpenSSL refused the PSK hint {hint!r}")
    # The context owns the only reference OpenSSL cannot see: keep the callback alive
    # exactly as long as the context (connections hold their context).
    ctx._gateway_psk_callback = handle  # type: ignore[attr-defined]


def psk_identity(conn: Any) -> str | None:
    """The PSK identity ``conn`` (a pyOpenSSL ``Connection``) authenticated with."""
    try:
        return _identities.get(conn)
    except TypeError:
        return None
