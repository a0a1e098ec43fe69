"""orpheus-finetune end to end on espeak-ng speech: the real command in subprocesses,
a real SIGINT mid-run, `--resume`, and the installed voice served by the LoRA cache."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import PeftModel
from safetensors.torch import load_file

from inference_server.engine.lora_cache import LoraAdapterCache
from inference_server.engine.model_loading import load_causal_lm
from inference_server.finetune.cli import main
from inference_server.finetune.train import SIGINT_AFTER_STEP_ENV
from inference_server.voices.names import VOICE_NAME_RULE
from inference_server.voices.registry import VoiceRegistry

SENTENCES = ("Hi there.", "Yes, please.", "Go now.", "See you.")
LEAD_MS = 500
# 4 clips, 1 held out for eval -> 3 train clips; 2 per optimizer step -> 2 steps an epoch.
TRAINING = ("--epochs", "2", "--grad-accum", "2", "--eval-fraction", "0.25", "--seed", "7")
TRAINING += ("--checkpoint-every", "1", "--warmup", "1", "--lr", "1e-3")


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


THREADS = 2  # every run alike: CPU fp32 sums in the same order only on the same thread count


def finetune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script in a subprocess."""
    script = Path(sys.executable).parent / "orpheus-finetune"
    cmd = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-m", "inference_server.finetune.cli"]
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), **(env or {})}
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        # A job started in the background by a non-interactive shell inherits SIGINT
        # ignored, and Python keeps it so: give the child the default Ctrl-C behaviour.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finetune_here(*args: str) -> int:
    """`main` in this process (no second torch import), on the subprocesses' thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return main(list(args))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = speak(tmp_path_factory.mktemp("speech"))
    sf.write(data / "quiet.wav", np.zeros(12000, dtype=np.float32), 24000)  # dropped: silent
    (data / "quiet.txt").write_text("Nothing at all.")
    return data


@pytest.fixture(scope="module")
def uninterrupted(spoken: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One full run: the end-to-end test's subject and the resume test's reference."""
    root = tmp_path_factory.mktemp("uninterrupted")
    voices, work = root / "voices", root / "work"
    voices.mkdir()
    common = ["--data", str(spoken), "--name", "nova", "--voices-dir", str(voices)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert finetune_here(*common, "--output-dir", str(work), *TRAINING) == 0
    return {"voices": voices, "work": work, "stdout": out.getvalue(), "stderr": err.getvalue()}


def test_finetune_end_to_end_installs_a_servable_adapter(uninterrupted: dict) -> None:
    voices, work = uninterrupted["voices"], uninterrupted["work"]
    stdout, stderr = uninterrupted["stdout"], uninterrupted["stderr"]
    assert "RANDOM weights" in stderr and "training LoRA" in stderr
    assert "loss=" in stderr and "eval=" in stderr  # the progress bar's postfix
    assert f"voice 'nova' installed in {voices / 'nova'}" in stdout
    assert "servable by  torch engine (--max-lora-rank 64)" in stdout
    assert "4 clips kept, 1 dropped" in stdout and "4 encoded, 0 cached" in stdout

    report = json.loads((work / "finetune_report.json").read_text())
    data = report["data"]
    assert (report["steps"], data["train_clips"], data["eval_clips"]) == (4, 3, 1)
    assert data["dropped"] == [{"id": "quiet", "reason": "silent at --silence-threshold-db -40"}]
    assert (data["snac_encoded"], data["snac_cached"]) == (4, 0)
    for clip in data["clips"]:
        # Our 500 ms pad, minus the 10 ms guard kept before speech, plus espeak's own lead-in.
        assert 480 <= clip["lead_trimmed_ms"] <= 700, clip
        assert clip["tail_trimmed_ms"] > 100, clip  # espeak ends with ~280 ms of silence
    assert [len(report["loss"]["train"]), len(report["loss"]["eval"])] == [4, 2]  # per epoch
    assert all(np.isfinite(loss) for _, loss in report["loss"]["train"])
    assert Path(report["loss_curve"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    adapter = voices / "nova"
    assert report["adapter_bytes"] == (adapter / "adapter_model.safetensors").stat().st_size
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
    kept = sorted(p.name for p in (work / "checkpoints").iterdir())
    assert kept == ["checkpoint-3", "checkpoint-4"]  # --keep-checkpoints 2

    # The adapter changes tiny-random's output, and the LoRA cache serves it in a mixed batch.
    ids = torch.tensor([[128259, 128000, 3, 4, 5, 128009, 128260, 128261, 128257]])
    with torch.no_grad():
        base = load_causal_lm("tiny-random")(ids).logits
        tuned = PeftModel.from_pretrained(load_causal_lm("tiny-random"), adapter)(ids).logits
    assert not torch.allclose(base, tuned)
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


def test_sigint_mid_epoch_then_resume_equals_the_uninterrupted_run(
    spoken: Path, uninterrupted: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    voices, work = tmp_path / "voices2", tmp_path / "work2"
    voices.mkdir()
    # The code cache is keyed by the trimmed audio and the codec: a copy serves this run too.
    shutil.copytree(uninterrupted["work"] / "snac-codes", work / "snac-codes")
    common = ["--data", str(spoken), "--name", "nova", "--voices-dir", str(voices)]
    common += ["--output-dir", str(work), *TRAINING]
    # A real SIGINT, sent by the run to itself once step 2 is done and before it is saved:
    # checkpoint-1 (mid-epoch 1) is the newest, and step 2's work is lost.
    stopped = finetune(*common, env={SIGINT_AFTER_STEP_ENV: "2"})
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "interrupted; newest checkpoint" in stopped.stderr and "--resume" in stopped.stderr
    assert "SNAC uses RANDOM weights" not in stopped.stderr  # every clip from the cache
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["checkpoint-1"]
    assert list(voices.iterdir()) == []  # nothing installed

    caplog.set_level(logging.INFO)
    assert finetune_here(*common, "--resume") == 0
    assert "resumed from" in caplog.text and "(step 1)" in caplog.text
    report = json.loads((work / "finetune_report.json").read_text())
    assert report["resumed_from"].endswith("checkpoint-1") and report["steps"] == 4
    assert (report["data"]["snac_encoded"], report["data"]["snac_cached"]) == (0, 4)
    reference = json.loads((uninterrupted["work"] / "finetune_report.json").read_text())
    assert report["loss"] == reference["loss"]  # the whole history, restored and continued

    # Bit for bit (torch.equal, not allclose): CPU fp32 on the same thread count is
    # deterministic, and a checkpoint restores weights, optimizer, schedule, RNG and the
    # data order exactly, so any difference at all would be a resume bug.
    got = load_file(voices / "nova" / "adapter_model.safetensors")
    want = load_file(uninterrupted["voices"] / "nova" / "adapter_model.safetensors")
    assert got.keys() == want.keys() and len(got) == 2 * 7 * 2  # A and B, 7 projections, 2 layers
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_help_documents_every_flag_without_importing_torch() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from inference_server.finetune.cli import build_parser\n"
        "p = build_parser()\n"
        "print(sorted(sys.modules.keys() & {'torch', 'peft', 'transformers'}))\n"
        "print(all(a.help for a in p._actions))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stderr
    help_text = " ".join(finetune("--help").stdout.split())
    for flag in ("--device", "--dtype", "--grad-accum", "--lr-schedule", "--warmup", "--resume"):
        assert flag in help_text
    assert VOICE_NAME_RULE in help_text  # the one voice-name rule
