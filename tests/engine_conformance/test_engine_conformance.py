"""One conformance suite, run against both engines on the same head_dim-32 checkpoint.

The reference tokens come from the torch engine running each request alone, so for the
torch engine the greedy test checks batched == alone and for vLLM it checks vLLM ==
torch, id for id, base and LoRA voices mixed in one batch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
from support_vllm import BROKEN_VOICES, resident_voices, torch_engine

from inference_server.engine.base import (
    AdapterLoadError,
    Engine,
    GenerationRequest,
    SamplingConfig,
)
from inference_server.engine.model_loading import load_tokenizer
from inference_server.orpheus import tokens as T
from inference_server.orpheus.codes import FrameAssembler
from inference_server.orpheus.prompt import ContinuityContext, build_prompt

pytestmark = pytest.mark.asyncio(loop_scope="module")

GREEDY = SamplingConfig(temperature=0.0, max_tokens=70)
# A previous chunk replayed as context: audio ids, then end of speech (penalised too).
CONTEXT = ContinuityContext(
    "That was the first part.",
    [T.audio_token(p, (37 * p + 11 * k) % T.CODEBOOK_SIZE) for k in range(3) for p in range(7)],
)
CASES = {  # case -> (voice adapter or None, text, previous chunk)
    "base": (None, "Hello there, how are you doing today?", None),
    "ava": ("ava", "I was just thinking about you.", None),
    "bob": ("bob", "Once upon a time, in a quiet town.", None),
    "continued": (None, "And this is the second part.", CONTEXT),
}
_ids = iter(range(10**9))


def make_request(
    adapter: str | None,
    text: str,
    context: ContinuityContext | None = None,
    sampling: SamplingConfig = GREEDY,
    budget: int | None = None,
) -> GenerationRequest:
    prompt = build_prompt(load_tokenizer("tiny-random"), adapter or "tara", text, context)
    budget = sampling.max_tokens if budget is None else budget
    return GenerationRequest(f"req-{next(_ids)}", prompt, sampling, budget, adapter=adapter)


async def run(engine: Engine, request: GenerationRequest) -> list[list[int]]:
    """The request's deltas, as the engine streamed them."""
    return [list(delta) async for delta in engine.generate(request)]


async def tokens(engine: Engine, request: GenerationRequest) -> list[int]:
    return [t for delta in await run(engine, request) for t in delta]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reference(checkpoint: Path, voices: dict[str, Path]) -> dict[str, list[int]]:
    """Greedy tokens of each case from the torch engine, each request alone."""
    engine = torch_engine(checkpoint, voices)
    await engine.start()
    try:
        return {name: await tokens(engine, make_request(*case)) for name, case in CASES.items()}
    finally:
        await engine.close()


async def test_the_reference_is_full_length_audio(reference: dict[str, list[int]]) -> None:
    for ids in reference.values():
        assert len(ids) == GREEDY.max_tokens
        assert FrameAssembler().push(ids) and all(
            T.AUDIO_TOKEN_BASE <= t < T.AUDIO_TOKEN_END for t in ids
        )
    assert len({tuple(ids) for ids in reference.values()}) == len(CASES)  # voices differ


@pytest.mark.parametrize(
    "batch", [["base"], ["ava"], ["continued"], ["base", "ava", "bob", "continued"]]
)
async def test_greedy_tokens_match_the_torch_reference(
    engine: Engine, reference: dict[str, list[int]], batch: list[str]
) -> None:
    got = await asyncio.gather(*(tokens(engine, make_request(*CASES[name])) for name in batch))
    assert dict(zip(batch, got, strict=True)) == {name: reference[name] for name in batch}


async def test_tokens_stream_in_deltas_as_they_are_sampled(engine: Engine) -> None:
    deltas = await run(engine, make_request(None, "A longer story.", budget=280))
    assert sum(map(len, deltas)) == 280
    assert len(deltas) >= 5  # streamed, not returned at the end


async def test_sampled_tokens_always_form_whole_valid_frames(engine: Engine) -> None:
    wild = SamplingConfig(temperature=1.5, top_p=1.0, repetition_penalty=1.3, max_tokens=140)
    for adapter in (None, "ava"):
        ids = await tokens(engine, make_request(adapter, "Random weights.", sampling=wild))
        assembler = FrameAssembler()
        assert len(assembler.push(ids)) == len(ids) // T.FRAME_TOKENS
        assert assembler.frames_dropped == 0 and len(ids) % T.FRAME_TOKENS == 0


async def test_budget_and_stop_fall_on_frame_boundaries(engine: Engine) -> None:
    assert len(await tokens(engine, make_request(None, "Hi.", budget=14))) == 14
    # The hasty voice makes the stop id the top logit after every audio token: it may
    # only win at the first frame boundary, so exactly one whole frame comes out.
    hasty = await tokens(engine, make_request("hasty", "Stop as soon as you may."))
    assert len(hasty) == T.FRAME_TOKENS and len(FrameAssembler().push(hasty)) == 1


async def test_abort_mid_stream_frees_the_request(engine: Engine) -> None:
    long = make_request(None, "A very long story.", sampling=SamplingConfig(max_tokens=2800))
    stream = engine.generate(long)
    assert await anext(stream)
    assert engine.live_request_ids() == {long.request_id}
    await stream.aclose()  # what a cancelled session does
    assert engine.live_request_ids() == frozenset()
    assert engine.stats().live_requests == 0
    assert len(await tokens(engine, make_request(None, "Still here.", budget=21))) == 21


async def test_a_failing_request_fails_alone(
    engine: Engine, reference: dict[str, list[int]]
) -> None:
    poison = make_request(None, "x")
    poison = GenerationRequest("poison", [*poison.prompt_ids, T.VOCAB_SIZE + 5], GREEDY, 70)
    good = [make_request(*CASES[name]) for name in ("base", "ava")]
    results = await asyncio.gather(
        tokens(engine, good[0]), tokens(engine, poison), tokens(engine, good[1]),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[1], Exception)
    assert results[0] == reference["base"] and results[2] == reference["ava"]
    assert engine.live_request_ids() == frozenset()


async def test_a_voice_the_engine_cannot_load_fails_only_its_request(
    engine: Engine, reference: dict[str, list[int]]
) -> None:
    good = [make_request(*CASES[name]) for name in ("base", "ava")]
    broken = [make_request(name, "x") for name in BROKEN_VOICES]
    results = await asyncio.gather(
        *(tokens(engine, r) for r in (good[0], *broken, good[1])), return_exceptions=True
    )
    for name, result in zip(BROKEN_VOICES, results[1:-1], strict=True):
        assert isinstance(result, AdapterLoadError), (name, result)
        assert f"voice '{name}' cannot be used" in str(result)
    assert results[0] == reference["base"] and results[-1] == reference["ava"]
    assert engine.live_request_ids() == frozenset()
    assert not {*BROKEN_VOICES} & engine.loaded_adapters()


async def test_loaded_adapters_are_true_to_what_is_loaded(engine: Engine) -> None:
    for voice in ("cy", "hasty", "bob", "ava"):
        await tokens(engine, make_request(voice, "Which voices are loaded?", budget=7))
        assert voice in engine.loaded_adapters()
    # Each engine keeps MAX_LOADED_VOICES voices: "cy", used least recently, was evicted.
    loaded = engine.loaded_adapters()
    assert "cy" not in loaded and {"bob", "ava"} <= loaded
    assert loaded == await resident_voices(engine)
