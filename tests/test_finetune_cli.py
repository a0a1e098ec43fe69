"""orpheus-finetune end to end on espeak-ng speech, plus its data checks and clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import PeftModel

from inference_server.engine.lora_cache import LoraAdapterCache
from inference_server.engine.model_loading import load_causal_lm
from inference_server.finetune.cli import main
from inference_server.finetune.dataset import find_clips, trim_silence
from inference_server.voices import VoiceRegistry

SENTENCES = (
    "Hello there.",
    "How are you today?",
    "The sun is bright.",
    "I like green tea.",
    "See you soon.",
    "Good night, my friend.",
)
LEAD_MS = 500


def speak(directory: Path, sentences: tuple[str, ...] = SENTENCES) -> Path:
    """espeak-ng WAVs with 500 ms of digital silence prepended, each with a clip.txt."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (make system-deps installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(sentences):
        wav = directory / f"clip{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        samples, rate = sf.read(wav, dtype="float32")
        pad = np.zeros(rate * LEAD_MS // 1000, dtype=np.float32)
        sf.write(wav, np.concatenate([pad, samples]), rate)
        wav.with_suffix(".txt").write_text(text + "\n")
    return directory


def finetune(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "orpheus-finetune"
    cmd = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-m", "inference_server.finetune.cli"]
    )
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak(tmp_path_factory.mktemp("speech"))


def test_finetune_end_to_end_trims_lead_silence_and_installs_a_servable_adapter(
    spoken: Path, tmp_path: Path
) -> None:
    voices, work = tmp_path / "voices", tmp_path / "work"
    voices.mkdir()
    common = ["--data", str(spoken), "--name", "nova", "--voices-dir", str(voices)]
    run = finetune(
        *common, "--max-steps", "3", "--output-dir", str(work), "--checkpoint-every", "2"
    )
    assert run.returncode == 0, run.stderr
    assert "RANDOM weights" in run.stderr and "training LoRA" in run.stderr
    assert "clip clip0: trimmed" in run.stderr and "ms leading" in run.stderr

    report = json.loads((work / "finetune_report.json").read_text())
    assert len(report["clips"]) == 6 and report["steps"] == 3
    for clip in report["clips"]:
        # Our 500 ms pad, minus the 10 ms guard kept before speech, plus espeak's own lead-in.
        assert 480 <= clip["lead_trimmed_ms"] <= 700, clip
        assert clip["tail_trimmed_ms"] > 100, clip  # espeak ends with ~280 ms of silence
    assert report["lead_trimmed_ms_total"] >= 6 * 480

    adapter = voices / "nova"
    assert sorted(p.name for p in adapter.iterdir() if p.suffix != ".md") == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert [p.name for p in voices.iterdir()] == ["nova"]  # no temp dirs left behind
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["modules_to_save"]) == (16, 32, None)
    assert set(config["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == [
        "step-000002",
        "step-000003",
    ]

    # The adapter loads with PEFT on tiny-random and changes the model's output.
    ids = torch.tensor([[128259, 128000, 3, 4, 5, 128009, 128260, 128261, 128257]])
    with torch.no_grad():
        base = load_causal_lm("tiny-random")(ids).logits
        tuned = PeftModel.from_pretrained(load_causal_lm("tiny-random"), adapter)(ids).logits
    assert not torch.allclose(base, tuned)

    # The registry lists it and the LoRA cache serves it in a mixed batch.
    registry = VoiceRegistry(voices, "tiny-random")
    assert registry.resolve("nova").kind == "lora"
    cache = LoraAdapterCache(
        load_causal_lm("tiny-random"), 2, locate=lambda n: registry.resolve(n).adapter_path
    )
    names = cache.resolve(["nova", None])
    with torch.no_grad():
        mixed = cache.model(ids.repeat(2, 1), **cache.forward_kwargs(names)).logits
    torch.testing.assert_close(mixed[:1], tuned, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mixed[1:], base, rtol=1e-4, atol=1e-4)

    # Resume continues from the last checkpoint; --overwrite replaces the voice atomically.
    again = finetune(
        *common, "--max-steps", "4", "--output-dir", str(work), "--resume", "--overwrite"
    )
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stderr and "(step 3)" in again.stderr
    assert (work / "checkpoints" / "step-000004").is_dir()


def test_trim_silence_cuts_both_ends() -> None:
    t = np.arange(24000) / 24000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 1e-4, 24000).astype(np.float32)  # -70 dB floor
    audio = np.concatenate([noise[:12000], tone, noise[:7200]])
    trimmed, lead, tail = trim_silence(audio, threshold_db=-40)
    assert 480 <= lead <= 500 and 280 <= tail <= 300
    assert len(trimmed) == len(audio) - round((lead + tail) * 24)
    _, lead_strict, _ = trim_silence(audio, threshold_db=-80)  # the floor now counts as sound
    assert lead_strict < 20


def test_metadata_csv_layout(tmp_path: Path) -> None:
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for clip in ("a1", "a2"):
        sf.write(wavs / f"{clip}.wav", np.zeros(2400, dtype=np.float32), 22050)
    (tmp_path / "metadata.csv").write_text("a1|Dr. Smith|Doctor Smith\na2|Plain text.\n")
    clips = find_clips(tmp_path)
    assert [(c.clip_id, c.text) for c in clips] == [("a1", "Doctor Smith"), ("a2", "Plain text.")]


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "name", "message"),
    [
        ("missing", "nova", "not a directory"),
        ("empty", "nova", "no WAV/FLAC clips found"),
        ("no_transcript", "nova", "1 clip(s) without a transcript"),
        ("unreadable", "nova", "unreadable audio"),
        ("metadata_gap", "nova", "has no transcript in metadata.csv"),
        ("empty", "../evil", "invalid voice name '../evil'"),
        ("empty", "", "invalid voice name '': it is empty"),
    ],
)
def test_bad_input_is_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, name: str, message: str
) -> None:
    data, voices = tmp_path / "data", tmp_path / "voices"
    voices.mkdir()
    if setup != "missing":
        data.mkdir()
    tone = np.sin(np.arange(4800) / 10).astype(np.float32)
    if setup == "no_transcript":
        sf.write(data / "a.wav", tone, 24000)
        (data / "a.txt").write_text("Hi.")
        sf.write(data / "b.flac", tone, 24000)
    if setup == "unreadable":
        (data / "a.wav").write_bytes(b"RIFF not really audio")
        (data / "a.txt").write_text("Hi.")
    if setup == "metadata_gap":
        sf.write(data / "a.wav", tone, 24000)
        sf.write(data / "b.wav", tone, 24000)
        (data / "metadata.csv").write_text("a|Hi.\n")
    err = error_of(capsys, "--data", str(data), "--name", name, "--voices-dir", str(voices))
    assert "orpheus-finetune: error:" in err and message in err, err
    assert list(voices.iterdir()) == []
