"""A LoRA voice that cannot load is caught from its config and safetensors header: the
registry does not list it (and says why to a session that asks), the adapter cache refuses
it before it joins a batch, and a failed attach leaves the model as it was."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from support_adapters import BROKEN, RANK_LIMIT, write_voice

from inference_server.engine.adapter_fit import AdapterFit, node_fit
from inference_server.engine.lora_cache import AdapterLoadError, LoraAdapterCache
from inference_server.engine.model_loading import load_causal_lm
from inference_server.errors import Unusable
from inference_server.orpheus.tokens import BASE_VOICES
from inference_server.voices.adapters import BrokenAdapterError
from inference_server.voices.registry import VoiceRegistry


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voices")
    write_voice(root / "ava", seed=1)
    for name, (write, _) in BROKEN.items():
        write(root / name, "tiny-random")
    return root


def test_the_fit_of_a_checkpoint_is_the_fit_of_its_loaded_model() -> None:
    skeleton = node_fit("tiny-random", "torch", RANK_LIMIT)  # meta device: no weights
    assert skeleton == AdapterFit.of_model(load_causal_lm("tiny-random"), RANK_LIMIT)
    assert skeleton.layers["model.layers.1.mlp.down_proj"] == (128, 64)


def test_the_scan_refuses_each_breakage_and_names_it(
    voices: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fit = node_fit("tiny-random", "torch", RANK_LIMIT)
    with caplog.at_level(logging.ERROR, logger="inference_server.voices.registry"):
        registry = VoiceRegistry(voices, "tiny-random", fit=fit)
    assert [v.name for v in registry.voices()] == [*BASE_VOICES, "ava"]
    for name, (_, reason) in BROKEN.items():
        assert f"skipping voice directory {voices / name}: " in caplog.text
        with pytest.raises(BrokenAdapterError, match=f"voice '{name}' cannot be used: .*{reason}"):
            registry.resolve(name)
        assert str(voices) not in _refusal(registry, name)  # no server paths to clients


def _refusal(registry: VoiceRegistry, name: str) -> str:
    with pytest.raises(Unusable) as err:
        registry.resolve(name)
    return str(err.value)


async def test_the_cache_refuses_each_breakage_before_it_joins_a_batch(voices: Path) -> None:
    model = load_causal_lm("tiny-random")
    cache = LoraAdapterCache(model, 4, locate=lambda n: voices / n, max_rank=RANK_LIMIT)
    for name, (_, reason) in BROKEN.items():
        with pytest.raises(AdapterLoadError, match=f"voice '{name}' cannot be used: .*{reason}"):
            await cache.prefetch(name)
    assert cache.loaded() == frozenset() and cache.model is model  # nothing was attached
    await cache.prefetch("ava")
    assert cache.prepare(["ava", None]) == {} and cache.loaded() == {"ava"}


def test_a_failed_attach_is_rolled_back_and_fails_the_same_way_again(
    voices: Path, tmp_path: Path
) -> None:
    """Weights for only some of the modules its config targets: PEFT finds out at attach."""
    partial = write_voice(tmp_path / "partial", seed=5)
    weights = partial / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(str(weights)).items() if "q_proj" in k}, str(weights))
    paths = {"partial": partial, "ava": voices / "ava"}
    model = load_causal_lm("tiny-random")
    cache = LoraAdapterCache(model, 4, locate=paths.__getitem__)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        before = model(ids).logits

    for attempt in range(2):  # first adapter (PeftModel is built), then beside another
        failed = cache.prepare(["partial", "ava"] if attempt else ["partial"])
        assert set(failed) == {"partial"} and "missing" in str(failed["partial"])
    assert cache.loaded() == {"ava"}
    names = cache.resolve([None, "ava"])
    with torch.no_grad():  # eval mode, no half-made layers: mixed batches still run
        after = cache.model(ids.repeat(2, 1), **cache.forward_kwargs(names)).logits
    torch.testing.assert_close(after[0], before[0])


def test_rank_comes_from_the_weights_and_the_config_alike(tmp_path: Path) -> None:
    """A config that understates the rank cannot sneak a big adapter under the limit."""
    voice = write_voice(tmp_path / "sly", seed=6, rank=32)
    config = json.loads((voice / "adapter_config.json").read_text())
    (voice / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    registry = VoiceRegistry(tmp_path, "tiny-random", fit=node_fit("tiny-random", "torch", 64))
    with pytest.raises(BrokenAdapterError, match="config says r=8 but its weights have rank 32"):
        registry.resolve("sly")
