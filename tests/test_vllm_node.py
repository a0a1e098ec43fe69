"""An `--engine vllm` node end to end: the LiveKit plugin in this venv, the node in .venv-vllm.

The node runs vLLM's CPU build on `tiny-random` (head_dim 32, written to the node's cache
directory) with a LoRA voice from --voices-dir. `make test` builds .venv-vllm first; run
alone without it, this module fails and says how to build it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from livekit.plugins import orpheus
from peft import LoraConfig, get_peft_model
from support_server import ServerProcess

from inference_server.engine.model_loading import load_causal_lm, write_tiny_random
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
TEXT = "Hello there, my good friend. How are you doing today?"
MAX_TOKENS = 140


def write_voice(model_dir: Path, directory: Path) -> None:
    """A LoRA voice for the head_dim-32 tiny-random, with random lora_B so it matters."""
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(
        load_causal_lm(str(model_dir)),
        LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0),
    )
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.save_pretrained(directory)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not VLLM_PYTHON.is_file():
        pytest.fail("needs .venv-vllm (vLLM's CPU build): run `make vllm-venv` or `make test`")
    cache = tmp_path_factory.mktemp("cache")
    model_dir = write_tiny_random(cache / "orpheus-serving" / "tiny-random-hd32-seed0")
    voices = tmp_path_factory.mktemp("voices")
    write_voice(model_dir, voices / "nova")
    server = ServerProcess(
        tmp_path_factory.mktemp("node") / "server.log",
        ("--engine", "vllm", "--voices-dir", str(voices), "--drain-grace", "60"),
        python=str(VLLM_PYTHON),
        env={"XDG_CACHE_HOME": str(cache), "VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    server.start()
    yield server
    server.stop()


async def speak(node: ServerProcess, voice: str) -> tuple[list, orpheus.OrpheusSegmentMetadata]:
    """One utterance through the plugin: its audio events and the server's segment figures."""
    async with orpheus.TTS(base_url=node.address, voice=voice, max_tokens=MAX_TOKENS) as tts:
        metrics = []
        tts.on("metrics_collected", metrics.append)
        events = [ev async for ev in tts.synthesize(TEXT)]
        for _ in range(100):
            if metrics:
                break
            await asyncio.sleep(0.02)
    return events, metrics[0].metadata


async def list_voices(node: ServerProcess) -> dict[str, pb.Voice]:
    async with grpc.aio.insecure_channel(node.address) as channel:
        reply = await pb_grpc.TTSStub(channel).ListVoices(pb.ListVoicesRequest())
    return {v.name: v for v in reply.voices}


@pytest.mark.parametrize("voice", ["tara", "nova"])
async def test_base_and_lora_voices_speak_with_no_invalid_token(
    node: ServerProcess, voice: str
) -> None:
    events, figures = await speak(node, voice)
    samples = sum(ev.frame.samples_per_channel for ev in events)
    assert samples > 0 and events[-1].is_final
    assert figures.invalid_tokens_dropped == 0
    assert figures.tokens_generated >= 7 and figures.tokens_generated % 7 == 0
    print(f"\nvLLM node, {voice}: server TTFA {figures.server_ttfa_ms:.0f} ms, "
          f"{figures.tokens_generated} tokens, 0 invalid")  # fmt: skip


async def test_list_voices_shows_the_lora_voice_loaded_after_use(node: ServerProcess) -> None:
    await speak(node, "nova")
    voices = await list_voices(node)
    assert voices["nova"].kind == pb.Voice.KIND_LORA and voices["nova"].loaded
    assert voices["tara"].kind == pb.Voice.KIND_BASE


async def test_an_interrupted_utterance_frees_its_vllm_request(node: ServerProcess) -> None:
    async with orpheus.TTS(base_url=node.address, voice="tara", max_tokens=2800) as tts:
        stream = tts.synthesize(TEXT * 4)
        await anext(aiter(stream))  # first audio: the request is generating
        assert node.metric("orpheus_engine_live_requests") >= 1
        await stream.aclose()  # the agent was interrupted
    deadline = time.monotonic() + 10
    while node.metric("orpheus_engine_live_requests") > 0:
        assert time.monotonic() < deadline, "vLLM request still live after the interruption"
        await asyncio.sleep(0.05)


async def test_sigterm_drains_the_live_utterance_then_exits(node: ServerProcess) -> None:
    """Last in the module: the node exits."""
    async with orpheus.TTS(base_url=node.address, voice="nova", max_tokens=MAX_TOKENS) as tts:
        stream = tts.synthesize(TEXT)
        first = await anext(aiter(stream))
        node.signal(signal.SIGTERM)
        rest = [ev async for ev in stream]
    assert rest and rest[-1].is_final and first.frame.samples_per_channel > 0
    assert node.proc is not None and await asyncio.to_thread(node.proc.wait, 60) == 0
