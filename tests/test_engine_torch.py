"""Continuous batching on the real (tiny-random) Llama: batched == alone, joins, aborts."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inference_server.engine.base import GenerationRequest, SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.orpheus import tokens as T
from inference_server.orpheus.codes import FrameAssembler
from inference_server.orpheus.prompt import build_prompt

TEXTS = [
    "Hello there.",
    "A much longer sentence with many more tokens in it, really it is.",
    "Hi",
    "How are you doing today, my friend?",
    "x",
    "Testing one two three.",
    "Orpheus speaks <laugh> with feeling.",
    "Last one here",
]
GREEDY = SamplingConfig(temperature=0.0, max_tokens=70)


@pytest.fixture(scope="module")
def parts() -> tuple:
    return load_causal_lm("tiny-random"), load_tokenizer("tiny-random")


def request(
    parts: tuple, i: int, text: str, sampling: SamplingConfig = GREEDY
) -> GenerationRequest:
    prompt = build_prompt(parts[1], "tara", text)
    return GenerationRequest(f"r{i}", prompt, sampling, sampling.max_tokens)


async def generate(engine: TorchEngine, req: GenerationRequest) -> list[int]:
    return [tok async for ids in engine.generate(req) for tok in ids]


async def test_eight_concurrent_requests_match_each_run_alone(parts: tuple) -> None:
    engine = TorchEngine(parts[0])
    await engine.start()
    try:
        alone = [await generate(engine, request(parts, i, t)) for i, t in enumerate(TEXTS)]
        steps_before = engine.stats().steps
        together = await asyncio.gather(
            *[generate(engine, request(parts, i, t)) for i, t in enumerate(TEXTS)]
        )
        shared_steps = engine.stats().steps - steps_before
        assert shared_steps < 2 * GREEDY.max_tokens  # one forward pass advanced all of them
    finally:
        await engine.close()
    assert together == alone
    assert all(len(tokens) == GREEDY.max_tokens for tokens in alone)


async def test_position_constrained_tokens_always_form_valid_frames(parts: tuple) -> None:
    engine = TorchEngine(parts[0])
    await engine.start()
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, repetition_penalty=1.3, max_tokens=140)
    try:
        tokens = await generate(
            engine, request(parts, 0, "Random weights, random audio.", sampling)
        )
    finally:
        await engine.close()
    assembler = FrameAssembler()
    frames = assembler.push(tokens)
    assert len(frames) == 20 and assembler.frames_dropped == 0
    assert T.END_OF_SPEECH not in tokens


async def test_late_joiner_and_abort_free_slots_at_once(parts: tuple) -> None:
    engine = TorchEngine(parts[0])
    await engine.start()
    long = SamplingConfig(temperature=0.0, max_tokens=2800)
    try:
        first = engine.generate(request(parts, 0, "A long story.", long))
        await anext(first)
        joined = await generate(engine, request(parts, 1, "Short."))  # joins mid-generation
        assert len(joined) == GREEDY.max_tokens
        assert engine.live_request_ids() == frozenset({"r0"})
        await first.aclose()  # what a cancelled session does
        assert engine.live_request_ids() == frozenset()
        await asyncio.sleep(0.05)
        assert engine.stats().live_requests == 0
    finally:
        await engine.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": -1}, {"top_p": 0}, {"repetition_penalty": 0.9}, {"max_tokens": 3}],
)
def test_bad_sampling_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SamplingConfig(**kwargs)


async def test_a_failing_forward_fails_its_requests_and_the_engine_keeps_serving(
    parts: tuple,
) -> None:
    model = load_causal_lm("tiny-random")
    engine = TorchEngine(model)
    real_forward = model.forward
    model.forward = lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("boom"))  # type: ignore[method-assign]
    await engine.start()
    try:
        with pytest.raises(RuntimeError, match="generation failed: boom"):
            await generate(engine, request(parts, 0, "Hello there."))
        model.forward = real_forward  # type: ignore[method-assign]
        tokens = await generate(engine, request(parts, 1, "Hello there."))
        assert len(tokens) == GREEDY.max_tokens
        assert engine.live_request_ids() == frozenset()
    finally:
        await engine.close()


async def test_close_never_hangs_when_it_lands_between_a_step_and_the_idle_check(
    parts: tuple,
) -> None:
    """close() flags the stop while the step thread is between its last step and going idle."""
    engine = TorchEngine(parts[0])
    await engine.start()
    in_last_step, release = threading.Event(), threading.Event()

    def interleave(outputs: list) -> None:
        if any(o.finished for o in outputs):
            in_last_step.set()
            release.wait(10)

    engine.interleave = interleave
    short = SamplingConfig(temperature=0.0, max_tokens=7)
    speaking = asyncio.create_task(generate(engine, request(parts, 1, "Hi", short)))
    assert await asyncio.to_thread(in_last_step.wait, 10)
    closing = asyncio.create_task(engine.close())
    await asyncio.sleep(0)  # close() has flagged the stop and now waits for the thread
    release.set()
    await asyncio.wait_for(closing, 10)
    assert len(await speaking) == 7


async def test_a_step_delivered_late_never_ends_the_stream_before_its_last_tokens(
    parts: tuple,
) -> None:
    """A busy loop runs step N's delivery after step N+1 finished the request: the stream
    must still carry step N+1's tokens (the end travels with the step that made it)."""
    engine = TorchEngine(parts[0])
    await engine.start()
    loop = asyncio.get_running_loop()
    budget = 14
    last_step_done, release_last = threading.Event(), threading.Event()

    async def release_after_loop_turns() -> None:
        for _ in range(50):  # plenty of turns for the consumer to read what it was given
            await asyncio.sleep(0)
        release_last.set()

    def interleave(outputs: list) -> None:
        for output in outputs:
            if output.live.request.request_id != "late" or output.finished:
                continue
            if output.live.generated == budget - 1:  # step N: stall the loop until N+1 ran
                loop.call_soon_threadsafe(last_step_done.wait, 10)
        if any(o.finished and o.live.request.request_id == "late" for o in outputs):
            last_step_done.set()  # step N+1: let the loop deliver step N, then wait a while
            asyncio.run_coroutine_threadsafe(release_after_loop_turns(), loop)
            release_last.wait(10)

    try:
        alone = await generate(engine, request(parts, 0, "Hello there.", GREEDY))
        engine.interleave = interleave
        sampling = SamplingConfig(temperature=0.0, max_tokens=budget)
        late = GenerationRequest(
            "late", request(parts, 0, "Hello there.").prompt_ids, sampling, budget
        )
        tokens = await asyncio.wait_for(generate(engine, late), 30)
    finally:
        engine.interleave = lambda outputs: None
        await engine.close()
    assert tokens == alone[:budget]


async def test_a_prefill_that_fails_fails_only_its_own_request(parts: tuple) -> None:
    model = load_causal_lm("tiny-random")
    engine = TorchEngine(model)

    def poison_prefill(module: object, args: tuple, kwargs: dict) -> None:
        if (kwargs["input_ids"] == T.PAD).any():  # only the poisoned prompt carries PAD
            raise RuntimeError("poisoned prompt")

    hook = model.register_forward_pre_hook(poison_prefill, with_kwargs=True)
    await engine.start()
    try:
        good = [request(parts, i, t) for i, t in enumerate(TEXTS[:3])]
        alone = [await generate(engine, r) for r in good]
        poison = GenerationRequest("poison", [*good[0].prompt_ids, T.PAD], GREEDY, 70)
        first = [request(parts, 10 + i, t) for i, t in enumerate(TEXTS[:3])]
        results = await asyncio.gather(
            generate(engine, first[0]), generate(engine, poison), generate(engine, first[1]),
            generate(engine, first[2]), return_exceptions=True,
        )  # fmt: skip
    finally:
        hook.remove()
        await engine.close()
    assert isinstance(results[1], RuntimeError) and "poisoned prompt" in str(results[1])
    assert [results[0], results[2], results[3]] == alone


async def test_close_returns_every_time_over_many_start_speak_close_cycles(parts: tuple) -> None:
    short = SamplingConfig(temperature=0.0, max_tokens=7)
    for i in range(30):
        engine = TorchEngine(parts[0])
        await engine.start()
        if i % 2:  # half of them close right after a request ends, half mid-request
            await generate(engine, request(parts, i, "Hi", short))
        else:
            stream = engine.generate(request(parts, i, "Hi there", GREEDY))
            await anext(stream)
        await asyncio.wait_for(engine.close(), 10)
        if not i % 2:
            await stream.aclose()
