"""A LoRA voice that cannot load fails only its own session: 8 sessions at once on a real
node over real gRPC (base and LoRA voices, one broken), and in the engine a voice that
breaks mid-stream fails only the rows that speak with it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support_adapters import BROKEN, RANK_LIMIT, write_voice
from support_calls import CallEnd, final_status
from support_server import ServerProcess

from inference_server.engine.base import AdapterLoadError, GenerationRequest, SamplingConfig
from inference_server.engine.lora_cache import LoraAdapterCache
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.orpheus import tokens as T
from inference_server.orpheus.prompt import build_prompt
from inference_server.proto import tts_pb2 as pb

GREEDY = pb.SamplingOptions(temperature=1e-6, max_tokens=28)
FULL_AUDIO_BYTES = 28 // T.FRAME_TOKENS * T.SAMPLES_PER_FRAME * 2  # every frame, PCM16
BATCH = ["tara", "ava", "leah", "bob", None, "tara", "ava", "bob"]  # None: the broken voice
TEXT = "Hello there, my good friend."


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voices")
    write_voice(root / "ava", seed=1)
    write_voice(root / "bob", seed=2, rank=4)
    for name, (write, _) in BROKEN.items():
        write(root / name, "tiny-random")
    return root


@pytest.fixture(scope="module")
def node(voices: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ("--voices-dir", str(voices), "--max-lora-rank", str(RANK_LIMIT))
    server = ServerProcess(tmp_path_factory.mktemp("node") / "server.log", args).start()
    yield server
    server.stop()


async def speak_batch(node: ServerProcess, voices: list[str]) -> list[CallEnd]:
    def channel() -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(node.address)

    def messages(i: int, voice: str) -> list[pb.SynthesizeRequest]:
        start = pb.SessionStart(session_id=f"s{i}-{voice}", voice=voice, sampling=GREEDY)
        return [
            pb.SynthesizeRequest(start=start),
            pb.SynthesizeRequest(text=pb.TextChunk(text=TEXT)),
            pb.SynthesizeRequest(end_input=pb.EndInput()),
        ]

    return await asyncio.gather(
        *(final_status(channel, messages(i, v)) for i, v in enumerate(voices))
    )


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("broken", sorted(BROKEN))
async def test_a_broken_voice_fails_only_its_own_session(node: ServerProcess, broken: str) -> None:
    ends = await speak_batch(node, [v or broken for v in BATCH])
    bad = BATCH.index(None)
    assert ends[bad].code == grpc.StatusCode.FAILED_PRECONDITION, ends[bad]
    assert f"voice '{broken}' cannot be used" in ends[bad].details
    assert BROKEN[broken][1] in ends[bad].details
    others = [i for i in range(len(BATCH)) if i != bad]
    assert [ends[i].code for i in others] == [grpc.StatusCode.OK] * len(others)
    assert [ends[i].audio_bytes for i in others] == [FULL_AUDIO_BYTES] * len(others), ends


async def test_a_voice_that_breaks_mid_stream_fails_only_its_rows(
    voices: Path, tmp_path: Path
) -> None:
    """Its files are replaced by a broken adapter while it speaks and it is evicted (a
    second voice needs the only slot), so the next decode step must reload it."""
    paths = {"ava": shutil.copytree(voices / "ava", tmp_path / "ava"), "bob": voices / "bob"}
    model = load_causal_lm("tiny-random")
    cache = LoraAdapterCache(model, 1, locate=paths.__getitem__)
    engine = TorchEngine(model, lora=cache)
    prompt = build_prompt(load_tokenizer("tiny-random"), "tara", TEXT)
    sampling = SamplingConfig(temperature=0.0, max_tokens=28)
    rows = {f"r{i}": voice for i, voice in enumerate([None, "ava", None, "ava", "bob"])}

    def break_ava_once_it_speaks(outputs: list) -> None:  # on the step thread, between steps
        if "ava" in cache.loaded() and any(o.live.request.adapter == "ava" for o in outputs):
            shutil.rmtree(paths["ava"])
            shutil.copytree(voices / "wide", paths["ava"])
            cache.resolve(["bob"])  # bob's attach evicts ava: its next step reads the files

    engine.interleave = break_ava_once_it_speaks
    await engine.start()
    try:
        speaking = asyncio.gather(
            *(_tokens(engine, GenerationRequest(rid, prompt, sampling, 28, adapter=voice))
              for rid, voice in rows.items()),
            return_exceptions=True,
        )  # fmt: skip
        results = await asyncio.wait_for(speaking, 60)  # the old engine could hang here
    finally:
        await engine.close()
    for voice, result in zip(rows.values(), results, strict=True):
        if voice == "ava":
            assert isinstance(result, AdapterLoadError), result
            assert "trained for another model size" in str(result)
        else:
            assert result == 28, (voice, result)  # its whole budget


async def _tokens(engine: TorchEngine, request: GenerationRequest) -> int:
    return sum([len(ids) async for ids in engine.generate(request)])
