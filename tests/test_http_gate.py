"""The server's sentence gate (WS /v1/audio/stream) behaves as the plugin's gate does."""

from __future__ import annotations

import asyncio

import pytest

from inference_server.http.gate import SentenceGate, split_sentences


def gate(**kw: object) -> tuple[SentenceGate, list[str]]:
    released: list[str] = []
    kw.setdefault("max_buffer_delay", 60.0)
    return SentenceGate(release=released.append, **kw), released


async def test_holds_the_first_two_sentences_until_both_are_complete() -> None:
    g, released = gate()
    for piece in ("It costs 3", ".", "5 dollars", ". Then", " we go", "."):
        g.push(piece)
    assert released == []  # "It costs 3." was never complete: "5" followed it
    g.push(" Next")  # the second sentence is now complete: both go at once
    assert released == ["It costs 3.5 dollars. Then we go."]
    g.push(" one? And")  # once open, each sentence goes as soon as it is complete
    assert released[1:] == [" Next one?"]
    assert g.pending == " And"


async def test_flush_releases_everything_and_closes_the_gate() -> None:
    g, released = gate()
    g.push("Hello")
    g.flush()
    assert released == ["Hello"] and not g.is_open
    g.push("One. Two")  # the next segment waits for two sentences again
    assert released == ["Hello"]


async def test_a_slow_llm_opens_the_gate_after_the_delay() -> None:
    done = asyncio.Event()
    released: list[str] = []

    def release(text: str) -> None:
        released.append(text)
        done.set()

    g = SentenceGate(release=release, max_buffer_delay=0.05)
    g.push("Only one sentence so far")
    await asyncio.wait_for(done.wait(), 5)
    assert released == ["Only one sentence so far"] and g.is_open
    g.close()


async def test_min_sentences_one_releases_each_sentence_when_complete() -> None:
    g, released = gate(min_sentences=1)
    g.push("Hi. There")
    assert released == ["Hi."]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("A b. C d! E", ["A b.", " C d!", " E"]),
        ('Wait... what?" Yes.', ["Wait...", ' what?"', " Yes."]),
        ("3.5 is fine", ["3.5 is fine"]),
    ],
)
def test_split_sentences_joins_back_to_the_text(text: str, pieces: list[str]) -> None:
    assert split_sentences(text) == pieces
    assert "".join(pieces) == text
