"""The hub's refusals (``Denied.reason``) as CoAP response codes.

One reason reads differently by where it arose: ``NOT_AUTHORIZED`` from authentication
is 4.01 (the credentials do not let the client in), from the ACL 4.03 (the client is
known but may not do this). A feature the server has switched off
(``RETAIN_NOT_SUPPORTED``) is 4.00, like any request option the server will not honour:
4.05 would tell the client the method itself is refused on the resource, which a PUT
without ``retain=true`` proves wrong. A server that cannot answer now is 5.03 with
Max-Age, RFC 7252's "retry after".
"""

from __future__ import annotations

from aiocoap import Message, error
from aiocoap.numbers.codes import (
    BAD_REQUEST,
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    Code,
)

from gateway.hub.api import Denied, Reason

#: Where a refusal arose: checking who the client is, or what it may do.
AUTHENTICATION = "authentication"
ACCESS = "access"

#: Max-Age of a 5.03: seconds after which the client may try again.
RETRY_AFTER = 10

_EITHER: dict[Reason, Code] = {
    Reason.RETAIN_NOT_SUPPORTED: BAD_REQUEST,
    Reason.TOPIC_INVALID: BAD_REQUEST,
    Reason.SERVER_UNAVAILABLE: SERVICE_UNAVAILABLE,
    Reason.SERVER_BUSY: SERVICE_UNAVAILABLE,
    Reason.QUOTA_EXCEEDED: SERVICE_UNAVAILABLE,
    Reason.SERVER_SHUTTING_DOWN: SERVICE_UNAVAILABLE,
    Reason.SESSION_TAKEN_OVER: SERVICE_UNAVAILABLE,
    Reason.ADMINISTRATIVE_ACTION: SERVICE_UNAVAILABLE,
    Reason.BAD_CREDENTIALS: UNAUTHORIZED,
    Reason.BAD_AUTHENTICATION_METHOD: UNAUTHORIZED,
    Reason.UNSPECIFIED: INTERNAL_SERVER_ERROR,
}

CODES: dict[str, dict[Reason, Code]] = {
    AUTHENTICATION: {**_EITHER, Reason.NOT_AUTHORIZED: UNAUTHORIZED, Reason.BANNED: UNAUTHORIZED},
    ACCESS: {**_EITHER, Reason.NOT_AUTHORIZED: FORBIDDEN, Reason.BANNED: FORBIDDEN},
}


def code_for(reason: Reason, context: str) -> Code:
    """The response code for a refusal ``reason`` met in ``context``."""
    return CODES[context].get(reason, INTERNAL_SERVER_ERROR)


class Refused(error.RenderableError):
    """A refusal rendered as its response: the code, a diagnostic payload and, for a
    5.03, Max-Age."""

    def __init__(self, code: Code, text: str, retry: int = RETRY_AFTER) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.retry = retry

    def to_message(self) -> Message:
        m = Message(code=self.code, payload=self.text.encode())
        if self.code == SERVICE_UNAVAILABLE:
            m.opt.max_age = self.retry
        return m


class Busy(Refused):
    """5.03 with Max-Age: come back later."""

    def __init__(self, text: str, retry: int = RETRY_AFTER) -> None:
        super().__init__(SERVICE_UNAVAILABLE, text, retry)


def refusal(denied: Denied, context: str) -> Refused:
    """The error to raise for ``denied`` (its text, else the reason, as the payload)."""
    return Refused(code_for(denied.reason, context), denied.text or denied.reason.value)


def refused(context: str, reason: Reason = Reason.NOT_AUTHORIZED) -> Refused:
    """A refusal decided in the CoAP layer itself, through the same table."""
    return refusal(Denied(reason), context)
