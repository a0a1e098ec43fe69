"""The vLLM engine's translation layer and flag defaults, without vLLM (the engine itself
runs for real in tests/vllm, under .venv-vllm)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

from inference_server.cli import parse_settings
from inference_server.config import ServerConfig
from inference_server.engine.base import SamplingConfig
from inference_server.engine.model_loading import bundled_tokenizer_file
from inference_server.engine.vllm_args import (
    AUDIO_MASK_ARG,
    VllmEngineConfig,
    config_from_server,
    engine_args,
    sampling_kwargs,
)
from inference_server.engine.vllm_engine import DeltaTokens, VllmEngine, build_vllm_engine
from inference_server.engine.vllm_lora import LoraIds, lora_int_id, write_zero_adapter
from inference_server.orpheus import tokens as T
from inference_server.voices.registry import VoiceRegistry

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
    return parse_settings(["--engine", "vllm", *flags])


def test_vllm_is_not_installed_and_the_module_imports_without_it() -> None:
    assert importlib.util.find_spec("vllm") is None
    code = (
        "import inference_server.engine.vllm_engine, inference_server.engine.vllm_args, sys; "
        "assert 'vllm' not in sys.modules"
    )
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
    ).for_hardware(cuda_available=True)  # fmt: skip
    assert engine_args(config_from_server(flags)) == {
        "model": "/models/orpheus",
        "max_model_len": 2048,
        "quantization": None,
        "dtype": "auto",
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
        "skip_tokenizer_init": True,
        "logits_processors": ["inference_server.engine.vllm_audio_mask:OrpheusAudioMask"],
    }


def test_defaults_follow_the_device_fp8_on_cuda_none_on_cpu() -> None:
    gpu = server_flags("--model", "/m").for_hardware(cuda_available=True)
    cpu = server_flags("--model", "/m").for_hardware(cuda_available=False)
    assert (gpu.device, gpu.quantization) == ("cuda", "fp8")
    assert (cpu.device, cpu.quantization) == ("cpu", "none")
    gpu_args = engine_args(config_from_server(gpu))
    assert gpu_args["quantization"] == "fp8" and gpu_args["enable_prefix_caching"] is True
    assert gpu_args["max_model_len"] == ServerConfig().max_model_len
    assert gpu_args["enable_lora"] is False and "max_loras" not in gpu_args
    assert engine_args(config_from_server(cpu))["quantization"] is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--quantization", "fp8"), r"--quantization fp8 needs a CUDA GPU"),
        (("--quantization", "int3"), r"--quantization 'int3': Input should be 'auto'"),
        (("--device", "cuda"), r"--device cuda: no CUDA device"),
    ],
)
def test_choices_this_machine_cannot_run_name_the_flag(flags: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        server_flags("--model", "/m", *flags).for_hardware(cuda_available=False)


def test_explicit_fp8_on_cpu_is_refused_by_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inference_server", "--engine", "vllm", "--quantization", "fp8",
         "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--quantization fp8 needs a CUDA GPU" in result.stderr


def test_cpu_voices_get_a_slot_for_the_base_adapter() -> None:
    config = VllmEngineConfig(model="/m", device="cpu", quantization=None, max_loras=4)
    args = engine_args(config)
    assert (args["max_loras"], args["max_cpu_loras"]) == (5, 65)


def test_the_zero_adapter_fits_the_checkpoint(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    config = {"hidden_size": 128, "num_attention_heads": 4, "head_dim": 32,
              "num_hidden_layers": 2}  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    adapter = write_zero_adapter(model, tmp_path / "zero")
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert len(weights) == 4 and all(not w.any() for w in weights.values())
    key = "base_model.model.model.layers.1.self_attn.q_proj"
    assert weights[f"{key}.lora_A.weight"].shape == (8, 128)
    assert weights[f"{key}.lora_B.weight"].shape == (128, 8)


def test_build_vllm_engine_maps_voices_and_writes_tiny_random_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    voices, model = tmp_path / "voices", tmp_path / "orpheus"
    write_adapter(voices / "nova")
    model.mkdir()
    shutil.copy(bundled_tokenizer_file(), model / "tokenizer.json")
    registry = VoiceRegistry(voices, "orpheus")
    flags = server_flags("--model", str(model), "--voices-dir", str(voices))
    engine, tokenizer = build_vllm_engine(flags.for_hardware(cuda_available=False), registry)
    assert engine.config.enable_lora and engine.config.model == str(model)
    assert engine.has_adapter("nova") and not engine.has_adapter("ghost")
    assert not engine.has_adapter("tara")  # base voices need no adapter
    assert tokenizer.encode("tara: hi")[0] == T.BOS
    tiny, _ = build_vllm_engine(server_flags().for_hardware(cuda_available=False), registry)
    written = json.loads((Path(tiny.config.model) / "config.json").read_text())
    assert written["head_dim"] == 32 and written["vocab_size"] == T.VOCAB_SIZE


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


def test_sampling_kwargs_token_ids_only_stop_budget_and_the_audio_mask() -> None:
    kw = sampling_kwargs(SamplingConfig(seed=3), max_new_tokens=700)
    assert kw["stop_token_ids"] == [STOP] and kw["detokenize"] is False
    assert (kw["temperature"], kw["top_p"], kw["repetition_penalty"]) == (0.6, 0.8, 1.1)
    assert kw["max_tokens"] == 700 and kw["seed"] == 3
    assert kw["extra_args"] == {AUDIO_MASK_ARG: True} and "allowed_token_ids" not in kw
    greedy = sampling_kwargs(SamplingConfig(temperature=0, max_tokens=70), 70)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["max_tokens"] == 70


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
    import inference_server.engine.vllm_lora as mod

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
