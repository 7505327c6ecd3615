"""OSCORE (RFC 8613) for CoAP listeners, on aiocoap's implementation.

``oscore_file`` names a JSON file in aiocoap's credentials format, restricted to
OSCORE contexts::

    {":sensor-7": {"oscore": {"basedir": "sensor-7/"}}}

Each entry is one client: the directory holds aiocoap's ``settings.json`` (sender id,
recipient id, master secret and salt, as hex or ASCII) and the ``sequence.json`` the
gateway writes, so it must be writable; a relative directory is read from the JSON
file's own directory. The client's sender id (the gateway's recipient id) selects the
context, and a request protected with it counts as the username of its entry (the
name without its colon): the context is the credential, as a certificate is for TLS,
and the ACL applies to that username. Unprotected requests go on as before (query
credentials, or anonymous): a listener meant for OSCORE only gives anonymous clients
no rights in the ACL.

The site is not wrapped in aiocoap's ``OscoreSiteWrapper`` (it starts a task per
request and needs EDHOC's ``lakers``): ``OscoreLayer.render`` unprotects the request
with aiocoap's ``oscore`` module, hands the site a pipe that protects each response
(notifications included, each with a new partial IV), and answers failures as the
wrapper does: 4.01 for an unknown context or a replay, 4.02 for an undecodable
option, 4.00 for what does not decrypt, nothing for a NON request. The contexts are
read at startup; each directory may be in use by one process only (aiocoap locks it).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from aiocoap import Message, error, oscore
from aiocoap.credentials import CredentialsMap
from aiocoap.numbers.codes import (
    BAD_OPTION, BAD_REQUEST, FETCH, METHOD_NOT_ALLOWED, POST, UNAUTHORIZED,
)
from aiocoap.numbers.types import CON
from twisted.logger import Logger

from gateway.errors import ConfigError

OBSERVE_MODULUS = 1 << 24
_loaded: dict[str, CredentialsMap] = {}


def load_credentials(path: str) -> CredentialsMap:
    """The contexts of ``path`` (each file once per process: contexts are locked)."""
    key = os.path.realpath(path)
    credentials = _loaded.get(key)
    if credentials is None:
        credentials = _loaded[key] = _load(path)
    return credentials


def _load(path: str) -> CredentialsMap:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as e:
        raise ConfigError(f"cannot read {path!r}: {e.strerror}", path) from None
    except ValueError as e:
        raise ConfigError(f"{path!r} is not valid JSON: {e}", path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path!r}: expected an object of named OSCORE contexts", path)
    base = os.path.dirname(os.path.abspath(path))
    entries = {}
    for name, item in data.items():
        context = item.get("oscore") if isinstance(item, dict) and len(item) == 1 else None
        if isinstance(context, dict) and len(context) == 1:
            # "contextfile" is what aiocoap called "basedir" before 0.4.8
            directory = context.get("basedir", context.get("contextfile"))
        else:
            directory = None
        if not isinstance(directory, str) or not name.lstrip(":"):
            raise ConfigError(f"{path!r}: entry {name!r} is not "
                              '{"oscore": {"basedir": "DIRECTORY/"}}', path)
        entries[name] = {"oscore": {"basedir": os.path.join(base, directory)}}
    credentials = CredentialsMap()
    try:
        credentials.load_from_dict(entries)
    except Exception as e:  # aiocoap's load errors, a missing key, a locked directory
        raise ConfigError(f"{path!r}: cannot load an OSCORE context: {e or type(e).__name__}",
                          path) from None
    return credentials


def username_of(context: Any) -> str | None:
    """The username a context's requests count as: its entry's name without the colon."""
    claims = getattr(context, "authenticated_claims", None)
    return claims[0].lstrip(":") if claims else None


class OscoreRemote:
    """The remote of an unprotected request: the outer remote's address, plus who the
    security context says the client is (``identity``)."""

    def __init__(self, outer: Any, context: Any) -> None:
        self.outer = outer
        self.context = context
        self.identity = username_of(context)

    sockaddr = property(lambda self: getattr(self.outer, "sockaddr", None))
    pktinfo = property(lambda self: getattr(self.outer, "pktinfo", None))
    maximum_payload_size = property(lambda self: self.outer.maximum_payload_size)
    maximum_block_size_exp = property(lambda self: self.outer.maximum_block_size_exp)
    is_multicast = False
    is_multicast_locally = False

    @property
    def blockwise_key(self) -> Any:
        return (self.outer.blockwise_key, self.identity)

    def __hash__(self) -> int:
        return hash((self.outer, self.identity))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, OscoreRemote) and self.outer == other.outer
                and self.identity == other.identity)

    def __repr__(self) -> str:
        return f"<OscoreRemote {self.identity!r} via {self.outer!r}>"


class ProtectingPipe:
    """What the site sees of an OSCORE request's pipe: responses are protected on
    their way into the outer pipe."""

    def __init__(self, outer: Any, request: Message, context: Any, request_id: Any) -> None:
        self.outer = outer
        self.request = request
        self.context = context
        self.request_id = request_id

    def add_response(self, response: Message, is_last: bool = False) -> None:
        observe = response.opt.observe
        if observe is not None:
            response.opt.observe = 0  # the outer option carries the order (RFC 8613 4.1.3.5)
        protected, _ = self.context.protect(response, self.request_id)
        if observe is not None:
            protected.opt.observe = self.context.sender_sequence_number % OBSERVE_MODULUS
        if response.mtype is not None:
            protected.mtype = response.mtype
        hook = getattr(response, "on_ack", None)
        if hook is not None:
            protected.on_ack = hook  # type: ignore[attr-defined]
        self.outer.add_response(protected, is_last=is_last)

    def on_interest_end(self, callback: Callable[[], None]) -> None:
        self.outer.on_interest_end(callback)


class OscoreLayer:
    """Unprotects OSCORE requests for a site (see the module docstring)."""

    log = Logger()

    def __init__(self, credentials: CredentialsMap) -> None:
        self.credentials = credentials
        self.failures = 0  # requests refused by OSCORE

    def render(self, pipe: Any, site: Callable[[Any], None]) -> None:
        request = pipe.request
        try:
            unprotected = oscore.verify_start(request)
        except oscore.NotAProtectedMessage:
            site(pipe)
            return
        except Exception:
            self._refuse(pipe, BAD_OPTION, "")
            return
        if request.code not in (FETCH, POST):
            self._refuse(pipe, METHOD_NOT_ALLOWED, "")
            return
        try:
            context = self.credentials.find_oscore(unprotected)
        except KeyError:
            self._refuse(pipe, UNAUTHORIZED, "Security context not found")
            return
        try:
            inner, request_id = context.unprotect(request)
        except error.RenderableError as e:  # 4.01 with Echo: the replay window is recovering
            self.failures += 1
            pipe.add_response(e.to_message(), is_last=True)
            return
        except oscore.ReplayError:
            self._refuse(pipe, UNAUTHORIZED, "Replay detected", max_age=0)
            return
        except oscore.DecodeError:
            self._refuse(pipe, BAD_OPTION, "Failed to decode COSE")
            return
        except Exception:  # ProtectionInvalid, and whatever else a forged message causes
            self._refuse(pipe, BAD_REQUEST, "Decryption failed")
            return
        inner.remote = OscoreRemote(request.remote, context)
        site(ProtectingPipe(pipe, inner, context.context_for_response(), request_id))

    def _refuse(self, pipe: Any, code: Any, text: str, **options: Any) -> None:
        """An unprotected error for a CON request; a NON one is not answered."""
        self.failures += 1
        if pipe.request.mtype is CON:
            pipe.add_response(Message(code=code, payload=text.encode(), **options), is_last=True)
