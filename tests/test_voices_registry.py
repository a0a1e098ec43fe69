"""VoiceRegistry: base voices, LoRA voices picked up live, strict names, broken adapters skipped."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import unicodedata
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from inference_server.orpheus.tokens import BASE_VOICES
from inference_server.voices.adapters import BrokenAdapterError
from inference_server.voices.names import InvalidVoiceNameError
from inference_server.voices.registry import UnknownVoiceError, VoiceRegistry

LORA_KEY = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"


def write_adapter(directory: Path, **config: object) -> Path:
    """A minimal well-formed PEFT LoRA adapter directory (the registry never loads weights)."""
    directory.mkdir(parents=True)
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], **config}
    (directory / "adapter_config.json").write_text(json.dumps(cfg))
    save_file({LORA_KEY: torch.zeros(4, 64)}, str(directory / "adapter_model.safetensors"))
    return directory


def names(registry: VoiceRegistry) -> list[str]:
    return [v.name for v in registry.voices()]


def test_base_voices_without_a_voices_dir() -> None:
    registry = VoiceRegistry(None, "tiny-random")
    assert names(registry) == list(BASE_VOICES)
    spec = registry.resolve("tara")
    assert (spec.kind, spec.adapter_path, spec.model) == ("base", None, "tiny-random")


async def test_voice_dropped_in_is_listed_within_5s_without_restart(tmp_path: Path) -> None:
    registry = VoiceRegistry(tmp_path, "tiny-random", poll_interval=0.2)
    changes: list[frozenset[str]] = []
    registry.add_listener(changes.append)
    await registry.start()
    try:
        # Written the way orpheus-finetune does it: a hidden temp dir, then one rename.
        write_adapter(tmp_path / ".tmp-nova")
        (tmp_path / ".tmp-nova").rename(tmp_path / "nova")
        start = time.monotonic()
        while "nova" not in names(registry):
            assert time.monotonic() - start < 5, "new voice not listed within 5 s"
            await asyncio.sleep(0.05)
        spec = registry.resolve("nova")
        assert spec.kind == "lora" and spec.adapter_path == (tmp_path / "nova").resolve()
        assert changes == [frozenset({"nova"})]

        for child in (tmp_path / "nova").iterdir():
            child.unlink()
        (tmp_path / "nova").rmdir()
        start = time.monotonic()
        while "nova" in names(registry):
            assert time.monotonic() - start < 5, "removed voice still listed after 5 s"
            await asyncio.sleep(0.05)
    finally:
        await registry.close()


def test_resolve_sees_a_new_voice_before_the_next_poll(tmp_path: Path) -> None:
    registry = VoiceRegistry(tmp_path, "tiny-random")
    write_adapter(tmp_path / "fresh")
    time.sleep(0.25)
    assert registry.resolve("fresh").kind == "lora"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil", "invalid voice name '../evil'"),
        ("", "it is empty"),
        ("a" * 65, "65 bytes"),
        ("Tara", "upper-case"),
        ("-x", "starting with a letter or digit"),
        ("a/b", "invalid voice name"),
    ],
)
def test_invalid_names_are_rejected_with_clear_errors(
    tmp_path: Path, name: str, message: str
) -> None:
    registry = VoiceRegistry(tmp_path, "tiny-random")
    with pytest.raises(InvalidVoiceNameError, match=message.replace("(", r"\(")):
        registry.resolve(name)


def test_unknown_voice_lists_the_valid_ones(tmp_path: Path) -> None:
    write_adapter(tmp_path / "nova")
    registry = VoiceRegistry(tmp_path, "tiny-random")
    with pytest.raises(UnknownVoiceError) as err:
        registry.resolve("a" * 64)  # well-formed, just absent
    assert "valid voices: tara, leah" in str(err.value) and "nova" in str(err.value)


def test_broken_adapters_are_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_adapter(tmp_path / "good")
    write_adapter(tmp_path / "corrupt")
    (tmp_path / "corrupt" / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    write_adapter(tmp_path / "badjson")
    (tmp_path / "badjson" / "adapter_config.json").write_text("{not json")
    write_adapter(tmp_path / "nocfg")
    (tmp_path / "nocfg" / "adapter_config.json").unlink()
    write_adapter(tmp_path / "embeds", modules_to_save=["embed_tokens", "lm_head"])
    write_adapter(tmp_path / "Bad Name")
    write_adapter(tmp_path / "leo")  # would shadow a base voice
    outside = write_adapter(tmp_path.parent / f"{tmp_path.name}-outside")
    (tmp_path / "escape").symlink_to(outside, target_is_directory=True)
    (tmp_path / "stray").write_text("not a voice")

    with caplog.at_level(logging.ERROR, logger="inference_server.voices.registry"):
        registry = VoiceRegistry(tmp_path, "tiny-random")
    assert names(registry) == [*BASE_VOICES, "good"]
    assert registry.resolve("leo").kind == "base"
    log = caplog.text
    for reason in (
        "corrupt",
        "unreadable safetensors",
        "unreadable adapter config",
        "missing adapter_config.json",
        "modules_to_save",
        "invalid voice name 'Bad Name'",
        "is a base voice name",
        "resolves outside the voices directory",
        "stray is not a directory",
    ):
        assert reason in log, reason
    with pytest.raises(BrokenAdapterError, match=r"voice 'corrupt' cannot be used: .*unreadable"):
        registry.resolve("corrupt")  # not listed, but a session asking for it is told why

    # Reported once, not on every poll; a fixed adapter comes back.
    caplog.clear()
    registry.refresh()
    assert caplog.text == ""
    (tmp_path / "corrupt" / "adapter_model.safetensors").unlink()
    save_file(
        {LORA_KEY: torch.zeros(4, 64)}, str(tmp_path / "corrupt" / "adapter_model.safetensors")
    )
    assert registry.refresh() == {"corrupt"}
    assert registry.resolve("corrupt").kind == "lora"


def test_missing_voices_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--voices-dir"):
        VoiceRegistry(tmp_path / "nope", "tiny-random")


def test_registry_serves_unicode_and_nfd_directories(tmp_path: Path) -> None:
    write_adapter(tmp_path / "长乐")
    write_adapter(tmp_path / unicodedata.normalize("NFD", "유나"))  # as a macOS copy writes it
    registry = VoiceRegistry(tmp_path, "tiny-random")
    assert {v.name for v in registry.voices() if v.kind == "lora"} == {"长乐", "유나"}
    spec = registry.resolve(unicodedata.normalize("NFD", "유나"))
    assert spec.name == "유나" and spec.adapter_path is not None
    assert spec.adapter_path.name == unicodedata.normalize("NFD", "유나")
    assert registry.resolve("长乐").kind == "lora"


def test_two_directories_spelling_one_voice_serve_neither(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_adapter(tmp_path / "유나")
    write_adapter(tmp_path / unicodedata.normalize("NFD", "유나"))
    registry = VoiceRegistry(tmp_path, "tiny-random")
    assert [v.name for v in registry.voices() if v.kind == "lora"] == []
    assert "2 directories spell it" in caplog.text
