"""The error taxonomy: what went wrong, said in the domain's words.

Every layer (engine, voices, session, fleet, service) raises one of these kinds; one
place per protocol turns a kind into a status: `service/errors.py` for gRPC (and the
HTTP API maps the same kinds). An exception that is none of these is a bug of ours and
reaches the client as an internal error, never as the client's fault: a bare
`ValueError` from deep inside the engine is not "invalid argument".
"""

from __future__ import annotations


class OrpheusError(Exception):
    """Base of every error a layer raises on purpose; the message is safe to show a client."""


class ClientError(OrpheusError):
    """The request is wrong; the caller must change it before retrying."""


class ProtocolOrderError(ClientError):
    """A valid message sent at the wrong point of the session protocol."""


class ClientTimeout(ClientError):
    """The caller took longer than a stated limit (e.g. no text after SessionStart)."""


class NotFound(OrpheusError):
    """The named thing (voice, model) does not exist here."""


class AlreadyExists(OrpheusError):
    """The named thing (a session id) is already live."""


class Unusable(OrpheusError):
    """The named thing exists but cannot be served as it is (a LoRA voice that will not load)."""


class Overloaded(OrpheusError):
    """No capacity now; the same request may succeed elsewhere or later."""


class Unavailable(OrpheusError):
    """This node cannot serve now (draining, owner unreachable); retry on another node."""


class Internal(OrpheusError):
    """Our fault; the message is for the client, details stay in the node's log."""


class Unauthenticated(OrpheusError):
    """No valid API key (or cluster secret) came with the call."""


class PeerStatus(OrpheusError):
    """A status another node already decided (a forwarded call's answer), relayed unchanged.

    `code` is the gRPC status code's name (e.g. "RESOURCE_EXHAUSTED"): this module knows no
    protocol, the one mapping to a status turns the name back into a code.
    """

    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
