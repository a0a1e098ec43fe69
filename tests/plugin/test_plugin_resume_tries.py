"""How resume tries are counted: each waits for a READY channel, and a try that only met the
connection that had already failed (gRPC still read it READY) is given back."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import APIConnectionError
from livekit.plugins.orpheus.session import MAX_RESUMES, SynthesisSession


class ScriptedEndpoints:
    """`until_ready` answers from a script: True = the channel reconnected first (a new
    connection), False = it was READY all along, None = it never becomes READY."""

    addresses = ["127.0.0.1:1"]
    current = 0

    def __init__(self, script: list[bool | None]) -> None:
        self.script = list(script)
        self.waits = 0

    async def until_ready(self, index: int) -> bool:
        self.waits += 1
        answer = self.script.pop(0)
        if answer is None:
            await asyncio.Event().wait()  # bounded by the session's connect timeout
        return bool(answer)


def session(script: list[bool | None]) -> tuple[SynthesisSession, ScriptedEndpoints]:
    endpoints = ScriptedEndpoints(script)
    s = SynthesisSession(
        endpoints=endpoints,  # type: ignore[arg-type]
        session_id="s",
        start_request=lambda resume: None,  # type: ignore[arg-type,return-value]
        connect_timeout=0.01,
    )
    return s, endpoints


async def tries_taken(s: SynthesisSession) -> int:
    taken = 0
    while True:
        try:
            if not await s._take_a_try(0):
                return taken
        except APIConnectionError:
            pass
        taken += 1


async def test_a_channel_that_stays_ready_gets_max_resumes_tries() -> None:
    """A routing node whose owner died: the connection is fine, every try counts."""
    s, endpoints = session([False] * 10)
    assert await tries_taken(s) == MAX_RESUMES
    assert endpoints.waits == MAX_RESUMES + 1  # the last wait finds no try left


async def test_tries_on_a_connection_already_dead_are_given_back() -> None:
    """Each fresh connection fails, and after each the channel still read READY once: only
    the tries on new connections count."""
    s, endpoints = session([False, True] * MAX_RESUMES)
    # MAX_RESUMES tries on new connections, plus the given-back try before each
    assert await tries_taken(s) == 2 * MAX_RESUMES
    assert endpoints.script == []


async def test_a_stale_last_try_is_given_back_even_with_no_try_left() -> None:
    s, endpoints = session([True] * (MAX_RESUMES - 1) + [False, True, False])
    assert await tries_taken(s) == MAX_RESUMES + 1
    assert endpoints.script == [False] and endpoints.waits == MAX_RESUMES + 1


async def test_a_channel_never_ready_spends_each_try_with_a_clear_error() -> None:
    s, _ = session([None] * 10)
    for _ in range(MAX_RESUMES):
        with pytest.raises(APIConnectionError, match="no connection was ready"):
            await s._take_a_try(0)
    assert await s._take_a_try(0) is False
