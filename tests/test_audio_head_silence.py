"""HeadSilenceTrimmer: drops a segment's leading near-silence without clicking at the cut."""

from __future__ import annotations

import numpy as np
import pytest

from inference_server.audio.head_silence import HeadSilenceTrimmer

SR = 24000


def noise(ms: float, dbfs: float, seed: int = 0) -> np.ndarray:
    n = int(SR * ms / 1000)
    return (10 ** (dbfs / 20) * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def tone(ms: float, amp: float = 0.5, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(SR * ms / 1000)) / SR
    return (amp * np.sin(2 * np.pi * hz * t + 1.0)).astype(np.float32)  # non-zero first sample


def feed(trimmer: HeadSilenceTrimmer, x: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(x):
        out.append(trimmer.push(x[i : i + sizes[k % len(sizes)]]))
        i += sizes[k % len(sizes)]
        k += 1
    out.append(trimmer.flush())
    return np.concatenate(out)


FADE = round(0.005 * SR)


def test_trims_600_ms_of_near_silence_keeping_a_short_pre_roll() -> None:
    silence, speech = noise(600, -60), tone(400)
    signal = np.concatenate([silence, speech])
    trimmer = HeadSilenceTrimmer()
    out = feed(trimmer, signal, sizes=(997, 13, 2048, 331))
    assert 580 <= trimmer.trimmed_ms <= 620
    cut = trimmer.trimmed_samples
    np.testing.assert_array_equal(out[FADE:], signal[cut + FADE :])
    assert abs(out[0]) <= abs(signal[cut]) / FADE + 1e-7  # the fade starts near zero


def test_cut_on_a_loud_onset_is_faded_in_without_a_click() -> None:
    silence, speech = noise(600, -60), tone(400)  # the tone starts abruptly at 0.42
    trimmer = HeadSilenceTrimmer(pre_roll_ms=0)
    out = feed(trimmer, np.concatenate([silence, speech]), sizes=(1, 4095, 240, 17))
    assert 580 <= trimmer.trimmed_ms <= 620
    peak = float(np.abs(speech).max())
    natural = float(np.abs(np.diff(speech)).max())
    assert abs(out[0]) <= peak / FADE
    assert float(np.abs(np.diff(out)).max()) <= natural + peak / FADE


def test_pure_silence_sends_nothing_and_reports_it() -> None:
    trimmer = HeadSilenceTrimmer(max_trim_ms=5000)
    out = feed(trimmer, noise(1000, -60, seed=1), sizes=(480, 7))
    assert out.size == 0
    assert trimmer.all_silent
    assert trimmer.trimmed_ms == pytest.approx(1000.0)


def test_loud_start_is_passed_through_untouched() -> None:
    speech = tone(300)
    trimmer = HeadSilenceTrimmer()
    out = feed(trimmer, speech, sizes=(100,))
    assert trimmer.trimmed_ms == 0.0 and not trimmer.all_silent
    np.testing.assert_array_equal(out, speech)


def test_whisper_is_never_eaten_whole() -> None:
    quiet = noise(3000, -45, seed=2)  # below the threshold for its whole length
    trimmer = HeadSilenceTrimmer(max_trim_ms=2000)
    out = feed(trimmer, quiet, sizes=(1000,))
    assert trimmer.trimmed_ms == pytest.approx(2000.0)
    assert len(out) == len(quiet) - 2 * SR


def test_reset_starts_a_new_segment() -> None:
    trimmer = HeadSilenceTrimmer()
    feed(trimmer, np.concatenate([noise(200, -60), tone(100)]), sizes=(512,))
    assert trimmer.trimmed_ms > 0 and trimmer.in_speech
    trimmer.reset()
    assert trimmer.trimmed_ms == 0.0 and not trimmer.in_speech
    assert trimmer.push(noise(50, -60)).size == 0


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        HeadSilenceTrimmer(window_ms=0)
