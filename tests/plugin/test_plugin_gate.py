"""The sentence gate against a scripted LLM streaming 30 tokens/s (real event-loop time)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from livekit.agents import tokenize
from livekit.plugins.orpheus.gate import SentenceGate, complete_prefix
from plugin_support import ScriptedLLM

S1 = "Hello there, this is the very first sentence."
S2 = "And here comes the second one right now."
S3 = "Finally a third sentence arrives at the end."
TEXT = f"{S1} {S2} {S3}"
TOKENIZER = tokenize.basic.SentenceTokenizer()


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    def __call__(self, text: str) -> None:
        self.sent.append((asyncio.get_running_loop().time(), text))

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.sent)


def report(name: str, llm: ScriptedLLM, rec: Recorder) -> None:
    """Send times relative to the first token (shown with -s; the closing report quotes them)."""
    t0 = llm.pushed[0][0]
    figures = [(round((t - t0) * 1000), text) for t, text in rec.sent]
    print(f"\n[gate:{name}] send times ms after first token: {json.dumps(figures)}")
    if path := os.environ.get("ORPHEUS_GATE_REPORT"):
        with open(path, "a") as f:
            f.write(json.dumps({"case": name, "sends_ms": figures}) + "\n")


def make_gate(rec: Recorder, *, min_sentences: int = 2, delay: float = 5.0) -> SentenceGate:
    return SentenceGate(
        tokenizer=TOKENIZER, min_sentences=min_sentences, max_buffer_delay=delay, release=rec
    )


def test_complete_prefix_counts_only_sentences_followed_by_text() -> None:
    assert complete_prefix(TOKENIZER, S1) == (0, 0)
    count, end = complete_prefix(TOKENIZER, f"{S1} And")
    assert (count, f"{S1} And"[:end]) == (1, S1)
    # a period inside a number is not a boundary
    assert complete_prefix(TOKENIZER, "It costs 3.")[0] == 0
    assert complete_prefix(TOKENIZER, "It costs 3.5 dollars")[0] == 0


def test_complete_prefix_maps_back_onto_raw_whitespace() -> None:
    raw = f"{S1}\n\n  {S2}  And"
    count, end = complete_prefix(TOKENIZER, raw)
    assert count == 2
    assert raw[:end] == f"{S1}\n\n  {S2}"


async def test_nothing_sent_before_second_sentence_completes() -> None:
    rec, llm = Recorder(), ScriptedLLM(tokens_per_second=30)
    gate = make_gate(rec)
    await llm.run(gate.push, TEXT)
    s2_done = llm.time_text_complete(f"{S1} {S2}")
    s3_done = llm.time_text_complete(TEXT)
    gate.flush()
    report("min_sentences=2", llm, rec)
    first_time, first_text = rec.sent[0]
    assert first_time >= s2_done
    assert first_text == f"{S1} {S2}"  # both sentences in one chunk: prosody across them
    # the gate then streams each sentence; the last one goes out with the flush
    assert [t for _, t in rec.sent[1:]] == [f" {S3}"]
    assert rec.sent[-1][0] >= s3_done
    assert rec.text == TEXT


async def test_min_sentences_one_sends_at_first_sentence_end() -> None:
    rec, llm = Recorder(), ScriptedLLM(tokens_per_second=30)
    gate = make_gate(rec, min_sentences=1)
    await llm.run(gate.push, TEXT)
    gate.flush()
    report("min_sentences=1", llm, rec)
    s1_done = llm.time_text_complete(S1)
    s2_done = llm.time_text_complete(f"{S1} {S2}")
    assert [t for _, t in rec.sent] == [S1, f" {S2}", f" {S3}"]
    # released with the very next token: the boundary is only certain once text follows it
    assert s1_done <= rec.sent[0][0] < s2_done
    n_s1 = len(S1.split(" "))
    assert llm.pushed[n_s1][0] <= rec.sent[0][0] < llm.pushed[n_s1 + 1][0]


async def test_max_buffer_delay_fires_when_llm_stalls() -> None:
    rec, llm = Recorder(), ScriptedLLM(tokens_per_second=30)
    gate = make_gate(rec, min_sentences=2, delay=0.4)
    n_s1 = len(S1.split(" "))
    await llm.run(gate.push, TEXT, stall_after=n_s1, stall=1.5)  # stall right after sentence 1
    gate.flush()
    report("max_buffer_delay=0.4 stall=1.5", llm, rec)
    first_token = llm.pushed[0][0]
    resumed = llm.pushed[n_s1][0]
    first_time, first_text = rec.sent[0]
    assert first_text == S1
    assert first_token + 0.4 <= first_time < resumed  # spoken during the stall
    assert rec.text == TEXT


async def test_flush_sends_immediately() -> None:
    rec = Recorder()
    gate = make_gate(rec)
    gate.push("Just one short")
    gate.push(" phrase")
    assert rec.sent == []
    gate.flush()  # synchronous: released within the flush call itself
    assert rec.text == "Just one short phrase"
    assert not gate.is_open  # the next segment is gated again
    gate.push("Next segment starts.")
    assert len(rec.sent) == 1
    gate.close()


async def test_gate_stays_open_and_holds_unfinished_sentence() -> None:
    rec = Recorder()
    gate = make_gate(rec, min_sentences=1)
    gate.push(f"{S1} And here")
    assert rec.text == S1
    gate.push(" comes")
    assert rec.text == S1  # unfinished: the server would wait for it anyway
    assert gate.pending == " And here comes"
    gate.close()


@pytest.mark.parametrize(("min_sentences", "delay"), [(0, 1.0), (2, 0.0)])
def test_rejects_bad_settings(min_sentences: int, delay: float) -> None:
    with pytest.raises(ValueError, match=r"min_sentences|max_buffer_delay"):
        SentenceGate(
            tokenizer=TOKENIZER,
            min_sentences=min_sentences,
            max_buffer_delay=delay,
            release=lambda _: None,
        )
