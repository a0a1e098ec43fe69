"""orpheus-finetune's checks: bad input is exit 2 naming the flag, `--dry-run` plans without
loading weights, and an adapter the engines would refuse is never installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import LoraConfig, get_peft_model

from inference_server.engine.adapter_fit import weight_shapes
from inference_server.engine.model_loading import load_causal_lm
from inference_server.finetune.cli import main
from inference_server.finetune.recipe import TrainConfig, lora_settings
from inference_server.finetune.servable import (
    engine_fits,
    planned_problem,
    planned_shapes,
    saved_problem,
)
from inference_server.finetune.train import lora_config

TONE = (0.3 * np.sin(np.arange(24000) / 5)).astype(np.float32)


def error_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("missing", (), "not a directory"),
        ("empty", (), "no WAV/FLAC clips found"),
        ("no_transcript", (), "1 clip(s) without a transcript"),
        ("unreadable", (), "unreadable audio"),
        ("metadata_gap", (), "has no transcript in metadata.csv"),
        ("silent", (), "no usable clip: a: silent at --silence-threshold-db -40"),
        ("empty", ("--name", "../evil"), "invalid voice name '../evil'"),
        ("empty", ("--name", ""), "invalid voice name '': it is empty"),
        ("empty", ("--dtype", "fp16", "--device", "cpu"), "--dtype fp16 needs a CUDA GPU"),
        ("empty", ("--rank", "0"), "argument --rank: must be > 0, got 0"),
        ("empty", ("--eval-fraction", "1"), "argument --eval-fraction: must be in [0, 1)"),
        ("empty", ("--device", "tpu"), "argument --device: invalid choice: 'tpu'"),
        (
            "one_clip",
            ("--rank", "128"),
            "--rank 128: the adapter would not be servable: torch engine: LoRA rank 128 is "
            "greater than --max-lora-rank 64",
        ),
        ("exists", (), "voice 'nova' already exists"),
        ("empty", ("--model", "/nowhere"), "--model /nowhere: expected 'tiny-random' or a local"),
        ("empty", ("--snac", "/nowhere"), "--snac /nowhere: expected 'random' or a local SNAC"),
    ],
)
def test_bad_input_is_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, extra: tuple, message: str
) -> None:
    data, voices = tmp_path / "data", tmp_path / "voices"
    voices.mkdir()
    if setup != "missing":
        data.mkdir()
    if setup in ("no_transcript", "one_clip", "exists"):
        sf.write(data / "a.wav", TONE, 24000)
        (data / "a.txt").write_text("Hi.")
    if setup == "no_transcript":
        sf.write(data / "b.flac", TONE, 24000)
    if setup == "exists":
        (voices / "nova").mkdir()
    if setup == "silent":
        sf.write(data / "a.wav", np.zeros(4800, dtype=np.float32), 24000)
        (data / "a.txt").write_text("Hi.")
    if setup == "unreadable":
        (data / "a.wav").write_bytes(b"RIFF not really audio")
        (data / "a.txt").write_text("Hi.")
    if setup == "metadata_gap":
        sf.write(data / "a.wav", TONE, 24000)
        sf.write(data / "b.wav", TONE, 24000)
        (data / "metadata.csv").write_text("a|Hi.\n")
    argv = ["--data", str(data), "--name", "nova", "--voices-dir", str(voices), *extra]
    err = error_of(capsys, *argv)
    assert "error:" in err and message in err, err
    assert [p.name for p in voices.iterdir()] == (["nova"] if setup == "exists" else [])


def test_dry_run_plans_from_data_and_settings_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, voices, work = tmp_path / "data", tmp_path / "voices", tmp_path / "work"
    data.mkdir()
    voices.mkdir()
    for i in range(5):
        sf.write(data / f"c{i}.wav", np.concatenate([np.zeros(12000), TONE]), 24000)
        (data / f"c{i}.txt").write_text(f"Sentence number {i}.")
    sf.write(data / "long.wav", np.tile(TONE, 3), 24000)  # 3 s: 36 frames, ~270 tokens
    (data / "long.txt").write_text("Too long.")
    argv = ["--data", str(data), "--name", "nova", "--voices-dir", str(voices)]
    argv += ["--output-dir", str(work), "--max-row-tokens", "200", "--epochs", "3"]
    assert main([*argv, "--grad-accum", "2", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["device"], plan["dtype"]) == ("cpu", "fp32") or torch.cuda.is_available()
    assert (plan["clips_kept"], plan["train_clips"], plan["eval_clips"]) == (5, 4, 1)
    assert plan["steps"] == 3 * 2  # 4 train clips / 2 per step, 3 epochs
    assert plan["servable_by"] == ["torch"] and plan["resume_from"] is None
    [dropped] = plan["dropped"]
    assert dropped["id"] == "long" and "tokens > --max-row-tokens 200" in dropped["reason"]
    assert list(voices.iterdir()) == [] and not work.exists()  # nothing written


def test_an_adapter_the_engines_would_refuse_is_caught_before_and_after_training(
    tmp_path: Path,
) -> None:
    fits = engine_fits("tiny-random", max_rank=8)
    assert planned_problem("tiny-random", lora_settings(TrainConfig(rank=8)), fits) is None
    wide = planned_problem("tiny-random", lora_settings(TrainConfig(rank=16)), fits)
    assert wide == "torch engine: LoRA rank 16 is greater than --max-lora-rank 8"

    # After training, the saved files are checked as the registry checks them.
    model = get_peft_model(load_causal_lm("tiny-random"), lora_config(TrainConfig(rank=8)))
    model.save_pretrained(str(tmp_path / "ok"), save_embedding_layers=False)
    assert saved_problem(tmp_path / "ok", fits) is None
    # The pre-training check saw exactly the tensors PEFT went on to save.
    saved = weight_shapes(tmp_path / "ok" / "adapter_model.safetensors")
    assert planned_shapes("tiny-random", lora_settings(TrainConfig(rank=8))) == saved
    with_head = LoraConfig(r=8, target_modules=["q_proj"], modules_to_save=["lm_head"])
    model = get_peft_model(load_causal_lm("tiny-random"), with_head)
    model.save_pretrained(str(tmp_path / "head"), save_embedding_layers=False)
    problem = saved_problem(tmp_path / "head", fits)
    assert problem and "modules_to_save=['lm_head'] is not servable (vLLM" in problem


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: --device cuda is valid")
def test_device_cuda_without_a_gpu_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "voices").mkdir()
    argv = ["--data", str(tmp_path), "--name", "nova", "--voices-dir", str(tmp_path / "voices")]
    err = error_of(capsys, *argv, "--device", "cuda")
    assert "--device cuda: torch" in err and "sees no CUDA GPU" in err
