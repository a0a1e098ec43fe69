"""The vLLM engine's translation layer, run without vLLM (a fake shaped like vLLM's AsyncLLM)."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from inference_server.cli import build_parser, config_from_args
from inference_server.config import ServerConfig
from inference_server.engine.base import GenerationRequest, SamplingConfig
from inference_server.engine.model_loading import bundled_tokenizer_file
from inference_server.engine.vllm_engine import (
    AUDIO_AND_STOP_IDS,
    DeltaTokens,
    LoraIds,
    VllmApi,
    VllmEngine,
    VllmEngineConfig,
    build_vllm_engine,
    config_from_server,
    engine_args,
    lora_int_id,
    sampling_kwargs,
)
from inference_server.orpheus import tokens as T
from inference_server.voices import VoiceRegistry

STOP = T.END_OF_SPEECH
A = T.AUDIO_TOKEN_BASE


def write_adapter(directory: Path) -> None:
    """A minimal PEFT LoRA adapter directory (the vLLM engine only passes its path on)."""
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    save_file({key: torch.zeros(8, 64)}, str(directory / "adapter_model.safetensors"))


def server_flags(*flags: str) -> ServerConfig:
    """Flags parsed by the real `orpheus-server` command line."""
    return config_from_args(build_parser().parse_args(["--engine", "vllm", *flags]))


def test_vllm_is_not_installed_and_the_module_imports_without_it() -> None:
    assert importlib.util.find_spec("vllm") is None
    code = "import inference_server.engine.vllm_engine, sys; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_start_without_vllm_says_how_to_get_it() -> None:
    engine = VllmEngine(VllmEngineConfig(model="/models/orpheus"))
    with pytest.raises(RuntimeError, match=r"orpheus-serving\[vllm\].*--engine torch"):
        await engine.start()


def test_engine_args_from_cli_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORPHEUS_MAX_CPU_LORAS", "32")  # env vars count as flags too
    flags = server_flags(
        "--model", "/models/orpheus", "--voices-dir", "/voices", "--max-model-len", "2048",
        "--quantization", "none", "--kv-cache-dtype", "fp8", "--max-loras", "4",
        "--max-lora-rank", "32", "--gpu-memory-utilization", "0.5", "--max-batch", "48",
    )  # fmt: skip
    assert engine_args(config_from_server(flags)) == {
        "model": "/models/orpheus",
        "tokenizer": "/models/orpheus",
        "max_model_len": 2048,
        "quantization": None,
        "kv_cache_dtype": "fp8",
        "enable_lora": True,
        "max_loras": 4,
        "max_cpu_loras": 32,
        "max_lora_rank": 32,
        "enable_prefix_caching": True,
        "gpu_memory_utilization": 0.5,
        "max_num_seqs": 48,
        "tensor_parallel_size": 1,
        "seed": 0,
    }


def test_engine_args_defaults_fp8_max_model_len_and_no_lora_without_voices() -> None:
    kwargs = engine_args(config_from_server(server_flags("--model", "/m")))
    assert kwargs["quantization"] == "fp8" and kwargs["enable_prefix_caching"] is True
    assert (
        kwargs["max_model_len"] == ServerConfig().max_model_len and kwargs["enable_lora"] is False
    )
    assert "max_loras" not in kwargs and "max_lora_rank" not in kwargs


def test_build_vllm_engine_refuses_tiny_random_and_maps_unknown_voices(tmp_path: Path) -> None:
    voices, model = tmp_path / "voices", tmp_path / "orpheus"
    write_adapter(voices / "nova")
    model.mkdir()
    shutil.copy(bundled_tokenizer_file(), model / "tokenizer.json")
    registry = VoiceRegistry(voices, "orpheus")
    with pytest.raises(ValueError, match="local checkpoint"):
        build_vllm_engine(server_flags(), registry)
    flags = server_flags("--model", str(model), "--voices-dir", str(voices))
    engine, tokenizer = build_vllm_engine(flags, registry)
    assert engine.config.enable_lora and engine.config.model == str(model)
    assert engine.has_adapter("nova") and not engine.has_adapter("ghost")
    assert not engine.has_adapter("tara")  # base voices need no adapter
    assert tokenizer.encode("tara: hi")[0] == T.BOS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_lora_rank": 12}, "max_lora_rank"),
        ({"max_loras": 8, "max_cpu_loras": 4}, "max_cpu_loras"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"max_model_len": 0}, "max_model_len"),
    ],
)
def test_bad_config_is_a_clear_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VllmEngineConfig(model="/m", **changes)


def test_sampling_kwargs_token_ids_only_stop_and_budget() -> None:
    kw = sampling_kwargs(SamplingConfig(seed=3), max_new_tokens=700)
    assert kw["stop_token_ids"] == [STOP] and kw["detokenize"] is False
    assert (kw["temperature"], kw["top_p"], kw["repetition_penalty"]) == (0.6, 0.8, 1.1)
    assert kw["max_tokens"] == 700 and kw["seed"] == 3
    assert kw["allowed_token_ids"] == AUDIO_AND_STOP_IDS and len(AUDIO_AND_STOP_IDS) == 7 * 4096 + 1
    greedy = sampling_kwargs(SamplingConfig(temperature=0, max_tokens=70), 700, constrain=False)
    assert greedy["temperature"] == 0.0 and greedy["max_tokens"] == 70
    assert "allowed_token_ids" not in greedy


def test_lora_ids_are_stable_positive_int32_and_distinct() -> None:
    ids = LoraIds()
    first = [ids.id_for(n) for n in ("ava", "bob", "cy")]
    assert [ids.id_for(n) for n in ("cy", "bob", "ava")] == first[::-1]
    assert [LoraIds().id_for(n) for n in ("ava", "bob", "cy")] == first  # a "restart"
    assert first == [lora_int_id(n) for n in ("ava", "bob", "cy")]
    # Pinned: ids must never change between releases (vLLM caches adapters by id).
    assert (lora_int_id("ava"), lora_int_id("tara")) == (400503947, 2007991444)
    many = {lora_int_id(f"voice-{i}") for i in range(5000)}
    assert len(many) == 5000 and all(0 < i < 2**31 for i in many)


def test_lora_id_collision_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import inference_server.engine.vllm_engine as mod

    monkeypatch.setattr(mod, "lora_int_id", lambda name: 7)
    ids = LoraIds()
    assert ids.id_for("ava") == 7
    with pytest.raises(ValueError, match=r"'ava' and 'bob'.*rename"):
        ids.id_for("bob")


def test_delta_tokens_stop_token_and_budget() -> None:
    d = DeltaTokens(budget=10)
    assert d.push([A, A + 1]) == [A, A + 1] and not d.done
    assert d.push([]) == []
    assert d.push([A + 2, STOP, A + 3]) == [A + 2] and d.done
    assert d.push([A + 4]) == [] and d.emitted == 3
    b = DeltaTokens(budget=4)
    assert b.push([A] * 3) == [A] * 3
    assert b.push([A] * 3) == [A] and b.done


@dataclass
class FakeAsyncLLM:
    """Shaped like vllm.v1.engine.async_llm.AsyncLLM: generate() yields DELTA RequestOutputs."""

    deltas: list[list[int]]
    calls: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def generate(
        self, prompt: dict, params: dict, request_id: str, *, lora_request: Any = None
    ) -> AsyncIterator[SimpleNamespace]:
        self.calls.append(dict(prompt=prompt, params=params, id=request_id, lora=lora_request))
        for i, delta in enumerate(self.deltas):
            if i == 2:
                await self.gate.wait()  # lets a test cancel mid-stream
            last = i == len(self.deltas) - 1 or STOP in delta
            yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=delta)], finished=last)
            if last:
                return

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


def fake_api(client: FakeAsyncLLM, seen_args: list[dict]) -> VllmApi:
    def make_client(kwargs: dict) -> FakeAsyncLLM:
        seen_args.append(kwargs)
        return client

    return VllmApi(
        make_client=make_client,
        sampling_params=lambda **kw: kw,
        lora_request=lambda name, lora_id, path: ("LoRARequest", name, lora_id, path),
        delta="DELTA",
    )


def request(rid: str, adapter: str | None = None, budget: int = 70) -> GenerationRequest:
    return GenerationRequest(rid, [1, 2, 3], SamplingConfig(), budget, adapter=adapter)


async def collect(engine: VllmEngine, req: GenerationRequest) -> list[int]:
    return [t async for chunk in engine.generate(req) for t in chunk]


async def test_engine_streams_deltas_until_stop_with_stable_lora_requests() -> None:
    client = FakeAsyncLLM(deltas=[[A, A + 1], [A + 2], [A + 3, STOP], []])
    client.gate.set()
    seen: list[dict] = []
    voices = {"ava": Path("/voices/ava")}
    engine = VllmEngine(VllmEngineConfig(model="/m"), voices.get, api=fake_api(client, seen))
    await engine.start()
    assert seen[0]["enable_lora"] is True and seen[0]["quantization"] == "fp8"

    assert await collect(engine, request("r1", "ava")) == [A, A + 1, A + 2, A + 3]
    assert await collect(engine, request("r2", "ava")) == [A, A + 1, A + 2, A + 3]
    assert await collect(engine, request("r3")) == [A, A + 1, A + 2, A + 3]
    loras = [c["lora"] for c in client.calls]
    assert loras[0] == loras[1] == ("LoRARequest", "ava", lora_int_id("ava"), "/voices/ava")
    assert loras[2] is None
    call = client.calls[0]
    assert call["prompt"] == {"prompt_token_ids": [1, 2, 3]}
    assert call["params"]["output_kind"] == "DELTA" and call["params"]["stop_token_ids"] == [STOP]
    assert client.aborted == []  # finished by the stop token: nothing to abort
    assert engine.live_request_ids() == frozenset() and engine.stats().tokens_generated == 12
    assert engine.has_adapter("ava") and not engine.has_adapter("zed")
    with pytest.raises(ValueError, match="'zed' is not a LoRA voice"):
        await collect(engine, request("r4", "zed"))


async def test_cancel_mid_stream_aborts_the_vllm_request() -> None:
    client = FakeAsyncLLM(deltas=[[A], [A + 1], [A + 2], [STOP]])
    engine = VllmEngine(VllmEngineConfig(model="/m"), api=fake_api(client, []))
    await engine.start()
    got: list[int] = []
    two_received = asyncio.Event()

    async def consume() -> None:
        async for chunk in engine.generate(request("r9")):
            got.extend(chunk)
            if len(got) == 2:
                two_received.set()

    task = asyncio.create_task(consume())
    await two_received.wait()
    assert engine.live_request_ids() == {"r9"}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.aborted == ["r9"] and engine.live_request_ids() == frozenset()


async def test_budget_reached_aborts_and_explicit_abort_forwards() -> None:
    client = FakeAsyncLLM(deltas=[[A] * 5, [A] * 5, [A] * 5, [STOP]])
    client.gate.set()
    engine = VllmEngine(VllmEngineConfig(model="/m"), api=fake_api(client, []))
    await engine.start()
    assert await collect(engine, request("rb", budget=7)) == [A] * 7
    assert client.aborted == ["rb"]

    gen = engine.generate(request("rx"))
    client.gate.clear()
    assert await anext(gen) == [A] * 5
    engine.abort("rx")
    await asyncio.sleep(0)
    assert client.aborted == ["rb", "rx"]
    await gen.aclose()
