"""The torch engine's pacing on the real tiny-random Llama: its steady batch steps only
while some listener needs more audio (`GenerationRequest.hold_s`), and waits otherwise.

Every wait below is for a condition the engine reaches (how often it asked a request
whether to hold), never a fixed sleep: the assertions hold however fast the machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from inference_server.engine.base import GenerationRequest, SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.orpheus.prompt import build_prompt

GREEDY = SamplingConfig(temperature=0.0, max_tokens=280)


class Gate:
    """A request's `hold_s` the test sets; it counts the engine's looks at it."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.looks_held = 0  # looks that answered "wait"
        self.generated = 0  # as the engine last reported it

    def __call__(self, generated: int) -> float:
        self.generated = generated
        if self.hold_s > 0:
            self.looks_held += 1
        return self.hold_s


class Stream:
    """One request read to its end in a task of its own, its tokens counted as they come."""

    def __init__(self, engine: TorchEngine, request: GenerationRequest) -> None:
        self.tokens = 0
        self.task = asyncio.create_task(self._read(engine, request))

    async def _read(self, engine: TorchEngine, request: GenerationRequest) -> int:
        async for ids in engine.generate(request):
            self.tokens += len(ids)
        return self.tokens


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (set on the engine's thread: no event)
            await asyncio.sleep(0.001)


@pytest.fixture(scope="module")
def parts() -> tuple:
    return load_causal_lm("tiny-random"), load_tokenizer("tiny-random")


def request(parts: tuple, name: str, gate: Gate | None, max_tokens: int) -> GenerationRequest:
    prompt = build_prompt(parts[1], "tara", f"Pacing test {name}.")
    return GenerationRequest(name, prompt, GREEDY, max_tokens, hold_s=gate)


async def started(parts: tuple) -> TorchEngine:
    engine = TorchEngine(parts[0], ttfa_tokens=7)  # graduates into the steady batch early
    await engine.start()
    return engine


async def test_a_batch_whose_listeners_all_have_enough_ahead_waits_until_one_needs_more(
    parts: tuple,
) -> None:
    engine = await started(parts)
    gate = Gate()
    try:
        stream = Stream(engine, request(parts, "a", gate, 280))
        await until(lambda: stream.tokens >= 21)  # steady by now
        gate.hold_s = 3600.0
        await until(lambda: gate.looks_held >= 2)  # the engine saw it between two steps
        steps, tokens = engine.stats().steps, stream.tokens
        await until(lambda: gate.looks_held >= 6)  # four more looks, each after a sleep
        assert engine.stats().steps == steps and gate.generated == tokens
        assert not stream.task.done()
        gate.hold_s = 0.0  # its listener needs more: generation goes on to the end
        assert await stream.task == 280
    finally:
        await engine.close()


async def test_rows_that_could_wait_ride_along_while_another_listener_needs_audio(
    parts: tuple,
) -> None:
    engine = await started(parts)
    try:
        ahead, behind = Gate(3600.0), Gate(0.0)
        ahead_stream = Stream(engine, request(parts, "ahead", ahead, 140))
        behind_stream = Stream(engine, request(parts, "behind", behind, 280))
        # one step serves both rows: the one far ahead gets its tokens as the other's come
        assert await ahead_stream.task == 140
        assert await behind_stream.task == 280
    finally:
        await engine.close()


async def test_a_new_request_is_served_while_the_steady_batch_waits(parts: tuple) -> None:
    engine = await started(parts)
    try:
        held = Gate()
        held_stream = Stream(engine, request(parts, "held", held, 280))
        await until(lambda: held_stream.tokens >= 21)
        held.hold_s = 3600.0
        await until(lambda: held.looks_held >= 2)  # the engine sleeps between looks now
        newcomer = Stream(engine, request(parts, "new", None, 70))
        assert await newcomer.task == 70  # woken at once, and it stepped the held row too
        assert held_stream.tokens > 21 and not held_stream.task.done()
        held.hold_s = 0.0
        assert await held_stream.task == 280
    finally:
        await engine.close()
