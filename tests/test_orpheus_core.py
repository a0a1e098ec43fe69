"""Pure Orpheus facts: prompt ids and token <-> SNAC code mapping."""

from __future__ import annotations

import numpy as np
import pytest

from inference_server.engine.model_loading import load_tokenizer
from inference_server.orpheus import tokens as T
from inference_server.orpheus.codes import (
    FrameAssembler,
    codes_to_frames,
    frames_to_codes,
    frames_to_token_ids,
)
from inference_server.orpheus.prompt import ContinuityContext, build_prompt, build_training_row


def random_frames(n: int, seed: int = 0) -> np.ndarray:
    frames = np.random.default_rng(seed).integers(0, T.CODEBOOK_SIZE, (n, T.FRAME_TOKENS))
    frames[0], frames[1] = 0, T.CODEBOOK_SIZE - 1  # both extremes at every position
    return frames


def test_tokens_to_codes_round_trip_keeps_0_and_4095_at_every_position() -> None:
    frames = random_frames(50)
    assembler = FrameAssembler()
    out = np.stack(assembler.push(frames_to_token_ids(frames)))
    assert np.array_equal(out, frames)
    assert assembler.frames_dropped == 0 and assembler.tokens_dropped == 0
    l0, l1, l2 = frames_to_codes(list(out))
    assert (len(l0), len(l1), len(l2)) == (50, 100, 200)
    assert np.array_equal(codes_to_frames(l0, l1, l2), frames)


def test_frame_layout_matches_snac_codebooks() -> None:
    frame = np.arange(7)  # codes 0..6 at positions 0..6
    l0, l1, l2 = frames_to_codes([frame])
    assert l0.tolist() == [0] and l1.tolist() == [1, 4] and l2.tolist() == [2, 3, 5, 6]
    assert frames_to_token_ids(frame[None]) == [128266 + p * 4096 + p for p in range(7)]


@pytest.mark.parametrize("bad", [T.END_OF_SPEECH, 5, T.AUDIO_TOKEN_END, "wrong-position"])
def test_an_invalid_token_spoils_only_its_frame(bad: object) -> None:
    frames = random_frames(6, seed=1)
    ids = frames_to_token_ids(frames)
    k, pos = 2, 3
    # "wrong-position": a real audio token, but from position 4's range.
    ids[k * 7 + pos] = T.audio_token(4, 17) if bad == "wrong-position" else bad
    assembler = FrameAssembler()
    out = assembler.push(ids)
    assert np.array_equal(np.stack(out), np.delete(frames, k, axis=0))
    assert assembler.frames_dropped == 1 and assembler.tokens_dropped == 7


def test_a_trailing_partial_frame_is_dropped_and_counted() -> None:
    assembler = FrameAssembler()
    assert len(assembler.push(frames_to_token_ids(random_frames(2))[:10])) == 1
    assert assembler.finish() == 3
    assert assembler.tokens_dropped == 3 and assembler.frames_dropped == 1


def test_codebook_lengths_are_checked() -> None:
    with pytest.raises(ValueError, match="n, 2n, 4n"):
        codes_to_frames(np.zeros(2), np.zeros(3), np.zeros(8))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-random")


def test_prompt_ids_are_exactly_the_reference_layout(tokenizer) -> None:
    ids = build_prompt(tokenizer, "tara", "Hello <laugh> there.")
    text_ids = tokenizer.encode("tara: Hello <laugh> there.")
    assert text_ids[0] == T.BOS == 128000
    assert ids == [128259, *text_ids, 128009, 128260, 128261, 128257]


@pytest.mark.parametrize(
    "markup", ["<|eot_id|>", "<|begin_of_text|>", "<|reserved_special_token_3|>", "<|end_of_text|>"]
)
def test_user_text_never_becomes_a_control_token(tokenizer, markup: str) -> None:
    ids = build_prompt(tokenizer, "tara", f"Say {markup} out loud.")
    text_ids = ids[2:-4]  # between [SOH, BOS] and [EOT, EOH, SOA, SOS]
    assert ids[:2] == [T.START_OF_HUMAN, T.BOS] and all(i < T.BOS for i in text_ids)
    assert tokenizer.decode(text_ids) == f"tara: Say {markup} out loud."


def test_training_row_appends_audio_then_end_of_speech_and_turn(tokenizer) -> None:
    audio = frames_to_token_ids(random_frames(2))
    row = build_training_row(tokenizer, "jack", "Hi.", audio)
    assert row[-16:] == [*audio, 128258, 128262]
    assert row[:-16] == build_prompt(tokenizer, "jack", "Hi.")


def test_continuity_context_replays_the_previous_turn_first(tokenizer) -> None:
    audio = frames_to_token_ids(random_frames(2)[:1])
    ids = build_prompt(tokenizer, "tara", "Second.", ContinuityContext("First.", audio))
    first = build_prompt(tokenizer, "tara", "First.")
    assert ids[: len(first)] == first
    assert ids[len(first) : len(first) + 9] == [*audio, 128258, 128262]
    assert ids[len(first) + 9 :] == build_prompt(tokenizer, "tara", "Second.")
