"""One taxonomy, one mapping: each layer's errors reach the client as the same precise status."""

from __future__ import annotations

import grpc
import pytest

from inference_server import errors as E
from inference_server.engine.base import AdapterLoadError
from inference_server.service.errors import to_status
from inference_server.session.synthesis import SessionInputError
from inference_server.voices.adapters import BrokenAdapterError
from inference_server.voices.names import InvalidVoiceNameError
from inference_server.voices.registry import UnknownVoiceError

S = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (E.ClientError("x"), S.INVALID_ARGUMENT),
        (E.ProtocolOrderError("x"), S.FAILED_PRECONDITION),
        (E.ClientTimeout("x"), S.DEADLINE_EXCEEDED),
        (E.Unauthenticated("x"), S.UNAUTHENTICATED),
        (E.NotFound("x"), S.NOT_FOUND),
        (E.AlreadyExists("x"), S.ALREADY_EXISTS),
        (E.Unusable("x"), S.FAILED_PRECONDITION),
        (E.Overloaded("x"), S.RESOURCE_EXHAUSTED),
        (E.Unavailable("x"), S.UNAVAILABLE),
        (E.Internal("x"), S.INTERNAL),
        # each layer's own errors are kinds of the taxonomy
        (SessionInputError("x"), S.INVALID_ARGUMENT),
        (InvalidVoiceNameError("x"), S.INVALID_ARGUMENT),
        (UnknownVoiceError("x"), S.NOT_FOUND),
        (AdapterLoadError("x"), S.FAILED_PRECONDITION),
        (BrokenAdapterError("x"), S.FAILED_PRECONDITION),
    ],
)
def test_each_kind_has_one_status(error: Exception, code: grpc.StatusCode) -> None:
    status = to_status(error)
    assert status.code == code and status.details == "x"


@pytest.mark.parametrize("error", [ValueError("row 3: nan in probs"), KeyError("10.0.0.7:50051")])
def test_an_error_outside_the_taxonomy_is_internal_and_says_nothing_inside(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """A bare ValueError from deep inside is our bug, not the client's, and its text (which
    may hold addresses or tensor values) stays in the node log under a reference."""
    status = to_status(error)
    assert status.code == S.INTERNAL
    assert str(error) not in status.details and "ref" in status.details
    ref = status.details.split("ref ")[1].split()[0]
    assert any(ref in r.getMessage() for r in caplog.records)


def test_a_status_decided_by_a_peer_is_relayed_unchanged() -> None:
    status = to_status(E.PeerStatus("RESOURCE_EXHAUSTED", "owner full"))
    assert (status.code, status.details) == (S.RESOURCE_EXHAUSTED, "owner full")
    assert to_status(E.PeerStatus("NOT_A_CODE", "odd peer")).code == S.UNKNOWN
