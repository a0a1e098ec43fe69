"""A session opened with a LoRA voice reads the voice while its client is still writing.

The plugin opens its session as the reply starts, and the first text follows once the LLM
has written its first sentences; the adapter's disk read belongs in that wait, not in the
first audio. Real tiny-random Llama, real PEFT adapters, real SNAC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support_adapters import RANK_LIMIT, write_over_rank, write_voice

from inference_server.codec.decode_batcher import SnacDecodeBatcher
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.engine.base import AdapterLoadError, SamplingConfig
from inference_server.engine.lora_cache import LoraAdapterCache
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.session.events import AudioOut
from inference_server.session.factory import SessionFactory
from inference_server.session.options import SessionOptions
from inference_server.voices.registry import VoiceRegistry

SAMPLING = SamplingConfig(max_tokens=70)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[SessionFactory, LoraAdapterCache]]:
    write_voice(tmp_path / "ava", seed=1)
    write_over_rank(tmp_path / "bent", "tiny-random")  # the registry lists it; the cache refuses
    registry = VoiceRegistry(tmp_path, "tiny-random")
    model = load_causal_lm("tiny-random")
    lora = LoraAdapterCache(
        model, 2, locate=lambda name: registry.resolve(name).adapter_path, max_rank=RANK_LIMIT
    )
    engine = TorchEngine(model, lora=lora)
    decoder = SnacDecodeBatcher(SnacDecoder(load_snac()))
    await engine.start()
    options = SessionOptions(max_audio_ahead_s=0)
    factory = SessionFactory(
        engine, load_tokenizer("tiny-random"), decoder, registry, SAMPLING, options
    )
    try:
        yield factory, lora
    finally:
        await decoder.close()
        await engine.close()


async def speak(factory: SessionFactory, session_id: str, voice: str) -> float:
    """Open, then (once any warming is over) say one sentence; seconds of audio."""
    session = factory.create(session_id, voice, SAMPLING)
    await asyncio.gather(*factory.warming, return_exceptions=True)
    session.add_text("Hello there, how are you?")
    session.end_input()
    audio = 0.0
    async for event in session.events():
        if isinstance(event, AudioOut):
            audio += len(event.pcm) / 2 / 24000
    return audio


async def test_a_lora_voice_is_read_before_its_first_text(
    node: tuple[SessionFactory, LoraAdapterCache],
) -> None:
    factory, lora = node
    factory.create("early", "ava", SAMPLING)
    assert len(factory.warming) == 1  # the read started as the session opened
    await asyncio.gather(*factory.warming)
    assert lora.stats()["misses"] == 1  # read from disk once, with no text sent yet
    assert await speak(factory, "later", "ava") > 0
    assert lora.stats()["misses"] == 1  # the request found it read: no second disk read


async def test_a_base_voice_needs_no_warming(
    node: tuple[SessionFactory, LoraAdapterCache],
) -> None:
    factory, lora = node
    assert await speak(factory, "base", "tara") > 0
    assert not factory.warming and lora.stats()["misses"] == 0


async def test_a_voice_that_cannot_load_fails_its_request_not_the_warming(
    node: tuple[SessionFactory, LoraAdapterCache],
) -> None:
    factory, _ = node
    with pytest.raises(AdapterLoadError, match="bent"):
        await speak(factory, "broken", "bent")
    assert not factory.warming  # the failed read ended quietly
    assert await speak(factory, "after", "ava") > 0  # and the node serves the next session
