"""orpheus-finetune's data side: layouts, silence trimming, long recordings split at pauses
and matched to their sentences, the SNAC code cache and the eval split."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from inference_server.engine.model_loading import load_tokenizer
from inference_server.finetune.dataset import DataOptions, find_clips, load_trimmed, trim_silence
from inference_server.finetune.encode import CodeCache, TrainingRow, encode_rows, estimate_tokens
from inference_server.finetune.pipeline import split_eval
from inference_server.finetune.segment import split_recording, split_sentences

RATE = 24000
STORY = (
    "Hello there, how are you today?",
    "The sun is bright and the sky is clear.",
    "I like green tea.",
    "We walked down to the old harbour, watching the boats come in.",
    "See you soon.",
    "Good night, my friend, and thank you for everything.",
)


def espeak(text: str, scratch: Path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (make system-deps installs it)")
    subprocess.run(["espeak-ng", "-w", str(scratch), text], check=True)
    samples, rate = sf.read(scratch, dtype="float32")
    trimmed, _, _ = trim_silence(soxr.resample(samples, rate, RATE))
    return trimmed


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[np.ndarray], Path]:
    scratch = tmp_path_factory.mktemp("espeak") / "s.wav"
    return [espeak(s, scratch) for s in STORY], scratch.parent


def recording(sentences: list[np.ndarray], gaps_s: list[float]) -> tuple[np.ndarray, list]:
    """Sentences with the given silences after each; returns audio and true (start, end)."""
    parts, truth, t = [], [], 0
    for audio, gap in zip(sentences, gaps_s, strict=True):
        parts += [audio, np.zeros(int(gap * RATE), dtype=np.float32)]
        truth.append((t / RATE, (t + len(audio)) / RATE))
        t += len(audio) + int(gap * RATE)
    return np.concatenate(parts), truth


def test_a_long_recording_is_cut_at_pauses_into_its_sentences(story: tuple) -> None:
    audio, truth = recording(story[0], [0.6, 0.45, 0.8, 0.5, 0.7, 0.4])
    pieces = split_recording(audio, " ".join(STORY), max_clip_s=20)
    assert [p.text for p in pieces] == list(STORY)
    assert all(p.problem is None for p in pieces)
    for piece, (start, end) in zip(pieces, truth, strict=True):
        # Each cut lies in the pause around its sentence: nothing of a neighbour inside.
        assert start - 0.45 <= piece.start_s <= start + 0.02, (piece, start)
        assert end - 0.02 <= piece.end_s <= end + 0.45, (piece, end)


def test_sentences_without_a_pause_between_merge_and_a_wrong_transcript_is_dropped(
    story: tuple,
) -> None:
    # Sentences 2 and 3 run together (no pause): one clip holding both texts.
    audio, _ = recording(story[0][:4], [0.6, 0.0, 0.6, 0.3])
    pieces = split_recording(audio, " ".join(STORY[:4]), max_clip_s=20)
    assert [p.text for p in pieces] == [STORY[0], f"{STORY[1]} {STORY[2]}", STORY[3]]
    assert all(p.problem is None for p in pieces)

    # A transcript with a sentence nobody said: the clips no longer fit their text.
    said, _ = recording(story[0][:3], [0.6, 0.6, 0.3])
    wrong = [STORY[0], STORY[3], STORY[1], STORY[2]]
    problems = [p.problem for p in split_recording(said, " ".join(wrong), max_clip_s=20)]
    assert any(p and "split point uncertain" in p for p in problems), problems

    # Too long for one clip and no pause to cut at.
    glued, _ = recording(story[0][:3], [0.0, 0.0, 0.2])
    [piece] = split_recording(glued, " ".join(STORY[:3]), max_clip_s=3)
    assert piece.problem and "longer than --max-clip-seconds 3" in piece.problem


def test_long_recording_in_a_folder_becomes_clips_with_a_report(
    story: tuple, tmp_path: Path
) -> None:
    audio, _ = recording(story[0], [0.6, 0.45, 0.8, 0.5, 0.7, 0.4])
    sf.write(tmp_path / "talk.wav", np.concatenate([np.zeros(RATE // 2), audio]), RATE)
    (tmp_path / "talk.txt").write_text("\n".join(STORY))  # one sentence a line
    sf.write(tmp_path / "short.wav", story[0][4], RATE)
    (tmp_path / "short.txt").write_text(STORY[4])
    clips, dropped = load_trimmed(find_clips(tmp_path), DataOptions(max_clip_s=5.0))
    assert [c.clip.clip_id for c in clips] == ["short"] + [f"talk-{n:03d}" for n in range(1, 7)]
    assert [c.clip.text for c in clips[1:]] == list(STORY) and dropped == []
    assert clips[0].span_s is None and clips[1].span_s is not None
    assert clips[1].span_s[0] >= 0.49  # the recording's lead-in is not in its first clip
    assert all(c.lead_ms < 450 and len(c.samples) < 5 * RATE for c in clips)


def test_split_sentences() -> None:
    assert split_sentences("One. Two? Three!\nFour\n\nFive…  Six") == [
        "One.", "Two?", "Three!", "Four", "Five…", "Six"
    ]  # fmt: skip


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


def test_snac_codes_are_cached_and_the_estimate_matches(story: tuple, tmp_path: Path) -> None:
    for i in range(3):
        sf.write(tmp_path / f"c{i}.wav", story[0][i], RATE)
        (tmp_path / f"c{i}.txt").write_text(STORY[i])
    clips, _ = load_trimmed(find_clips(tmp_path), DataOptions())
    calls: list[int] = []

    def encoder(samples: np.ndarray) -> np.ndarray:  # a stand-in codec: frames from length
        calls.append(len(samples))
        n = -(-len(samples) // 2048)
        return np.arange(n * 7).reshape(n, 7) % 4096

    tokenizer = load_tokenizer("tiny-random")
    cache = CodeCache(tmp_path / "codes", "stand-in")
    rows, stats = encode_rows(clips, encoder, cache, tokenizer, "nova", 4096)
    assert (stats.encoded, stats.cached, len(calls)) == (3, 0, 3)
    again, stats = encode_rows(clips, encoder, cache, tokenizer, "nova", 4096)
    assert (stats.encoded, stats.cached, len(calls)) == (0, 3, 3) and again == rows
    assert [len(r.input_ids) for r in rows] == [
        estimate_tokens(tokenizer, "nova", c) for c in clips
    ]
    other = CodeCache(tmp_path / "codes", "another codec")  # new weights: new codes
    encode_rows(clips, encoder, other, tokenizer, "nova", 4096)
    assert len(calls) == 6
    short, stats = encode_rows(clips, encoder, cache, tokenizer, "nova", 60)
    assert short == [] and all("--max-row-tokens 60" in d.reason for d in stats.dropped)


def test_eval_split_is_seeded_and_never_empty_or_everything() -> None:
    rows = [TrainingRow(f"c{i}", [i], 0) for i in range(10)]
    train, held = split_eval(rows, 0.1, seed=3)
    assert len(held) == 1 and len(train) == 9 and held[0] not in train
    assert split_eval(rows, 0.1, seed=3) == (train, held)
    assert len(split_eval(rows[:2], 0.01, seed=0)[1]) == 1
    assert split_eval(rows[:1], 0.5, seed=0) == (rows[:1], [])
    assert split_eval(rows, 0.0, seed=0) == (rows, [])
