"""LoraAdapterCache on tiny-random: mixed-voice batches equal each voice run alone; LRU rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from support_adapters import write_voice

from inference_server.engine.lora_cache import (
    BASE_ADAPTER,
    AdapterLoadError,
    LoraAdapterCache,
)
from inference_server.engine.model_loading import load_causal_lm


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("voices")
    return {
        "ava": write_voice(root / "ava", seed=1),
        "bob": write_voice(root / "bob", seed=2, rank=4),
        "cy": write_voice(root / "cy", seed=3),
    }


def alone_logits(adapter: Path | None, ids: torch.Tensor) -> torch.Tensor:
    """Reference: a fresh model with only this adapter (or none), one row."""
    model = load_causal_lm("tiny-random")
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).eval()
    with torch.no_grad():
        return model(ids).logits


def greedy(cache: LoraAdapterCache, voices: list[str | None], ids: torch.Tensor, steps: int):
    """Greedy decoding of a batch (full recompute per step), adapters resolved per step."""
    for _ in range(steps):
        names = cache.resolve(voices)
        with torch.no_grad():
            logits = cache.model(ids, **cache.forward_kwargs(names)).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


def prompts() -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    return torch.randint(0, 128000, (3, 12), generator=gen)


def test_mixed_batch_equals_each_voice_alone(adapters: dict[str, Path]) -> None:
    cache = LoraAdapterCache(load_causal_lm("tiny-random"), max_loaded=4, locate=adapters.get)
    voices: list[str | None] = ["ava", "bob", None]
    ids = prompts()

    names = cache.resolve(voices)
    assert names == ["ava", "bob", BASE_ADAPTER]
    assert cache.wrapped and cache.loaded() == {"ava", "bob"}
    with torch.no_grad():
        mixed = cache.model(ids, **cache.forward_kwargs(names)).logits

    refs = [
        alone_logits(adapters.get(v) if v else None, ids[i : i + 1]) for i, v in enumerate(voices)
    ]
    for row, ref in enumerate(refs):
        torch.testing.assert_close(mixed[row : row + 1], ref, rtol=1e-4, atol=1e-4)
    # The adapters really change the output, so the equality above is meaningful.
    assert not torch.allclose(refs[0], alone_logits(None, ids[0:1]), atol=1e-2)
    assert not torch.allclose(refs[1], alone_logits(None, ids[1:2]), atol=1e-2)

    out = greedy(cache, voices, ids, steps=6)
    for row, voice in enumerate(voices):
        solo = LoraAdapterCache(load_causal_lm("tiny-random"), 1, locate=adapters.get)
        alone = greedy(solo, [voice], ids[row : row + 1], steps=6)
        assert out[row].tolist() == alone[0].tolist()


def test_lru_evicts_oldest_but_never_a_needed_adapter(adapters: dict[str, Path]) -> None:
    cache = LoraAdapterCache(load_causal_lm("tiny-random"), max_loaded=2, locate=adapters.get)
    cache.resolve(["ava", None])
    cache.resolve(["bob"])
    cache.resolve(["ava"])  # ava is now most recent
    cache.resolve(["cy"])
    assert cache.loaded() == {"ava", "cy"} and cache.evictions == 1
    # A batch needing three voices keeps all three for this step, then shrinks.
    assert cache.resolve(["ava", "bob", "cy"]) == ["ava", "bob", "cy"]
    assert cache.loaded() == {"ava", "bob", "cy"}
    cache.resolve(["bob", None])
    assert len(cache.loaded()) == 2 and "bob" in cache.loaded()


async def test_prefetch_reads_off_thread_then_resolve_attaches(adapters: dict[str, Path]) -> None:
    base = load_causal_lm("tiny-random")
    cache = LoraAdapterCache(base, max_loaded=2, locate=adapters.get)
    await cache.prefetch("ava")
    assert cache.misses == 1 and cache.loaded() == frozenset()  # staged, not attached
    await cache.prefetch("ava")
    assert cache.hits == 1
    cache.resolve(["ava"])
    assert cache.loaded() == {"ava"} and cache.misses == 1
    cache.invalidate(["ava"])  # e.g. retrained on disk: detached by the next resolve
    cache.resolve(["ava"])  # ...unless that batch still needs it
    assert cache.loaded() == {"ava"}
    cache.resolve([None])  # last adapter gone: back to the bare base model
    assert not cache.wrapped and cache.loaded() == frozenset()
    ids = prompts()[:1]
    with torch.no_grad():
        logits = cache.model(ids, **cache.forward_kwargs(cache.resolve([None]))).logits
    torch.testing.assert_close(logits, alone_logits(None, ids), rtol=1e-4, atol=1e-4)


async def test_adapters_read_ahead_are_bounded_by_max_loaded(adapters: dict[str, Path]) -> None:
    cache = LoraAdapterCache(load_causal_lm("tiny-random"), max_loaded=2, locate=adapters.get)
    for name in ("ava", "bob", "cy"):  # three sessions opened, none has spoken yet
        await cache.prefetch(name)
    await cache.prefetch("ava")  # the oldest read was dropped: read again
    assert cache.misses == 4 and cache.hits == 0
    await cache.prefetch("cy")  # the newest is still there
    assert cache.hits == 1


async def test_broken_adapter_is_a_clear_error_and_cache_keeps_working(
    adapters: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    paths = {**adapters, "broken": broken}
    cache = LoraAdapterCache(load_causal_lm("tiny-random"), max_loaded=2, locate=paths.get)
    with pytest.raises(AdapterLoadError, match="broken"):
        await cache.prefetch("broken")
    with pytest.raises(AdapterLoadError, match="broken"):
        cache.resolve(["broken"])
    assert cache.resolve(["ava", None]) == ["ava", BASE_ADAPTER]


def test_evicting_outside_inference_mode_what_was_loaded_inside_it(tmp_path: Path) -> None:
    """The engine loads voices inside torch.inference_mode; PEFT's delete re-activates the
    remaining adapter (requires_grad), which torch refuses on inference tensors outside it.
    It once killed the engine thread when a test seam evicted between steps (1 CI run in 3)."""
    paths = {v: write_voice(tmp_path / v, seed=i) for i, v in enumerate(["ava", "bob", "cy"])}
    cache = LoraAdapterCache(load_causal_lm("tiny-random"), 2, locate=paths.__getitem__)
    with torch.inference_mode():
        cache.resolve(["ava"])
        cache.resolve(["bob"])
    cache.resolve(["cy"])  # evicts ava, re-activating bob's inference tensors
    assert cache.loaded() == {"bob", "cy"}
